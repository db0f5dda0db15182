"""Jobs through Redis Streams: output, exit codes, frame order, streaming,
inputs, concurrency bounded by --slots, each job finished exactly once."""
import threading
import time

from kilntest import KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()


class RedisJobs(KilnCase):
    def test_stdout_stderr_exit_code_and_frame_order(self):
        self.worker()
        ex, out, err = self.run_job("echo out1; echo err1 >&2; echo out2; exit 7")
        self.assertEqual(out, b"out1\nout2\n")
        self.assertEqual(err, b"err1\n")
        self.assertEqual(ex["status"], "error")
        self.assertEqual(ex["code"], 7)
        self.assertIsNone(ex["signal"])
        self.assertEqual(ex["attempt"], 1)
        self.assertEqual(ex["worker"], "w1")
        for k in ("wall_ms", "cpu_ms", "max_rss_kb"):
            self.assertIsInstance(ex[k], int)
        self.assertGreater(ex["max_rss_kb"], 0)
        fs = self.frames(job_id=ex["id"])
        self.assertEqual([f["seq"] for f in fs], list(range(len(fs))), "seq counts from 0 in order")
        self.assertEqual(fs[-1]["kind"], "exit")
        self.assertTrue(all(f["kind"] in ("stdout", "stderr") for f in fs[:-1]))
        wait_for(lambda: self.pending() == 0, 5, "the job to be acknowledged")

    def test_ok_status_and_signal(self):
        self.worker()
        ex, out, _ = self.run_job("printf done")
        self.assertEqual((ex["status"], ex["code"], out), ("ok", 0, b"done"))
        ex, _, _ = self.run_job("kill -SEGV $$")
        self.assertEqual(ex["status"], "killed")
        self.assertEqual(ex["signal"], 11)
        self.assertIsNone(ex["code"])

    def test_output_streams_while_the_job_runs(self):
        """The first chunk reaches Redis long before the job ends."""
        self.worker()
        j = self.job("echo early; sleep 1.5; echo late")
        self.submit(j)
        fs = self.wait_exit(j["id"])
        first = next(f for f in fs if f["kind"] == "stdout")
        ex = fs[-1]
        ms = lambda f: int(f["_entry"].split("-")[0])
        self.assertEqual(first["data"], b"early\n")
        self.assertGreaterEqual(ms(ex) - ms(first), 1000,
                                "the first output frame was written when the job ended, not as produced")

    def test_stdin_args_env_files_meta_reply_to(self):
        self.worker()
        ex, out, err = self.run_job(
            'read line; echo "in=$line"; echo "args=$1,$2"; echo "env=$GREETING"; '
            'cat data/deep/f.txt; cat top.bin | od -An -tx1',
            stdin=b"from stdin\n", args=["a b", "c"], env={"GREETING": "hi there"},
            files={"data/deep/f.txt": b"nested file\n", "top.bin": b"\x00\xff"},
            meta={"ticket": 42, "tags": ["x"]}, reply_to="my.replies")
        self.assertEqual(ex["status"], "ok", err)
        self.assertEqual(out.decode().split("\n")[:4],
                         ["in=from stdin", "args=a b,c", "env=hi there", "nested file"])
        self.assertIn("00 ff", out.decode())
        self.assertEqual(ex["meta"], {"ticket": 42, "tags": ["x"]})
        self.assertEqual(self.frames("kiln.results", ex["id"]), [], "frames go to reply_to only")

    def test_worker_environment_never_reaches_the_job(self):
        self.worker(env={"KILN_TEST_SECRET": "s3cret", "AWS_SECRET_ACCESS_KEY": "nope"})
        ex, out, _ = self.run_job("env")
        self.assertEqual(ex["status"], "ok")
        self.assertNotIn(b"s3cret", out)
        self.assertNotIn(b"AWS_SECRET", out)
        names = sorted(l.split("=")[0] for l in out.decode().splitlines())
        self.assertEqual(names, ["HOME", "KILN_ATTEMPT", "KILN_JOB_ID", "LANG", "PATH", "PWD", "TMPDIR"])

    def test_fifty_jobs_four_slots_each_finished_exactly_once(self):
        self.worker("w1", "--slots", "4")
        ids = []
        for i in range(50):
            j = self.job("echo job %d; sleep 0.05" % i)
            ids.append(j["id"])
            self.submit(j)
        most = [0]
        stop = threading.Event()

        def sample():  # jobs held by the worker = its pending entries
            while not stop.is_set():
                most[0] = max(most[0], self.pending())
                time.sleep(0.01)
        t = threading.Thread(target=sample)
        t.start()
        try:
            wait_for(lambda: len([f for f in self.frames() if f["kind"] == "exit"]) >= 50, 90,
                     "50 exit frames")
        finally:
            stop.set()
            t.join()
        exits = [f for f in self.frames() if f["kind"] == "exit"]
        self.assertEqual(sorted(f["id"] for f in exits), sorted(ids), "each job exactly one exit frame")
        self.assertTrue(all(f["status"] == "ok" and f["attempt"] == 1 for f in exits))
        for i, jid in enumerate(ids):
            out = b"".join(f["data"] for f in self.frames(job_id=jid) if f["kind"] == "stdout")
            self.assertEqual(out, b"job %d\n" % i)
        self.assertLessEqual(most[0], 4, "the worker held more jobs than slots")
        self.assertGreaterEqual(most[0], 2, "jobs did not run side by side")
        wait_for(lambda: self.pending() == 0, 5, "every job acknowledged")

    def test_log_is_one_json_object_per_line(self):
        import json
        w = self.worker()
        ex, _, _ = self.run_job("echo logged")
        # the finished line is written when Redis confirms the exit frame,
        # which may be just after a reader sees the frame
        mine = wait_for(lambda: (lambda m: m if len(m) >= 2 else None)(
            [l for l in map(json.loads, w.text().decode().splitlines()) if l.get("job") == ex["id"]]),
            10, "the job's started and finished lines")
        lines = [json.loads(l) for l in w.text().decode().splitlines()]
        self.assertTrue(all({"time", "level", "msg"} <= set(l) for l in lines))
        self.assertEqual(len(mine), 2, "a started line and a finished line")
        self.assertTrue(all(l["plugin"] == "shell" and l["attempt"] == 1 for l in mine))
        self.assertIn("started", mine[0]["msg"])

    def test_jobs_enqueued_before_the_worker_starts_are_run(self):
        j = self.job("echo queued")
        self.submit(j)  # no group yet: the worker creates it from the start
        self.worker()
        fs = self.wait_exit(j["id"])
        self.assertEqual(fs[-1]["status"], "ok")


if __name__ == "__main__":
    main()
