"""Integration test harness for kiln: a real redis-server on a free loopback
port, real kiln-worker processes, and Python's redis and msgpack as the
independent client that writes jobs and reads frames (the wire contract as a
user sees it). Every wait is bounded; nothing sleeps blindly.

Tests that cannot run here exit 77 with the reason (ctest: skipped).
"""
import json
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
# ctest passes where the build put the binaries and plugins (the install
# layout, CMakeLists.txt); these defaults are a default build's.
BIN = os.environ.get("KILN_BIN") or os.path.join(BUILD, "bin")
PLUGINS = os.environ.get("KILN_PLUGINS") or os.path.join(BUILD, "lib", "kiln", "plugins")
SKIP = 77


def read_env(*paths):
    """KEY=VALUE lines of the build's env files (rootfs/kiln.env, vm/vm.env),
    merged into one dict."""
    kv = {}
    for path in paths:
        with open(path) as f:
            kv.update(dict(l.strip().split("=", 1) for l in f if "=" in l))
    return kv


def image_env(name="default"):
    """The kiln.env of runtime image `name` as ctest built it (the default
    in build/rootfs, another in build/images/NAME), or exit 77 saying it
    is not built."""
    env = os.path.join(BUILD, "rootfs", "kiln.env") if name == "default" else \
        os.path.join(BUILD, "images", name, "kiln.env")
    if not os.path.exists(env):
        print("SKIPPED: the runtime image %s is not built (make rootfs, or ctest's images.build)" % name)
        sys.exit(SKIP)
    return read_env(env)


def rootfs_args(image=None):
    """--rootfs and --rootfs-digest of the runtime image ctest built, as
    its tree (the tests' choice: no loop device per worker; the env file's
    default is the squashfs, rootfs_image_args). `image` (default: the
    environment's KILN_TEST_IMAGE, else default) names another image to
    serve as the worker's default: a suite run against it."""
    kv = image_env(image or os.environ.get("KILN_TEST_IMAGE") or "default")
    return ["--rootfs", kv.get("KILN_ROOTFS_TREE", kv["KILN_ROOTFS"]), "--rootfs-digest", kv["KILN_ROOTFS_DIGEST"]]


def image_args(name, squashfs=False):
    """--image NAME=PATH and --image-digest NAME=HEX for runtime image
    `name` (its tree, or its squashfs)."""
    kv = image_env(name)
    path = kv["KILN_VM_IMAGE"] if squashfs else kv.get("KILN_ROOTFS_TREE", kv["KILN_ROOTFS"])
    return ["--image", "%s=%s" % (name, path), "--image-digest", "%s=%s" % (name, kv["KILN_ROOTFS_DIGEST"])]


def rootfs_image_args():
    """--rootfs as the runtime image's squashfs (the same content and
    digest as the tree), which the worker loop-mounts."""
    env = os.path.join(BUILD, "rootfs", "kiln.env")
    kv = read_env(env) if os.path.exists(env) else {}
    if "KILN_VM_IMAGE" not in kv or not os.path.exists("/dev/loop-control"):
        print("SKIPPED: no runtime squashfs (squashfs-tools) or no loop devices here")
        sys.exit(SKIP)
    return ["--rootfs", kv["KILN_VM_IMAGE"], "--rootfs-digest", kv["KILN_ROOTFS_DIGEST"]]


def jail_unavailable():
    """Why the jail backend cannot run here (root, user namespaces,
    redis-server), or None when it can."""
    if os.geteuid() != 0:
        return "the jail backend needs root (uid maps)"
    r = subprocess.run(["unshare", "-Upmn", "--fork", "true"], capture_output=True)
    if r.returncode != 0:
        return "user namespaces unavailable: " + r.stderr.decode().strip()
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (run ops/install-deps.sh)"
    return None


def skip_unless_jail_works():
    """The jail needs root and user namespaces; say so and skip otherwise."""
    why = jail_unavailable()
    if why is not None:
        print("SKIPPED: " + why)
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


_held_ports = []


