"""Nothing is lost when things break: a worker killed mid-job, a worker
restarted under the same name, Redis restarted under a running worker, and
a long job that other workers' reapers must leave alone."""
import os
import subprocess
import time

from kilntest import KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()


def sandbox_procs(marker):
    """Processes whose command line holds `marker` (a job's sleep, say)."""
    r = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [p for p in r.stdout.split() if int(p) != os.getpid()]


class RedisFaults(KilnCase):
    def test_kill_9_mid_job_another_worker_finishes_it(self):
        a = self.worker("wa", "--claim-idle-ms", "1000")
        j = self.job("echo started; sleep 2.37; echo finished")
        self.submit(j)
        wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames(job_id=j["id"])), 10,
                 "the job to start on worker A")
        a.kill9()
        # its sandbox dies with it (PR_SET_PDEATHSIG and the channel's EOF)
        wait_for(lambda: not sandbox_procs("sleep 2.37"), 5, "worker A's sandbox to die")
        self.assertEqual(self.pending(), 1, "the job is still pending, unacknowledged")
        self.worker("wb", "--claim-idle-ms", "1000")
        fs = self.wait_exit(j["id"], timeout=20)
        exits = [f for f in fs if f["kind"] == "exit"]
        self.assertEqual(len(exits), 1, "exactly one exit frame")
        self.assertEqual(exits[0]["status"], "ok")
        self.assertEqual(exits[0]["attempt"], 2)
        self.assertEqual(exits[0]["worker"], "wb")
        att2 = [f for f in fs if f.get("attempt") == 2 and f["kind"] == "stdout"]
        self.assertEqual(b"".join(f["data"] for f in att2), b"started\nfinished\n")
        self.assertEqual([f["seq"] for f in fs if f.get("attempt") == 2],
                         list(range(len([f for f in fs if f.get("attempt") == 2]))),
                         "attempt 2 counts seq from 0")
        wait_for(lambda: self.pending() == 0, 5, "the job to be acknowledged")

    def test_restarted_worker_takes_back_its_own_pending_jobs(self):
        a = self.worker("same", "--claim-idle-ms", "600000")
        j = self.job("echo go; sleep 2.41; echo end")
        self.submit(j)
        wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames(job_id=j["id"])), 10,
                 "the job to start")
        a.kill9()
        # same consumer name, and no reaper could claim it for 10 minutes:
        # only reading its own pending list on start finds the job
        self.worker("same", "--claim-idle-ms", "600000")
        fs = self.wait_exit(j["id"], timeout=20)
        ex = fs[-1]
        self.assertEqual((ex["status"], ex["attempt"]), ("ok", 2))
        wait_for(lambda: self.pending() == 0, 5, "the job to be acknowledged")

    def test_redis_restarted_under_a_running_worker(self):
        w = self.worker()
        ex, out, _ = self.run_job("echo before")
        self.assertEqual(ex["status"], "ok")
        # a job running while Redis goes away: its frames wait in the outbox
        j = self.job("echo during; sleep 1.5; echo still")
        self.submit(j)
        wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames(job_id=j["id"])), 10,
                 "the job to start")
        self.redis.kill()
        # the worker notices, and the job goes on without Redis
        wait_for(lambda: b"down;" in w.text(), 10, "the worker to see Redis go")
        self.redis.start()
        fs = self.wait_exit(j["id"], timeout=30)
        self.assertEqual(fs[-1]["status"], "ok")
        out = b"".join(f["data"] for f in fs if f["kind"] == "stdout")
        self.assertIn(b"still\n", out)
        wait_for(lambda: self.pending() == 0, 10, "the running job to be acknowledged")
        # and new jobs flow again, without restarting the worker
        ex, out, _ = self.run_job("echo after", timeout=30)
        self.assertEqual((ex["status"], out), ("ok", b"after\n"))
        self.assertTrue(w.alive())
        self.assertIn(b"connection up", w.text().split(b"down;")[-1])

    def test_long_job_is_not_claimed_by_other_workers(self):
        """Running entries are touched well within --claim-idle-ms."""
        self.worker("wa", "--claim-idle-ms", "900", "--slots", "1")
        j = self.job("sleep 3; echo long")
        self.submit(j)
        wait_for(lambda: self.pending() == 1, 10, "worker A to take the job")
        sweeps = self.claim_sweeps()
        wb = self.worker("wb", "--claim-idle-ms", "900", "--slots", "1")
        fs = self.wait_exit(j["id"], timeout=20)
        exits = [f for f in fs if f["kind"] == "exit"]
        self.assertEqual(len(exits), 1)
        self.assertEqual((exits[0]["worker"], exits[0]["attempt"]), ("wa", 1))
        # the workers looked for idle entries while it ran (else this test
        # proves nothing), and B never took it: a copy B stole would have
        # started then, as the entry only looked idle while A held it
        self.assertGreater(self.claim_sweeps(), sweeps, "no XAUTOCLAIM sweep ran during the job")
        self.assertNotIn(j["id"].encode(), wb.text())
        self.assertEqual(len([f for f in self.frames(job_id=j["id"]) if f["kind"] == "exit"]), 1)

    def claim_sweeps(self):
        stats = self.r.info("commandstats")
        return stats.get("cmdstat_xautoclaim", {}).get("calls", 0)


if __name__ == "__main__":
    main()
