"""Containment findings of the security review (issue 11), each as the
hostile job that found it, with the check that failed before the fix:

- socket families a job has no use for (vsock, alg, ...) cannot be opened;
- per-user kernel budgets (inotify, fanotify, message queues, queued
  signals) a job exhausts are not root's: a host process of the worker's
  user is unaffected while the job holds them;
- concurrent jobs have host uids of their own: one job's pipe buffers do
  not shrink another's;
- input the kernel or the sandbox would refuse is `rejected` up front and
  never retried; environment variables that change how a runtime loads
  code are refused;
- `meta` is echoed once per job, and output is capped per job, not per
  input;
- nothing inside names the host's paths, the worker's pid or other
  sandboxes;
- a worker leaves no cgroup or proxy directory behind, and a worker
  started after one killed with -9 removes what it left."""
import ctypes
import ctypes.util
import glob
import os
import signal
import subprocess
import time

import msgpack

from kilntest import BUILD, KilnCase, main_partial, rootfs_args, rootfs_image_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()
IMAGE = rootfs_image_args()  # the same image as a squashfs: a filesystem of its own
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def cgroup_dirs(pid):
    """Sandbox cgroups a worker of `pid` made, in every hierarchy."""
    pats = ["/sys/fs/cgroup/kiln/sb-%d-*", "/sys/fs/cgroup/memory/kiln/sb-%d-*",
            "/sys/fs/cgroup/pids/kiln/sb-%d-*", "/sys/fs/cgroup/cpuacct/kiln/sb-%d-*"]
    return [d for p in pats for d in glob.glob(p % pid)]


def age(path):
    """Seconds since `path` last changed (a path gone: long ago)."""
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return float("inf")


