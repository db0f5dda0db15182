"""Graceful drain on SIGTERM: running jobs finish and are acknowledged
within --drain-timeout-ms and the worker exits 0; past the timeout the
unfinished ones are stopped unacknowledged and another worker finishes
them; a second SIGTERM exits at once."""
import signal
import time

from kilntest import KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()


class Drain(KilnCase):
    def long_jobs(self, n, secs):
        jobs = [self.job("echo start; sleep %s; echo end" % secs) for _ in range(n)]
        for j in jobs:
            self.submit(j)
        return jobs

    def started(self, w, n):
        wait_for(lambda: w.text().count(b": started (") >= n, 20, "%d jobs to start" % n)

    def test_sigterm_lets_running_jobs_finish_and_exits_0(self):
        w = self.worker("d1", "--slots", "4", "--drain-timeout-ms", "20000")
        jobs = self.long_jobs(4, 1.5)
        self.started(w, 4)
        extra = self.job("echo must not start here")
        self.submit(extra)
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.proc.wait(30), 0)
        for j in jobs:
            fs = self.frames(job_id=j["id"])
            self.assertEqual(fs[-1]["kind"], "exit")
            self.assertEqual(fs[-1]["status"], "ok")
            self.assertEqual(b"".join(f["data"] for f in fs if f["kind"] == "stdout"), b"start\nend\n")
        self.assertEqual(self.frames(job_id=extra["id"]), [], "a job was taken while draining")
        self.assertEqual(self.pending(), 0, "finished jobs left unacknowledged")
        self.assertIn(b"drained", w.text())
        # the job that arrived during the drain is still there for the next worker
        self.worker("d2")
        self.assertEqual(self.wait_exit(extra["id"])[-1]["status"], "ok")

    def test_drain_timeout_leaves_unfinished_jobs_to_another_worker(self):
        w = self.worker("d1", "--slots", "4", "--drain-timeout-ms", "300", "--claim-idle-ms", "1000")
        jobs = self.long_jobs(4, 3)
        self.started(w, 4)
        t = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.proc.wait(30), 0)
        self.assertLess(time.monotonic() - t, 10)
        self.assertEqual(self.pending(), 4, "unfinished jobs must stay unacknowledged")
        for j in jobs:
            self.assertFalse(any(f["kind"] == "exit" for f in self.frames(job_id=j["id"])),
                             "an unfinished job got an exit frame")
        self.worker("d2", "--claim-idle-ms", "1000", "--slots", "4")
        for j in jobs:
            ex = self.wait_exit(j["id"], timeout=30)[-1]
            self.assertEqual((ex["status"], ex["worker"], ex["attempt"]), ("ok", "d2", 2))
        wait_for(lambda: self.pending() == 0, 10, "all acknowledged by the second worker")

    def test_second_sigterm_exits_at_once(self):
        w = self.worker("d1", "--slots", "2", "--drain-timeout-ms", "60000")
        self.long_jobs(2, 30)
        self.started(w, 2)
        w.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: b"draining" in w.text(), 5, "the drain to start")
        t = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.proc.wait(10), 0)
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual(self.pending(), 2)


if __name__ == "__main__":
    main()
