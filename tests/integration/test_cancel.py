"""Cancellation and deadlines: a {cancel: id} on the control stream stops a
running job (status cancelled) and a queued one before it starts; a job
whose deadline has passed when it is dequeued ends expired, never run."""
import time

from kilntest import KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()


class Cancel(KilnCase):
    def test_cancel_a_running_job(self):
        w = self.worker("c1")
        j = self.job("echo begun; sleep 30; echo NOT-REACHED")
        self.submit(j)
        wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames(job_id=j["id"])), 10, "the job to run")
        t = time.monotonic()
        self.r.xadd("kiln.control", {"cancel": j["id"]})
        ex = self.wait_exit(j["id"], timeout=10)[-1]
        self.assertEqual(ex["status"], "cancelled")
        self.assertLess(time.monotonic() - t, 5)
        out = b"".join(f["data"] for f in self.frames(job_id=j["id"]) if f["kind"] == "stdout")
        self.assertEqual(out, b"begun\n")
        wait_for(lambda: self.pending() == 0, 5, "the cancelled job to be acknowledged")
        self.assertTrue(w.alive())

    def test_cancel_reaches_a_job_still_queued(self):
        w = self.worker("c1", "--slots", "1")
        blocker = self.job("sleep 1.5")
        queued = self.job("echo NOT-RUN")
        self.submit(blocker)
        self.submit(queued)
        # the one slot is taken: the second job waits in the stream
        wait_for(lambda: ("job %s attempt 1: started" % blocker["id"]).encode() in w.text(), 10,
                 "the blocker to start")
        self.r.xadd("kiln.control", {"cancel": queued["id"]})
        ex = self.wait_exit(queued["id"], timeout=15)[-1]
        self.assertEqual(ex["status"], "cancelled")
        self.assertFalse(any(f["kind"] == "stdout" for f in self.frames(job_id=queued["id"])))
        self.assertEqual(self.wait_exit(blocker["id"])[-1]["status"], "ok")

    def test_expired_job_never_runs(self):
        w = self.worker("c1")
        j = self.job("echo RAN", deadline=int(time.time() * 1000) - 1000)
        self.submit(j)
        ex = self.wait_exit(j["id"])[-1]
        self.assertEqual(ex["status"], "expired")
        self.assertIn("deadline passed", ex["reason"])
        self.assertEqual([f for f in self.frames(job_id=j["id"]) if f["kind"] == "stdout"], [])
        self.assertNotIn(b"started", w.text())
        ok = self.job("echo fine", deadline=int(time.time() * 1000) + 60000)
        self.submit(ok)
        self.assertEqual(self.wait_exit(ok["id"])[-1]["status"], "ok")


if __name__ == "__main__":
    main()
