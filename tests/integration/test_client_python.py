"""The Python client (clients/python, kiln_client) against a real
redis-server and real workers, and the Kafka dev broker: every status a
job can end with (internal from a worker whose sandboxes cannot start), streaming in order, de-duplication when a worker dies
mid-job, map() with 500 jobs and a bounded in-flight count, cancel,
timeouts, broken connections, sessions, the asyncio twin; its msgpack
shapes against schemas/vectors; its types under mypy --strict, and the
README's examples run as they are written."""
import asyncio
import glob
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import msgpack

from kilntest import KafkaCase, KilnCase, main, rootfs_args, skip_unless_jail_works, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
import kiln_client  # noqa: E402
from kiln_client import AsyncClient, Client, Collector, build_job  # noqa: E402

VECTORS = os.path.join(HERE, "..", "..", "schemas", "vectors")
skip_unless_jail_works()
ROOTFS = rootfs_args()


class Shapes(KilnCase):
    """What the client packs and reads is the contract's (no worker)."""

    def test_jobs_it_builds_are_the_golden_vectors(self):
        def vector(name):
            with open(os.path.join(VECTORS, "job", "valid", name + ".msgpack"), "rb") as f:
                return msgpack.unpackb(f.read(), raw=False)
        built = {
            "session": build_job("python", "x = 1", id="s1", session={"id": "sess-1", "idle_ms": 60000,
                                                                      "close": True}),
            "session_bare": build_job("deno-eval", "x", id="s2", session="sess-1"),
            "collect": build_job("python", "pass", id="c1", collect=["out/*.png", "**/*.json", "r.txt"],
                                 limits={"collect_bytes": 1048576}),
        }
        for name, job in built.items():
            job.pop("v")
            self.assertEqual(job, vector(name), name)
        self.assertEqual(build_job("shell", "t", net=["a.example"])["net"], {"allow": ["a.example"]})
        self.assertEqual(build_job("shell", "t", stdin="é")["stdin"], "é".encode())

    def test_results_from_the_golden_frames(self):
        frames = []
        for name in ("stdout", "stderr_binary", "exit_ok"):
            with open(os.path.join(VECTORS, "frame", name + ".msgpack"), "rb") as f:
                frames.append(msgpack.unpackb(f.read(), raw=False))
        col = Collector("j1")
        for f in frames + frames:  # each twice: once counts
            col.add(f)
        r = col.result()
        # stdout's attempt 1 is replaced by stderr_binary's attempt 2; the
        # exit frame (attempt 1) then is an earlier attempt's: not done
        self.assertEqual((r.stdout, r.stderr), (b"", b"\xff\x00"))
        self.assertFalse(col.done)
        col = Collector("j1")
        for f in (frames[0], frames[2], frames[0]):
            col.add(f)
        r = col.result()
        self.assertTrue(col.done)
        self.assertEqual((r.status, r.code, r.stdout, r.wall_ms, r.worker), ("ok", 0, b"hello\n", 12, "w-1"))
        self.assertEqual(r.frames, [frames[0], frames[2]])

    def test_a_broken_connection_is_the_clients_own_error(self):
        with Client("redis://127.0.0.1:1") as kiln:
            with self.assertRaises(kiln_client.KilnConnectionError):
                kiln.run("shell", "true", timeout=5)