class Containment(KilnCase):
    def state_dir(self):
        self.state = os.path.join(self.tmp, "state")
        os.chmod(self.tmp, 0o711)  # the jail's uid passes through to jail-root
        return self.state

    def start(self, *extra):
        self.state_dir()
        return self.worker("c", *ROOTFS, "--state-dir", self.state, "--log-level", "debug", *extra)

    def stream_until(self, job_id, marker, timeout=30):
        """Wait until job_id's stdout holds `marker` (it keeps running)."""
        def seen():
            out = b"".join(f["data"] for f in self.frames(job_id=job_id) if f["kind"] == "stdout")
            return out if marker in out else None
        return wait_for(seen, timeout, "%r from %s" % (marker, job_id))

    # ---- reused cgroups ----

    def test_a_reused_cgroup_shows_the_next_job_nothing(self):
        """One slot, no pool: each sandbox's cgroup is reset and used again
        for the next (cgroup v1). Whatever a job leaves in its counters (a
        memory peak, an OOM kill, a low memory limit, processes at the pids
        limit) is not the next job's: its figures, its status and its
        limits are its own."""
        w = self.start("--slots", "1", "--pool", "0", "--log-level", "debug")
        hog = "b = bytearray(200 << 20)\nb[::4096] = b'x' * len(b[::4096])\n"
        ex, _, _ = self.run_job(hog, plugin="python")
        self.assertEqual(ex["status"], "ok", ex)
        self.assertGreater(ex["max_rss_kb"], 200 << 10, "the hog's own peak")
        ex, _, _ = self.run_job("print(1)", plugin="python")
        self.assertEqual(ex["status"], "ok", ex)
        self.assertLess(ex["max_rss_kb"], 100 << 10, "the hog's peak is not the next job's")
        ex, _, _ = self.run_job(hog, plugin="python", limits={"memory_mb": 64})
        self.assertEqual(ex["status"], "oom", ex)
        ex, _, _ = self.run_job(hog, plugin="python")
        self.assertEqual(ex["status"], "ok", "neither the OOM kill nor the 64 MiB limit carried over: %r" % ex)
        forks = ("import os, time\nn = 0\ntry:\n    for _ in range(%d):\n        if os.fork() == 0:\n"
                 "            time.sleep(5); os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)")
        ex, out, _ = self.run_job(forks % 200, plugin="python", limits={"pids": 20})
        self.assertEqual(ex["status"], "ok", ex)
        self.assertLess(int(out), 20, "the pids limit held")
        ex, out, _ = self.run_job(forks % 50, plugin="python")
        self.assertEqual((ex["status"], out), ("ok", b"50\n"), "the last job's processes are not counted")
        # nor is the CPU time an earlier job spent in the same cgroup
        burn = "import time\nt = time.process_time() + 0.6\nwhile time.process_time() < t:\n    pass\n"
        self.assertEqual(self.run_job(burn, plugin="python")[0]["status"], "ok")
        ex, _, _ = self.run_job("print(1)", plugin="python", limits={"cpu_ms": 400})
        self.assertEqual(ex["status"], "ok", ex)
        self.assertLess(ex["cpu_ms"], 200, "the last job's CPU time is not this one's")
        # cgroups are named sb-<pid>-<token>-<n>, n counting those made
        made = lambda: max(int(d.rsplit("-", 1)[1]) for d in cgroup_dirs(w.proc.pid))
        # (each job waits until the one before has its cgroup back: how
        # soon that is depends on the machine, whether it is reused not)
        buried = lambda: w.text().count(b"jail: cgroup sb-")
        # (a reset needs a cgroup nearly empty of charges; a sanitized
        # agent's copy leaves its shadow memory charged for a while, so the
        # ASan pass checks the counters above, not how often a cgroup is
        # used again: that is a speed, which the plain pass checks)
        if os.environ.get("ASAN_OPTIONS"):
            print("(ASan build: cgroup reuse not counted)")
        elif glob.glob("/sys/fs/cgroup/memory/kiln"):
            before = made()
            for _ in range(20):
                n = buried()
                self.assertEqual(self.run_job("true")[0]["status"], "ok")
                wait_for(lambda: buried() > n, 20, "the sandbox's cgroup reset or removed")
            self.assertLess(made() - before, 5, "20 sandboxes, their cgroups used again, not made anew")
        else:
            print("(cgroup v2 here: memory.peak cannot be reset before Linux 6.12, so cgroups are "
                  "removed, not reused; the checks above still hold)")

    # ---- 1. socket families ----

    def test_socket_families_a_job_has_no_use_for(self):
        self.start("--pool", "1")
        code = (
            "import socket, errno, ctypes\n"
            "def fam(name, f, t=socket.SOCK_STREAM, p=0):\n"
            "    try:\n"
            "        socket.socket(f, t, p).close(); print(name, 'OK')\n"
            "    except OSError as e:\n"
            "        print(name, errno.errorcode[e.errno])\n"
            "fam('vsock', 40)\n"
            "fam('alg', 38, socket.SOCK_SEQPACKET)\n"
            "fam('tipc', 30, socket.SOCK_RDM)\n"
            "fam('bluetooth', 31, socket.SOCK_RAW, 1)\n"
            "fam('uevent', 16, socket.SOCK_DGRAM, 15)\n"
            "fam('sock_diag', 16, socket.SOCK_DGRAM, 4)\n"
            "fam('route', 16, socket.SOCK_DGRAM, 0)\n"
            "fam('unix', 1)\n"
            "fam('inet', 2)\n"
            "fam('inet6', 10)\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.syscall(41, ctypes.c_long((1 << 32) | 38), ctypes.c_long(5), ctypes.c_long(0))\n"
            "print('alg, high bits', 'OK' if r >= 0 else errno.errorcode[ctypes.get_errno()])\n"
            "a, b = socket.socketpair(); print('socketpair OK')\n")
        ex, out, err = self.run_job(code, plugin="python")
        self.assertEqual(ex["status"], "ok", err)
        got = dict(l.rsplit(" ", 1) for l in out.decode().splitlines())
        for name in ("vsock", "alg", "tipc", "bluetooth", "alg, high bits"):
            self.assertEqual(got[name], "EAFNOSUPPORT", name)
        self.assertEqual(got["uevent"], "EPROTONOSUPPORT")
        self.assertEqual(got["sock_diag"], "EPROTONOSUPPORT")
        for name in ("route", "unix", "inet", "inet6", "socketpair"):
            self.assertEqual(got[name], "OK", name)

    # ---- 2. per-user budgets are not root's ----

    def test_budgets_a_job_exhausts_are_not_roots(self):
        self.start("--pool", "0")
        code = (
            "import ctypes, errno, os, signal, sys, time\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "def err(): return errno.errorcode.get(ctypes.get_errno(), '?')\n"
            "n = 0\n"
            "while libc.inotify_init1(0) >= 0: n += 1\n"
            "print('inotify', n, err())\n"
            "print('fanotify', libc.fanotify_init(0, 0), err())\n"
            "class Attr(ctypes.Structure):\n"
            "    _fields_ = [('flags', ctypes.c_long), ('maxmsg', ctypes.c_long),\n"
            "                ('msgsize', ctypes.c_long), ('curmsgs', ctypes.c_long), ('pad', ctypes.c_long * 4)]\n"
            "rt = ctypes.CDLL('librt.so.1', use_errno=True)\n"
            "q = 0\n"
            "while q < 1000 and rt.mq_open(b'/q%d' % q, os.O_CREAT | os.O_RDWR, 0o600,\n"
            "        ctypes.byref(Attr(0, 10, 8192, 0))) >= 0: q += 1\n"
            "print('mqueue', q, err())\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])\n"
            "class Val(ctypes.Union): _fields_ = [('i', ctypes.c_int), ('p', ctypes.c_void_p)]\n"
            "s = 0\n"
            "while s < 200000 and libc.sigqueue(os.getpid(), signal.SIGRTMIN, Val(1)) == 0: s += 1\n"
            "print('sigqueue', s, err())\n"
            "print('holding', flush=True)\n"
            "time.sleep(30)\n")
        j = self.job(code, plugin="python", limits={"timeout_ms": 20000})
        self.submit(j)
        out = self.stream_until(j["id"], b"holding").decode()
        got = {l.split()[0]: l.split()[1:] for l in out.splitlines()}
        # the job's own shares, bounded
        self.assertLessEqual(int(got["inotify"][0]), 32, out)
        self.assertEqual(got["inotify"][1], "EMFILE")
        self.assertEqual(got["fanotify"], ["-1", "EPERM"])
        self.assertLess(int(got["mqueue"][0]), 5, out)
        self.assertLessEqual(int(got["sigqueue"][0]), 1024, out)
        self.assertEqual(got["sigqueue"][1], "EAGAIN")
        # ... while root, the worker's user, still has all of its own
        fds = []
        for _ in range(20):
            fd = libc.inotify_init1(0)
            self.assertGreaterEqual(fd, 0, "root cannot make an inotify instance: %d" % ctypes.get_errno())
            fds.append(fd)
        for fd in fds:
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN + 1])
        try:
            for _ in range(2000):
                self.assertEqual(libc.sigqueue(os.getpid(), signal.SIGRTMIN + 1, ctypes.c_void_p(0)), 0,
                                 "root cannot queue a signal: %d" % ctypes.get_errno())
        finally:
            while signal.sigtimedwait([signal.SIGRTMIN + 1], 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGRTMIN + 1])
        self.r.xadd("kiln.control", {"cancel": j["id"]})
        self.wait_exit(j["id"])

    # ---- 3. concurrent jobs do not share a host uid ----

    def pipes_between_jobs(self, *extra):
        self.start("--slots", "2", "--pool", "0", *extra)
        hog = ("import fcntl, os, time\n"
               "ps = [os.pipe() for _ in range(80)]\n"
               "n = 0\n"
               "for r, w in ps:\n"
               "    try:\n"
               "        fcntl.fcntl(w, 1031, 1 << 20); n += 1\n"
               "    except OSError:\n"
               "        break\n"
               "print('raised', n, flush=True)\n"
               "time.sleep(30)\n")
        a = self.job(hog, plugin="python", limits={"timeout_ms": 20000})
        self.submit(a)
        self.stream_until(a["id"], b"raised")
        probe = ("import fcntl, os\n"
                 "r, w = os.pipe()\n"
                 "print('size', fcntl.fcntl(w, 1032))\n"
                 "try:\n"
                 "    print('raised', fcntl.fcntl(w, 1031, 1 << 20))\n"
                 "except OSError as e:\n"
                 "    print('raise failed', e.errno)\n"
                 "print('uid', os.getuid())\n")
        ex, out, err = self.run_job(probe, plugin="python")
        self.r.xadd("kiln.control", {"cancel": a["id"]})
        self.assertEqual(ex["status"], "ok", err)
        self.assertEqual(out.decode().split(), ["size", "65536", "raised", "1048576", "uid", "1000"])
        self.wait_exit(a["id"])

    def test_pipe_buffers_of_one_job_are_not_anothers_forked(self):
        self.pipes_between_jobs()

    def test_pipe_buffers_of_one_job_are_not_anothers_fresh(self):
        self.pipes_between_jobs("--no-zygote")

    def test_forked_jobs_message_queue_shares_do_not_add_up(self):
        """Four forked python jobs each take their whole message-queue share
        and hold it; a fifth still gets its own. (Their shares meet at the
        template's host uid: room is made there for every fork's, which
        takes CAP_SYS_RESOURCE.)"""
        with open("/proc/self/status") as f:
            cap_eff = int([l for l in f if l.startswith("CapEff:")][0].split()[1], 16)
        if not cap_eff & (1 << 24):
            self.skipTest("no CAP_SYS_RESOURCE here: the worker cannot make room for every fork's "
                          "share (it says so at start), so forked jobs share the template's")
        self.start("--slots", "5", "--pool", "0")
        mq = ("import ctypes, os, time\n"
              "class Attr(ctypes.Structure):\n"
              "    _fields_ = [('flags', ctypes.c_long), ('maxmsg', ctypes.c_long),\n"
              "                ('msgsize', ctypes.c_long), ('curmsgs', ctypes.c_long), ('pad', ctypes.c_long * 4)]\n"
              "rt = ctypes.CDLL('librt.so.1', use_errno=True)\n"
              "q = 0\n"
              "while q < 100 and rt.mq_open(b'/q%d' % q, os.O_CREAT | os.O_RDWR, 0o600,\n"
              "        ctypes.byref(Attr(0, 10, 8192, 0))) >= 0: q += 1\n"
              "print('queues', q, flush=True)\n"
              "time.sleep(HOLD)\n")
        hogs = []
        for _ in range(4):
            j = self.job(mq.replace("HOLD", "30"), plugin="python", limits={"timeout_ms": 25000})
            self.submit(j)
            self.stream_until(j["id"], b"queues")
            hogs.append(j)
        counts = [int(self.stream_until(j["id"], b"queues").split()[1]) for j in hogs]
        self.assertTrue(all(c == counts[0] and c >= 2 for c in counts), counts)
        ex, out, err = self.run_job(mq.replace("HOLD", "0"), plugin="python")
        self.assertEqual(out.split(), [b"queues", str(counts[0]).encode()], err)
        for j in hogs:
            self.r.xadd("kiln.control", {"cancel": j["id"]})

    def test_sandboxes_have_distinct_host_uids(self):
        w = self.start("--slots", "2", "--pool", "0")
        jobs = []
        for plugin, code in (("shell", "echo up; sleep 20"), ("python", "import time; print('up', flush=True); time.sleep(20)")):
            j = self.job(code, plugin=plugin, limits={"timeout_ms": 15000})
            self.submit(j)
            self.stream_until(j["id"], b"up")
            jobs.append(j)
        out = subprocess.run(["ps", "-eo", "pid=,ppid=,uid=,args="], capture_output=True, text=True).stdout
        procs = {int(l.split()[0]): (int(l.split()[1]), int(l.split()[2])) for l in out.splitlines() if l.split()}
        mine, grew = {w.proc.pid}, True
        while grew:  # the worker's descendants only: other workers may run here
            more = {p for p, (pp, _) in procs.items() if pp in mine} - mine
            grew = bool(more)
            mine |= more
        # job processes run as a sandbox's uid 1000: base + k * 65536 + 1000 (+ i when forked)
        jobs_uids = {procs[p][1] for p in mine if p in procs and procs[p][1] >= 1000000
                     and (procs[p][1] - 1000000) % 65536 >= 1000}
        self.assertEqual(len(jobs_uids), 2, out)
        for j in jobs:
            self.r.xadd("kiln.control", {"cancel": j["id"]})

    # ---- 10. forked python sandboxes do not share random state ----

    def test_forked_sandboxes_draw_their_own_random_numbers(self):
        w = self.start("--pool", "2", "--slots", "2")
        ids = []
        for _ in range(20):
            j = self.job("import random, os; print(random.random(), random.getrandbits(64), os.urandom(8).hex())",
                         plugin="python")
            self.submit(j)
            ids.append(j["id"])
        lines = []
        for job_id in ids:
            fs = self.wait_exit(job_id, timeout=30)
            lines.append(b"".join(f["data"] for f in fs if f["kind"] == "stdout").decode().split())
        self.assertIn(b"python sandboxes fork from a template interpreter", w.text())
        for k in range(3):
            self.assertEqual(len({l[k] for l in lines}), 20, lines)

    # ---- 6 and 8. refused up front, never retried ----

    def test_input_the_kernel_or_sandbox_would_refuse_is_rejected(self):
        self.start("--pool", "1")
        cases = [
            ({"args": ["a" * 100] * 30000}, "arguments and environment"),
            ({"env": {"BIG": "x" * (3 << 20)}}, "env entry"),
            ({"files": {"a": b"1", "a/b": b"2"}}, "'a' to be a directory"),
            ({"plugin": "deno-eval", "env": {"LD_PRELOAD": "/work/rt.so"}}, "LD_PRELOAD"),
            ({"plugin": "python", "env": {"PYTHONSTARTUP": "/work/s.py"}}, "PYTHONSTARTUP"),
            ({"plugin": "deno-eval", "env": {"DENO_DIR": "/tmp"}}, "DENO_DIR"),
            ({"meta": {"blob": b"m" * (100 << 10)}}, "meta is"),
        ]
        for extra, why in cases:
            with self.subTest(why):
                kw = dict(extra)
                plugin = kw.pop("plugin", "shell")
                j = self.job("echo ran", plugin=plugin, **kw)
                self.submit(j)
                fs = self.wait_exit(j["id"], timeout=30)
                exits = [f for f in fs if f["kind"] == "exit"]
                self.assertEqual(len(exits), 1, exits)
                self.assertEqual((exits[0]["status"], exits[0]["attempt"]), ("rejected", 1), exits[0])
                self.assertIn(why, exits[0]["reason"])
                self.assertFalse(any(f["kind"] == "stdout" for f in fs))
        self.assertEqual(self.r.xlen("kiln.dead") if self.r.exists("kiln.dead") else 0, 0)

    def test_files_that_do_not_fit_are_the_jobs_error(self):
        # only writing them can tell: 3 MB of files in a 1 MiB /work
        for pool, plugin, code in (("0", "shell", "echo ran"), ("1", "python", "print('ran')")):
            with self.subTest(pool=pool, plugin=plugin):
                w = self.start("--pool", pool, "--tmp-mb", "1")
                if pool == "1":
                    w.wait_pool(plugin, 1)
                ex, out, err = self.run_job(code, plugin=plugin, files={"big": b"x" * (3 << 20)})
                fs = self.frames(job_id=ex["id"])
                self.assertEqual([f["status"] for f in fs if f["kind"] == "exit"], ["error"])
                self.assertEqual(ex["attempt"], 1)
                self.assertIn("No space left on device", ex["reason"])
                self.assertEqual(out, b"")
                self.assertNotIn(b"retrying", w.text())
                w.stop()
                self.workers.remove(w)

    # ---- 7. what one job makes kiln write is bounded ----

    def test_meta_once_and_output_capped_per_job(self):
        self.start("--pool", "1")
        meta = {"blob": b"m" * (60 << 10)}
        j = self.job("head -c 3000 /dev/zero", runs=[{"args": []}] * 50, meta=meta,
                     limits={"output_bytes": 10000})
        self.submit(j)
        fs = wait_for(lambda: (lambda fs: fs if any(f["kind"] == "exit" and "runs" in f for f in fs) else None)(
            self.frames(job_id=j["id"])), 120, "the summary exit frame")
        exits = [f for f in fs if f["kind"] == "exit"]
        final = [f for f in exits if "runs" in f]
        self.assertEqual(len(final), 1, exits[-1])
        self.assertEqual(final[0]["meta"], meta)
        self.assertEqual(sum("meta" in f for f in exits), 1, "meta is echoed once")
        out = sum(len(f["data"]) for f in fs if f["kind"] == "stdout")
        self.assertEqual(out, 10000, "output_bytes caps the job's inputs together")
        written = sum(len(e[1][b"frame"]) for e in self.r.xrange("kiln.results"))
        self.assertLess(written, 10000 + (60 << 10) + 50 * 400, "frames kiln added")

    def test_output_a_byte_at_a_time_is_not_a_frame_a_byte(self):
        self.start("--pool", "1")
        code = "import os, time\nfor i in range(3000):\n    os.write(1, b'x')\n"
        ex, out, err = self.run_job(code, plugin="python")
        self.assertEqual((ex["status"], out), ("ok", b"x" * 3000), err)
        frames = [f for f in self.frames() if f["kind"] == "stdout"]
        # one frame per 5 ms of output at most (the job takes a few ms)
        self.assertLess(len(frames), 3000 // 20, len(frames))

    # ---- 9. nothing of the host's layout inside ----

    def test_no_host_paths_pid_or_other_sandboxes_inside(self):
        self.no_host_paths(IMAGE)

    def no_host_paths(self, rootfs):
        self.state = os.path.join(self.tmp, "state")
        os.chmod(self.tmp, 0o711)
        w = self.worker("c", *rootfs, "--state-dir", self.state, "--pool", "1")
        code = ("cat /proc/self/mountinfo /proc/1/cmdline /proc/self/cgroup /proc/1/cgroup; "
                "tr '\\0' ' ' < /proc/1/cmdline")
        for plugin, c in (("shell", code), ("python", "import subprocess; print(subprocess.run(['sh', '-c', %r], "
                                                        "capture_output=True, text=True).stdout)" % code)):
            for net in (None, {"allow": ["example.com"]}):
                with self.subTest(plugin=plugin, net=net):
                    kw = {"net": net} if net else {}
                    ex, out, err = self.run_job(c, plugin=plugin, **kw)
                    self.assertEqual(ex["status"], "ok", err)
                    text = out.decode(errors="replace")
                    for leak in (self.state, self.tmp, "proxy-%d" % w.proc.pid, "sb-%d" % w.proc.pid,
                                 "image-%d" % w.proc.pid, "/kiln/", os.path.realpath(BUILD), "rootfs/tree"):
                        self.assertNotIn(leak, text)

    # ---- 11. nothing left behind ----

    def test_worker_leaves_nothing_and_sweeps_what_a_dead_one_left(self):
        w = self.worker("c", *IMAGE, "--state-dir", self.state_dir(), "--log-level", "debug",
                        "--pool", "2", "--slots", "1")
        w.wait_pool("python", 2)
        self.run_job("true")
        pid = w.proc.pid
        self.assertTrue(cgroup_dirs(pid), "the worker's sandboxes have cgroups")
        w.stop()
        self.assertEqual(cgroup_dirs(pid), [], "cgroups left after SIGTERM")
        self.assertEqual(os.listdir(self.state), ["jail-root"], "proxy or image directories left")

        w = self.worker("c", *IMAGE, "--state-dir", self.state, "--log-level", "debug", "--pool", "2",
                        "--slots", "1")
        w.wait_pool("python", 2)
        pid = w.proc.pid
        w.kill9()
        self.assertTrue(os.path.exists(os.path.join(self.state, "proxy-%d" % pid)))
        self.assertTrue(os.path.ismount(os.path.join(self.state, "image-%d" % pid)))
        # its sandboxes die with it; what they leave goes when a worker starts
        # (only directories untouched for 5 s, to be safe): wait until they are
        wait_for(lambda: all(age(d) > 5.2 for d in cgroup_dirs(pid)), 20,
                 "the dead worker's cgroups to be old enough to sweep")
        w2 = self.start("--pool", "0")
        wait_for(lambda: cgroup_dirs(pid) == [], 10, "the dead worker's cgroups to go")
        self.assertFalse(os.path.exists(os.path.join(self.state, "proxy-%d" % pid)))
        self.assertFalse(os.path.exists(os.path.join(self.state, "image-%d" % pid)))
        self.assertTrue(w2.alive())


if __name__ == "__main__":
    main_partial()  # one test needs CAP_SYS_RESOURCE: a partial run reads as skipped
