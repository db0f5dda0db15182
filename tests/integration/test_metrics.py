"""/metrics, /healthz and /readyz as Prometheus and Kubernetes see them:
the exposition parses (prometheus_client's own parser), the counters move
with the jobs sent, and /readyz fails while Redis is down."""
import os
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from kilntest import BUILD, KilnCase, free_port, main, rootfs_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Metrics(KilnCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.w = self.worker("m1", *ROOTFS, "--metrics-addr", "127.0.0.1:%d" % self.port, "--slots", "3")

    def samples(self):
        status, text = get(self.base + "/metrics")
        self.assertEqual(status, 200)
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def test_python_template_is_visible(self):
        key = lambda name: (name, (("profile", "python"),))
        wait_for(lambda: self.samples().get(key("kiln_zygote_up")) == 1, 20, "the python template to be up")
        before = self.samples()[key("kiln_zygote_forks_total")]
        ex, out, _ = self.run_job("print(7)", plugin="python")
        self.assertEqual((ex["status"], out), ("ok", b"7\n"))
        wait_for(lambda: self.samples()[key("kiln_zygote_forks_total")] > before, 10,
                 "a fork (the job's, or the pool's refill after it) to be counted")
        self.assertEqual(self.samples()[key("kiln_zygote_starts_total")], 1)

    def test_counters_match_the_jobs_sent(self):
        before = self.samples()
        self.assertEqual(before[("kiln_slots_total", ())], 3)
        self.assertEqual(before[("kiln_slots_busy", ())], 0)
        for i in range(5):
            ex, out, _ = self.run_job("printf 12345")
            self.assertEqual(ex["status"], "ok")
        ex, _, _ = self.run_job("exit 3")
        self.submit(raw=b"\xc1")
        self.submit(self.job("x", plugin="cobol"))
        # a reason that quotes the job says nothing of its class: "sigma" is
        # an unknown plugin, "design.txt" twice an invalid job, not signatures
        self.submit(self.job("x", plugin="sigma"))
        self.submit(self.job("x", files={"design.txt": b"1", "design.txt/x": b"2"}))
        self.submit(self.job("x", meta={"m": b"m" * (80 << 10)}))
        wait_for(lambda: self.samples().get(("kiln_jobs_rejected_total", (("reason", "unknown_plugin"),))) == 2,
                 10, "the rejections to be counted")
        wait_for(lambda: self.samples().get(("kiln_jobs_rejected_total", (("reason", "too_large"),))) == 1,
                 10, "the rejections to be counted")
        m = self.samples()
        self.assertEqual(m[("kiln_jobs_started_total", (("plugin", "shell"),))], 6)
        self.assertEqual(m[("kiln_jobs_finished_total", (("plugin", "shell"), ("status", "ok")))], 5)
        self.assertEqual(m[("kiln_jobs_finished_total", (("plugin", "shell"), ("status", "error")))], 1)
        self.assertEqual(m[("kiln_jobs_rejected_total", (("reason", "not_msgpack"),))], 1)
        self.assertEqual(m[("kiln_jobs_rejected_total", (("reason", "invalid"),))], 1)
        self.assertEqual(m[("kiln_jobs_rejected_total", (("reason", "signature"),))], 0)
        self.assertEqual(m[("kiln_output_bytes_total", (("stream", "stdout"),))], 25)
        # the six that ran, and the one rejected once its plugin had planned it
        self.assertEqual(m[("kiln_job_duration_seconds_count", (("plugin", "shell"),))], 7)
        self.assertGreaterEqual(m[("kiln_job_queue_wait_seconds_count", (("queue", "all"),))], 6)
        self.assertEqual(m[("kiln_build_info", (("version", "0.1.0"),))], 1)
        # each plugin's toolchain, as the image names it
        with open(os.path.join(BUILD, "rootfs", "tree", "etc", "kiln-toolchains")) as f:
            image = dict(line.rstrip("\n").split(" ", 1) for line in f)
        info = {dict(k[1])["plugin"]: dict(k[1]) for k in m if k[0] == "kiln_plugin_info"}
        self.assertEqual(info["python"]["toolchain"], image["python"])
        self.assertTrue(info["python"]["toolchain"].startswith("python3.11 3.11."), info["python"])
        self.assertEqual(info["shell"]["available"], "true")
        for plugin, toolchain in image.items():
            self.assertEqual(info[plugin]["toolchain"], toolchain, plugin)
        self.assertGreater(m[("kiln_pool_hits_total", (("plugin", "shell"),))]
                           + m.get(("kiln_pool_misses_total", (("plugin", "shell"),)), 0), 0)
        # the group's depth, from XINFO GROUPS every few seconds: a sample
        # may be from before the last job was read (ASan once saw lag 1), so
        # it must come to 0 within a few samples, and stay there
        m = wait_for(lambda: (lambda x: x if (x[("kiln_redis_pending", ())], x[("kiln_redis_lag", ())]) == (0, 0)
                              else None)(self.samples()), 20, "the pending and lag gauges at 0")
        self.assertEqual(m[("kiln_redis_pending", ())], 0)
        self.assertEqual(m[("kiln_redis_lag", ())], 0)
        for name, _ in m:
            self.assertTrue(name.startswith("kiln_"), name)
        self.assertFalse(any("id" in dict(labels) for _, labels in m), "a job id became a label")

    def test_health_and_readiness_follow_redis(self):
        self.assertEqual(get(self.base + "/healthz"), (200, "ok\n"))
        wait_for(lambda: get(self.base + "/readyz")[0] == 200, 10, "ready")
        self.redis.kill()
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get(self.base + "/readyz")),
                                10, "/readyz to fail while Redis is down")
        self.assertIn("redis", body)
        self.assertEqual(get(self.base + "/healthz")[0], 200, "the process itself is alive")
        self.redis.start()
        wait_for(lambda: get(self.base + "/readyz")[0] == 200, 20, "ready again")
        m = self.samples()
        self.assertGreaterEqual(m[("kiln_source_reconnects_total", (("source", "redis"),))], 1)
        self.assertEqual(get(self.base + "/nope")[0], 404)


if __name__ == "__main__":
    main()