def free_port():
    """A loopback port for a server a test starts, free until that server
    binds it: taken below the kernel's ephemeral range (so no outgoing
    connection is given it meanwhile) and held with a lock file for this
    test process's life (so a test running beside it never picks it)."""
    import fcntl
    import random
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        eph_lo = int(f.read().split()[0])
    lo, hi = 20000, max(20000 + 1000, eph_lo) - 1
    locks = "/tmp/kiln-test-ports"
    os.makedirs(locks, exist_ok=True)
    for _ in range(1000):
        port = random.randint(lo, hi)
        fd = os.open(os.path.join(locks, str(port)), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                os.close(fd)
                continue
        _held_ports.append(fd)
        return port
    raise AssertionError("no free port below the ephemeral range")


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
        self.consumer = consumer
        self.args = [os.path.join(BIN, "kiln-worker"), "--consumer", consumer, *extra]
        if redis_url is not None:
            self.args += ["--redis", redis_url, "--block-ms", "200"]
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=e)
        ready = b"fetch connection up" if redis_url is not None else b"partition(s) assigned"
        wait_for(lambda: ready in self.text() or self.proc.poll() is not None,
                 20, "the worker to connect")
        if self.proc.poll() is not None:
            raise AssertionError("worker exited at start:\n" + self.text().decode())

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def pool_ready(self, plugin):
        """Warm sandboxes of `plugin` ready now, from the debug log: every
        refill logs "sandbox warm", every warm job "started (<plugin>, warm"."""
        t = self.text()
        return (t.count(b"pool %s: sandbox warm" % plugin.encode())
                - t.count(b"started (%s, warm," % plugin.encode()))

    def wait_pool(self, plugin, n):
        wait_for(lambda: self.pool_ready(plugin) >= n, 20, "%d warm %s sandboxes" % (n, plugin))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        """SIGTERM drains (running jobs may finish); a second one ends it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        self.log.close()


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


class SecondHost:
    """Another host for egress tests: a network namespace joined to this
    one by a veth pair (10.231.N.0/30), serving HTTP on 8080 and 8081 a file
    hello.txt that says "hello from the second host"."""

    def __init__(self, tmp):
        import random
        # one not in use (by another test's host, or one a failed setUp left)
        used = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        n = random.choice([i for i in range(1, 251) if "kilnt%d" % i not in used])
        self.ns, self.vh, self.vn = "kilnt%d" % n, "kvh%d" % n, "kvn%d" % n
        self.host_ip, self.peer = "10.231.%d.1" % n, "10.231.%d.2" % n
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.vh, "type", "veth", "peer", "name", self.vn)
        sh("ip", "link", "set", self.vn, "netns", self.ns)
        sh("ip", "addr", "add", self.host_ip + "/30", "dev", self.vh)
        sh("ip", "link", "set", self.vh, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "addr", "add", self.peer + "/30", "dev", self.vn)
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", self.vn, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "hello.txt"), "w") as f:
            f.write("hello from the second host\n")
        self.servers = [subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-m", "http.server", str(port),
             "--bind", self.peer, "--directory", www],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in (8080, 8081)]

        def up():
            try:
                socket.create_connection((self.peer, 8081), 1).close()
                socket.create_connection((self.peer, 8080), 1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "the second host's HTTP servers")

    def stop(self):
        for s in self.servers:
            s.kill()
            s.wait(5)
        subprocess.run(["ip", "link", "del", self.vh], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


class SecretHost(SecondHost):
    """The second host, plus a logging server: HTTP on 80, 9080 and 9081,
    HTTPS on 443 and 9443 with a certificate for its address from the
    test's own CA."""

    def __init__(self, tmp):
        super().__init__(tmp)
        d = os.path.join(tmp, "pki")
        os.makedirs(d)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=kiln test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        openssl("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=" + self.peer,
                "-addext", "subjectAltName=IP:" + self.peer, cwd=d)
        openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", "srv.pem", "-copy_extensions", "copy", cwd=d)
        self.ca = os.path.join(d, "ca.pem")
        self.log = os.path.join(tmp, "requests.jsonl")
        open(self.log, "w").close()
        self.servers.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "secret_server.py"),
             self.peer, self.log, "80,9080,9081", "443,9443", os.path.join(d, "srv.pem"),
             os.path.join(d, "srv.key")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        def up():
            try:
                for p in (80, 443, 9080, 9081, 9443):
                    socket.create_connection((self.peer, p), 1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, "the test host's logging servers")

    def requests(self):
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]


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
                sys.stderr.write("---- %s\n%s\n" % (w.log_path, w.text().decode(errors="replace")[-40000:]))
        # a job's or a session's state machine said a move it has no arrow
        # for (core/life.c, core/session.c): whatever the test checked, it failed
        bugs = [line for w in self.workers for line in w.text().splitlines() if b"(a bug)" in line]
        self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if bugs:
            self.fail("the worker logged a bug: %s" % bugs[0].decode(errors="replace"))

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


