"""Retries and dead letters: a job kiln itself fails every time (its
sandbox cannot start the program) is retried with backoff up to
--max-attempts, then lands in the dead-letter stream with every attempt's
reason while its reply_to gets a final internal frame; a job whose own
program fails is a result, never retried; a job delivered more times than
the limit (its workers kept dying) is dead-lettered without running."""
import glob
import os

import msgpack

from kilntest import BUILD, PLUGINS, KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()


class Retries(KilnCase):
    def setUp(self):
        super().setUp()
        # the real plugins plus one whose sandbox always fails
        self.plugins = os.path.join(self.tmp, "plugins")
        os.makedirs(self.plugins)
        for so in glob.glob(os.path.join(PLUGINS, "*.so")) + \
                glob.glob(os.path.join(BUILD, "tests", "crash_plugins", "*.so")):
            os.symlink(so, os.path.join(self.plugins, os.path.basename(so)))

    def dead(self):
        return [msgpack.unpackb(f[b"frame"], raw=False) for _, f in self.r.xrange("kiln.dead")]

    def test_an_agent_of_another_protocol_version_is_named(self):
        """A worker paired with a kiln-agent from another build: the job
        fails as kiln's own (internal, retried) and both the worker's log and
        the dead letter name both versions; the pool says so too."""
        agent = os.path.join(BUILD, "tests", "kiln-agent-v99")
        w = self.worker("v", "--agent", agent, "--max-attempts", "2", "--retry-backoff-ms", "50",
                        "--pool", "1")
        j = self.job("echo never")
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=30)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        self.assertEqual(ex["status"], "internal", ex)
        self.assertFalse(any(f["kind"] == "stdout" for f in fs))
        reasons = self.dead()[0]["reasons"]
        self.assertIn("the agent speaks protocol version 99; this worker speaks 1", reasons[0])
        wait_for(lambda: b"pool shell: the agent speaks protocol version 99" in w.text(), 10, "the pool's word")
        self.assertIn(b"protocol version 99", w.text())

    def test_kiln_failure_retried_then_dead_lettered(self):
        w = self.worker("r1", "--plugin-dir", self.plugins, "--max-attempts", "3",
                        "--retry-backoff-ms", "50", "--log-level", "debug")
        j = self.job("anything", plugin="crashy")
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=30)
        exits = [f for f in fs if f["kind"] == "exit"]
        self.assertEqual(len(exits), 1, "only the final frame: failed attempts are retried, not reported")
        ex = exits[0]
        self.assertEqual((ex["status"], ex["attempt"]), ("internal", 3))
        self.assertIn("failed this job 3 times", ex["reason"])
        dead = self.dead()
        self.assertEqual(len(dead), 1)
        d = dead[0]
        self.assertEqual((d["id"], d["attempts"], d["worker"]), (j["id"], 3, "r1"))
        self.assertEqual(len(d["reasons"]), 3)
        self.assertTrue(all("could not start the job" in r for r in d["reasons"]), d["reasons"])
        self.assertEqual(msgpack.unpackb(d["job"], raw=False)["id"], j["id"], "the job itself is kept")
        log = w.text().decode()
        self.assertEqual(log.count("failed in kiln ("), 2, "two retries before the third, last attempt")
        wait_for(lambda: self.pending() == 0, 5, "the dead-lettered job to be acknowledged")
        # and the worker goes on
        ok, out, _ = self.run_job("echo alive")
        self.assertEqual((ok["status"], out), ("ok", b"alive\n"))

    def test_a_plugin_whose_runtime_is_missing_is_said_at_start_and_rejected(self):
        """A plugin whose program is not in the sandbox image (deno without
        --rootfs, say): the worker says so when it starts, and its jobs are
        rejected once with that reason, never retried as kiln's failure."""
        w = self.worker("m1", "--plugin-dir", self.plugins, "--max-attempts", "3",
                        "--retry-backoff-ms", "50")
        wait_for(lambda: b"plugin absent cannot run here" in w.text(), 10, "the start-up word")
        self.assertIn(b"/usr/local/bin/kiln-no-such-runtime is not in the sandbox image", w.text())
        j = self.job("anything", plugin="absent")
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=30)
        exits = [f for f in fs if f["kind"] == "exit"]
        self.assertEqual([(e["status"], e["attempt"]) for e in exits], [("rejected", 1)])
        self.assertIn("plugin 'absent' cannot run on this worker", exits[0]["reason"])
        self.assertIn("kiln-no-such-runtime", exits[0]["reason"])
        self.assertEqual(self.dead(), [])
        self.assertNotIn(b"failed in kiln", w.text())
        # the plugins that can run still do
        ok, out, _ = self.run_job("echo fine")
        self.assertEqual((ok["status"], out), ("ok", b"fine\n"))

    def test_a_failing_program_is_not_retried(self):
        w = self.worker("r1", "--plugin-dir", self.plugins, "--max-attempts", "3")
        ex, _, _ = self.run_job("exit 1")
        self.assertEqual((ex["status"], ex["code"], ex["attempt"]), ("error", 1, 1))
        self.assertEqual(len([f for f in self.frames(job_id=ex["id"]) if f["kind"] == "exit"]), 1)
        self.assertEqual(self.dead(), [])
        self.assertNotIn(b"failed in kiln", w.text())

    def test_delivered_too_often_goes_to_the_dead_letters_unrun(self):
        # a job whose workers kept dying: five deliveries already
        self.r.xgroup_create("kiln.jobs", "kiln", id="0", mkstream=True)
        j = self.job("echo SHOULD-NOT-RUN")
        entry = self.submit(j)
        self.r.xreadgroup("kiln", "ghost", {"kiln.jobs": ">"}, count=1)
        for _ in range(4):
            self.r.xclaim("kiln.jobs", "kiln", "ghost", 0, [entry])
        w = self.worker("r1", "--plugin-dir", self.plugins, "--max-attempts", "3",
                        "--claim-idle-ms", "200")
        ex = self.wait_exit(j["id"], timeout=20)[-1]
        self.assertEqual(ex["status"], "internal")
        self.assertEqual([f for f in self.frames(job_id=j["id"]) if f["kind"] == "stdout"], [])
        d = self.dead()
        self.assertEqual(len(d), 1)
        self.assertIn("delivered 6 times", d[0]["reasons"][0])
        self.assertNotIn(b"started", w.text())


if __name__ == "__main__":
    main()
