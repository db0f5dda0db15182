"""Integration test harness for kiln: a real redis-server on a free loopback
port, real kiln-worker processes, and Python's redis and msgpack as the
independent client that writes jobs and reads frames (the wire contract as a
user sees it). Every wait is bounded; nothing sleeps blindly.

Tests that cannot run here exit 77 with the reason (ctest: skipped).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import msgpack
import redis

BUILD = os.environ.get("KILN_BUILD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
BIN = os.path.join(BUILD, "bin")
SKIP = 77


def skip_unless_jail_works():
    """The jail needs root and user namespaces; say so and skip otherwise."""
    if os.geteuid() != 0:
        print("SKIPPED: the jail backend needs root (uid maps)")
        sys.exit(SKIP)
    r = subprocess.run(["unshare", "-Upmn", "--fork", "true"], capture_output=True)
    if r.returncode != 0:
        print("SKIPPED: user namespaces unavailable: " + r.stderr.decode().strip())
        sys.exit(SKIP)
    if shutil.which("redis-server") is None:
        print("SKIPPED: redis-server is not installed (run ops/install-deps.sh)")
        sys.exit(SKIP)


def wait_for(pred, timeout=10.0, what="condition", interval=0.02):
    """Poll pred() until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A private redis-server; AOF on, so a restart keeps the streams."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--logfile", os.path.join(self.dir, "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port)

        def up():
            try:
                return self.client.ping()
            except redis.exceptions.ConnectionError:
                return False
        wait_for(up, 10, "redis-server to answer")

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()


class Worker:
    def __init__(self, tmp, redis_url, consumer, *extra, env=None):
        self.log_path = os.path.join(tmp, "worker-%s-%s.log" % (consumer, uuid.uuid4().hex[:6]))
        self.log = open(self.log_path, "wb")
        self.args = [os.path.join(BIN, "kiln-worker"), "--redis", redis_url,
                     "--consumer", consumer, "--block-ms", "200", *extra]
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=e)
        wait_for(lambda: b"fetch connection up" in self.text() or self.proc.poll() is not None,
                 10, "the worker to connect")
        if self.proc.poll() is not None:
            raise AssertionError("worker exited at start:\n" + self.text().decode())

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class KilnCase(unittest.TestCase):
    """Each test gets a fresh redis-server and temp dir; workers it starts
    are stopped after it, and their logs printed if it failed."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kiln-test-")
        self.redis = Redis(self.tmp)
        self.r = self.redis.client
        self.workers = []

    def tearDown(self):
        for w in self.workers:
            w.stop()
        res = getattr(self._outcome, "result", None)
        failed = bool(res and any(t is self for t, _ in res.errors + res.failures))
        if failed or os.environ.get("KILN_TEST_VERBOSE"):
            for w in self.workers:
                sys.stderr.write("---- %s\n%s\n" % (w.log_path, w.text().decode(errors="replace")[-6000:]))
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def worker(self, consumer="w1", *extra, env=None):
        w = Worker(self.tmp, self.redis.url, consumer, *extra, env=env)
        self.workers.append(w)
        return w

    # ---- the client side of the contract ----

    def submit(self, job=None, raw=None, stream="kiln.jobs", **fields):
        """XADD a job (a dict packed here, or raw bytes) and return its entry id."""
        if raw is None:
            job = dict(job or {})
            job.setdefault("id", "t-" + uuid.uuid4().hex[:12])
            job.setdefault("plugin", "shell")
            raw = msgpack.packb(job, use_bin_type=True)
        entry = {"job": raw} if not fields else fields
        return self.r.xadd(stream, entry).decode()

    def job(self, code, **kw):
        j = {"id": "t-" + uuid.uuid4().hex[:12], "plugin": "shell", "code": code}
        j.update(kw)
        return j

    def frames(self, stream="kiln.results", job_id=None):
        """Every frame in `stream` (for job_id, if given), with its entry id."""
        out = []
        for entry_id, fields in self.r.xrange(stream):
            f = msgpack.unpackb(fields[b"frame"], raw=False)
            f["_entry"] = entry_id.decode()
            if job_id is None or f.get("id") == job_id:
                out.append(f)
        return out

    def wait_exit(self, job_id, stream="kiln.results", timeout=20, attempt=None):
        """Wait for job_id's exit frame (of `attempt`, if given); return all
        of its frames."""
        def done():
            fs = self.frames(stream, job_id)
            if any(f["kind"] == "exit" and (attempt is None or f["attempt"] == attempt) for f in fs):
                return fs
            return None
        return wait_for(done, timeout, "exit frame of %s in %s" % (job_id, stream))

    def run_job(self, code, timeout=20, **kw):
        """Submit a job, wait for its end; return (exit frame, stdout, stderr)."""
        j = self.job(code, **kw)
        self.submit(j)
        fs = self.wait_exit(j["id"], kw.get("reply_to", "kiln.results"), timeout)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        out = b"".join(f["data"] for f in fs if f["kind"] == "stdout")
        err = b"".join(f["data"] for f in fs if f["kind"] == "stderr")
        return ex, out, err

    def pending(self, stream="kiln.jobs", group="kiln"):
        try:
            return self.r.xpending(stream, group)["pending"]
        except redis.exceptions.ResponseError:
            return 0


def main():
    unittest.main(verbosity=2)