def main_partial():
    """For files mixing checks that run anywhere with ones that need the
    jail: run them all; exit 1 if any failed, else 77 (ctest: skipped) with
    the reasons when any was skipped, so a partial run never reads as a
    whole pass; else 0."""
    prog = unittest.main(verbosity=2, exit=False)
    res = prog.result
    if res.failures or res.errors or res.unexpectedSuccesses:
        sys.exit(1)
    if res.skipped:
        for test, why in res.skipped:
            print("SKIPPED: %s: %s" % (test.id(), why))
        sys.exit(SKIP)
    sys.exit(0)


class DevBroker:
    """`kiln dev-broker`: librdkafka's mock cluster on loopback, with its
    stdin as the fault-injection channel."""

    def __init__(self, tmp, brokers=1, partitions=4):
        self.err = open(os.path.join(tmp, "dev-broker.log"), "wb")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "kiln"), "dev-broker", "--brokers", str(brokers),
             "--partitions", str(partitions)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)
        self.bootstraps = self.proc.stdout.readline().decode().strip()
        if not self.bootstraps:
            raise AssertionError("kiln dev-broker did not start")

    def cmd(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().decode().strip()
        if answer != "ok":
            raise AssertionError("dev-broker %r: %s" % (line, answer))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.terminate()
            self.proc.wait(10)
        self.err.close()


# Test-friendly librdkafka settings: the mock broker only answers an empty
# fetch when fetch.wait.max.ms expires, and a dead member should be noticed
# in seconds, not the default 45.
KAFKA_TEST_CONF = ["fetch.wait.max.ms=20", "session.timeout.ms=6000",
                   "heartbeat.interval.ms=500"]


class KafkaCase(KilnCase):
    def setUp(self):
        super().setUp()
        self.broker = DevBroker(self.tmp)
        self.b = self.broker.bootstraps

    def tearDown(self):
        for w in self.workers:
            w.stop()
        super().tearDown()
        self.broker.stop()

    def kworker(self, consumer, *extra):
        conf = []
        for kv in KAFKA_TEST_CONF:
            conf += ["--kafka-conf", kv]
        w = Worker(self.tmp, None, consumer, "--queue", "kafka", "--brokers", self.b, *conf, *extra)
        self.workers.append(w)
        return w

    def producer(self):
        from confluent_kafka import Producer
        return Producer({"bootstrap.servers": self.b, "linger.ms": 0})

    def produce(self, jobs, raw=None, key=None):
        p = self.producer()
        for j in jobs:
            p.produce("kiln.jobs", msgpack.packb(j, use_bin_type=True), key=key or j["id"])
        if raw is not None:
            p.produce("kiln.jobs", raw, key=key)
        p.flush(10)

    def partitions(self, topic):
        """The partition numbers of `topic`, from the broker's metadata."""
        md = self.producer().list_topics(topic, timeout=10)
        return sorted(md.topics[topic].partitions)

    def consume(self, topic, **conf):
        """Every message now in `topic`, read from the beginning by a fresh
        confluent_kafka consumer: (key, headers, value, partition, offset)."""
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer(dict({"bootstrap.servers": self.b, "group.id": "reader-" + uuid.uuid4().hex,
                           "enable.auto.commit": False, "enable.partition.eof": True,
                           "fetch.wait.max.ms": 20}, **conf))
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out, eofs = [], set()
        deadline = time.monotonic() + 10
        while len(eofs) < len(parts) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                eofs.add(m.partition())
                continue
            out.append((m.key(), dict(m.headers() or []), m.value(), m.partition(), m.offset()))
        c.close()
        return out

    def kframes(self, topic="kiln.results"):
        """Every frame now in `topic`: (key, headers, frame, partition, offset)."""
        return [(k, h, msgpack.unpackb(v, raw=False), p, o) for k, h, v, p, o in self.consume(topic)]

    def kexits(self):
        return [f for _, _, f, _, _ in self.kframes() if f["kind"] == "exit"]

    def wait_kexits(self, n, timeout=60):
        return wait_for(lambda: (lambda e: e if len(e) >= n else None)(self.kexits()), timeout,
                        "%d exit frames" % n, interval=0.3)