class OnRedis(KilnCase):
    def setUp(self):
        super().setUp()
        self.w = self.worker("w1", *ROOTFS, "--claim-idle-ms", "2000")
        self.kiln = Client(self.redis.url)

    def tearDown(self):
        self.kiln.close()
        super().tearDown()

    def test_every_status(self):
        k = self.kiln
        cases = [
            (k.run("shell", "echo hi"), "ok", None),
            (k.run("shell", "exit 3"), "error", 3),
            (k.run("shell", "sleep 5", limits={"timeout_ms": 500}), "timeout", None),
            (k.run("shell", "kill -9 $$"), "killed", None),
            (k.run("shell", "yes", limits={"output_bytes": 1000}), "output_limit", None),
            (k.run("python", "b = bytearray(200 << 20)", limits={"memory_mb": 64}), "oom", None),
            (k.run("no-such-plugin", "x"), "rejected", None),
            (k.run("shell", "true", deadline=1000), "expired", None),
            (k.run("python", "1", extra={"session": {"id": "not an id"}}), "rejected", None),
        ]
        for r, status, code in cases:
            self.assertEqual(r.status, status, r)
            if code is not None:
                self.assertEqual(r.code, code)
        self.assertEqual(cases[0][0].stdout_text, "hi\n")
        self.assertIn("unknown plugin", cases[6][0].reason)
        self.assertTrue(cases[0][0].check().ok)
        with self.assertRaises(kiln_client.JobError) as e:
            cases[1][0].check()
        self.assertIn("error (code 3)", str(e.exception))
        # cancelled, and a session that is no more
        jid = "c-" + uuid.uuid4().hex
        t = threading.Timer(1.0, lambda: k.cancel(jid))
        t.start()
        self.assertEqual(k.run("shell", "sleep 30", id=jid).status, "cancelled")
        sid = "s-" + uuid.uuid4().hex
        self.assertEqual(k.run("python", "a = 1", session={"id": sid, "close": True}).status, "ok")
        r = k.run("python", "a", session=sid)
        self.assertEqual((r.status, r.session), ("session_lost", {"id": sid}))

    def test_stream_yields_output_in_order_as_it_comes(self):
        got = []
        t0 = time.monotonic()
        for f in self.kiln.stream("python", "import time\nfor i in range(3):\n    print(i, flush=True)\n"
                                            "    time.sleep(0.7)\n"):
            got.append((time.monotonic() - t0, f))
        kinds = [f["kind"] for _, f in got]
        self.assertEqual(kinds[-1], "exit")
        self.assertEqual(b"".join(f["data"] for _, f in got if f["kind"] == "stdout"), b"0\n1\n2\n")
        self.assertEqual([f["seq"] for _, f in got], sorted(f["seq"] for _, f in got))
        # the first line came while the job still ran
        self.assertLess(got[0][0], got[-1][0] - 1.0)

    def test_results_of_the_last_attempt_once_after_a_worker_died(self):
        jid = "d-" + uuid.uuid4().hex
        out = []
        code = ("import os, time\nprint('attempt', os.environ['KILN_ATTEMPT'], flush=True)\n"
                "time.sleep(4 if os.environ['KILN_ATTEMPT'] == '1' else 0)\nprint('done')\n")

        def killer():
            # killed mid-run, once its first output is out
            wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames("kiln.reply." + jid)), 20,
                     "the first attempt's output")
            self.w.kill9()
            self.worker("w2", *ROOTFS, "--claim-idle-ms", "2000")
        t = threading.Thread(target=killer)
        t.start()
        for f in self.kiln.stream("python", code, id=jid, timeout=60):
            out.append(f)
        t.join()
        col = Collector(jid)
        for f in out:
            col.add(f)
        res = col.result()
        self.assertEqual((res.status, res.attempt), ("ok", 2))
        self.assertEqual(res.stdout, b"attempt 2\ndone\n")  # attempt 1's line is dropped
        # the stream showed attempt 1's line first, then attempt 2's frames
        self.assertEqual([(f["attempt"], f["kind"]) for f in out][0], (1, "stdout"))

    def test_map_500_jobs_with_a_bounded_in_flight_count(self):
        enqueued, yielded, most = [0], [0], [0]
        real = self.kiln.t.enqueue

        def counting(job, key):
            enqueued[0] += 1
            most[0] = max(most[0], enqueued[0] - yielded[0])
            real(job, key)
        self.kiln.t.enqueue = counting
        jobs = ({"plugin": "shell", "code": "echo $((%d * 2))" % i, "id": "m%03d-%s" % (i, uuid.uuid4().hex[:6])}
                for i in range(500))
        seen = {}
        for r in self.kiln.map(jobs, concurrency=8, timeout=120):
            yielded[0] += 1
            seen[r.id] = r
        self.assertEqual(len(seen), 500)
        self.assertTrue(all(r.status == "ok" for r in seen.values()))
        self.assertEqual(sorted(int(r.stdout) for r in seen.values()), [2 * i for i in range(500)])
        self.assertLessEqual(most[0], 8)
        self.assertEqual(most[0], 8)
        self.assertEqual(self.r.keys("kiln.reply.map-*"), [])  # its reply stream is gone

    def test_timeout_names_the_job(self):
        jid = "t-" + uuid.uuid4().hex
        with self.assertRaises(kiln_client.TimeoutError) as e:
            self.kiln.run("shell", "sleep 10", id=jid, timeout=0.5)
        self.assertIsInstance(e.exception, TimeoutError)
        self.assertIn(jid, str(e.exception))

    def test_sessions_and_a_shared_reply_stream(self):
        sid = "s-" + uuid.uuid4().hex
        with Client(self.redis.url, reply_to="app.replies") as kiln:
            self.assertEqual(kiln.run("python", "x = 20", session=sid).status, "ok")
            r = kiln.run("python", "x + 22", session=sid)
            self.assertEqual((r.results, r.session), (["42"], {"id": sid, "seq": 2}))
        self.assertGreater(self.r.xlen("app.replies"), 0)

    def test_async_client(self):
        async def go():
            async with AsyncClient(self.redis.url) as kiln:
                r = await kiln.run("python", "print('async')")
                frames = [f async for f in kiln.stream("shell", "echo a; echo b >&2")]
                results, streams = [], set()
                async for x in kiln.map(({"plugin": "shell", "code": "echo %d" % i} for i in range(20)),
                                        concurrency=4):
                    results.append(x)
                    streams.update(self.r.scan_iter("kiln.reply.*"))
                self.assertEqual(len(streams), 1, "map's jobs share one reply stream: %r" % streams)
                with self.assertRaises(kiln_client.TimeoutError):
                    await kiln.run("shell", "sleep 10", timeout=0.3)
                return r, frames, results
        r, frames, results = asyncio.run(go())
        self.assertEqual((r.status, r.stdout), ("ok", b"async\n"))
        self.assertEqual(frames[-1]["kind"], "exit")
        self.assertEqual(sorted(int(x.stdout) for x in results), list(range(20)))


class Typed(KilnCase):
    PKG = os.path.join(HERE, "..", "..", "clients", "python")

    def test_mypy_strict_over_the_package_and_its_example(self):
        mypy = shutil.which("mypy")
        self.assertIsNotNone(mypy, "mypy is not installed (ops/install-deps.sh installs it)")
        r = subprocess.run([mypy, "--strict", "kiln_client", "examples/three.py"], cwd=self.PKG,
                           capture_output=True, timeout=600, env=dict(os.environ, MYPY_CACHE_DIR=self.tmp))
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))
        self.assertTrue(os.path.exists(os.path.join(self.PKG, "kiln_client", "py.typed")))

    def test_the_readme_examples_run(self):
        self.worker("ex", *ROOTFS)
        r = subprocess.run([sys.executable, "examples/three.py"], cwd=self.PKG, capture_output=True, timeout=300,
                           env=dict(os.environ, KILN_REDIS=self.redis.url, PYTHONPATH=self.PKG))
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["ok 42", "wrong_answer ['accepted', 'wrong_answer']", "2470"])


class OnABrokenWorker(KilnCase):
    def test_internal(self):
        # a worker whose sandboxes cannot start: kiln's own failure, after
        # its one attempt
        self.worker("bad", *ROOTFS, "--agent", "/bin/false", "--max-attempts", "1", "--pool", "0",
                    "--jobs", "kiln.jobs.broken")
        with Client(self.redis.url, jobs="kiln.jobs.broken") as kiln:
            r = kiln.run("shell", "true", timeout=60)
        self.assertEqual(r.status, "internal", r)
        self.assertTrue(r.reason)
        with self.assertRaises(kiln_client.JobError):
            r.check()


class OnKafka(KafkaCase):
    def test_run_map_and_a_session_over_kafka(self):
        self.kworker("k1", *ROOTFS)
        made = []
        real = kiln_client._transport.KafkaReader.__init__

        def counting(reader, t, topic, consumer=None):
            made.append(consumer is None)
            real(reader, t, topic, consumer)
        kiln_client._transport.KafkaReader.__init__ = counting
        self.addCleanup(setattr, kiln_client._transport.KafkaReader, "__init__", real)
        with Client(brokers=self.b) as kiln:
            r = kiln.run("shell", "echo kafka", timeout=60)
            self.assertEqual((r.status, r.stdout), ("ok", b"kafka\n"))
            got = [x.stdout for x in kiln.map(({"plugin": "shell", "code": "echo %d" % i} for i in range(30)),
                                              concurrency=5, timeout=60)]
            self.assertEqual(sorted(int(x) for x in got), list(range(30)))
            sid = "s-" + uuid.uuid4().hex
            kiln.run("python", "v = 1", session=sid, timeout=60)
            self.assertEqual(kiln.run("python", "v + 1", session=sid, timeout=60).results, ["2"])
        # four calls one after the other (run, map, run, run): one consumer, made by the first
        self.assertEqual(made, [True, False, False, False])

        async def go():
            # frames as they come: the first well before the job ends
            seen = []
            async with AsyncClient(brokers=self.b) as kiln:
                async for f in kiln.stream("shell", "echo first; sleep 5; echo second", timeout=90):
                    seen.append((f["kind"], time.monotonic()))
            return seen
        seen = asyncio.run(go())
        self.assertEqual([k for k, _ in seen], ["stdout", "stdout", "exit"])
        self.assertGreater(seen[-1][1] - seen[0][1], 3, "the first frame came only when the job had ended")


if __name__ == "__main__":
    main()
