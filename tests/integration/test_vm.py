"""The qemu backend for real: QEMU microvm (TCG here, KVM where it runs),
the guest kernel and initramfs from rootfs/build-vm.sh, the runtime image
as a read-only squashfs, kiln-agent as the guest's PID 1. Jobs go through
Redis like any other; the tests check what a user would: the output, that
the job ran in its own kernel, that its limits hold, that a VM which
crashes, hangs or panics costs a retry and not the worker, and that a warm
pool leaves no process or file behind."""
import glob
import os
import shutil
import signal
import sys
import time

from kilntest import (BUILD, PLUGINS, SKIP, KilnCase, SecondHost, SecretHost, main, read_env, rootfs_args,
                      skip_unless_jail_works, wait_for)

skip_unless_jail_works()
rootfs_args()
VM_ENV = os.path.join(BUILD, "vm", "vm.env")
IMG_ENV = os.path.join(BUILD, "rootfs", "kiln.env")
if shutil.which("qemu-system-x86_64") is None:
    print("SKIPPED: qemu-system-x86_64 is not installed (ops/install-deps.sh)")
    sys.exit(SKIP)
if not os.path.exists(VM_ENV):
    print("SKIPPED: the VM image is not built (make vm-image)")
    sys.exit(SKIP)
ENV = read_env(VM_ENV, IMG_ENV)
if "KILN_VM_IMAGE" not in ENV:
    print("SKIPPED: the runtime image has no squashfs (squashfs-tools missing?)")
    sys.exit(SKIP)
GUEST_RELEASE = open(os.path.join(BUILD, "vm", "kernel-release")).read().strip()
VM_ARGS = ["--backend", "qemu", "--vm-kernel", ENV["KILN_VM_KERNEL"],
           "--vm-initrd", ENV["KILN_VM_INITRD"], "--vm-image", ENV["KILN_VM_IMAGE"]]
SLOW = 120  # seconds: TCG on two shared cores, maybe under ASan


def qemu_pids(state_dir):
    """QEMU processes whose command line names `state_dir`."""
    out = []
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(p, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"qemu-system" in cmd and state_dir.encode() in cmd:
            out.append(int(p.split("/")[2]))
    return out


class VMCase(KilnCase):
    def vm_worker(self, *extra, plugins=None):
        self.state = os.path.join(self.tmp, "state")
        args = [*VM_ARGS, "--state-dir", self.state, "--log-level", "debug", *extra]
        if plugins is not None:
            # a plugin dir with only these: pools of just their VMs
            d = os.path.join(self.tmp, "plugins")
            os.makedirs(d, exist_ok=True)
            for p in plugins:
                if not os.path.lexists(os.path.join(d, p + ".so")):
                    os.symlink(os.path.join(PLUGINS, p + ".so"), os.path.join(d, p + ".so"))
            args += ["--plugin-dir", d]
        return self.worker("vm", *args)

    def run_vm(self, code, **kw):
        return self.run_job(code, timeout=SLOW, **kw)


class Runtimes(VMCase):
    """All three plugins in VMs, from a warm pool of one each."""

    def test_shell_python_deno_in_the_guest_kernel(self):
        # the three it runs: a pool of one VM for each of seventeen plugins
        # would boot them all at once, and under TCG on two cores the job's
        # own VM then says nothing within --hang-ms
        w = self.vm_worker("--pool", "1", "--slots", "2", plugins=["shell", "python", "deno-eval"])
        ex, out, err = self.run_vm("uname -r; id -u; cat /proc/1/comm; echo oops >&2; exit 3")
        self.assertEqual((ex["status"], ex["code"]), ("error", 3), ex)
        self.assertEqual(out.decode().split(), [GUEST_RELEASE, "1000", "init"])
        self.assertEqual(err, b"oops\n")

        ex, out, err = self.run_vm("import os, platform, sys\n"
                                   "print(platform.release(), sys.argv[1:], os.environ['K'], input())\n",
                                   plugin="python", args=["a"], env={"K": "v"}, stdin=b"in\n")
        self.assertEqual(ex["status"], "ok", (ex, err))
        self.assertEqual(out.decode().strip(), "%s ['a'] v in" % GUEST_RELEASE)

        ex, out, err = self.run_vm("const n: number = 6 * 7; console.log(n, Deno.args[0]);",
                                   plugin="deno-eval", args=["x"])
        self.assertEqual((ex["status"], out), ("ok", b"42 x\n"), (ex, err))
        ex, out, err = self.run_vm("throw new Error('boom')", plugin="deno-eval")
        self.assertEqual(ex["status"], "error")
        self.assertIn(b"boom", err)
        self.assertTrue(w.alive())


class Limits(VMCase):
    def setUp(self):
        super().setUp()
        self.vm_worker("--pool", "1", "--slots", "2", plugins=["shell", "python"])

    def test_timeout(self):
        ex, _, _ = self.run_vm("echo start; sleep 60", limits={"timeout_ms": 2000})
        self.assertEqual(ex["status"], "timeout", ex)

    def test_memory_limit_is_the_guest_cgroup(self):
        ex, out, err = self.run_vm("b = bytearray(200 << 20)\nprint('survived')\n",
                                   plugin="python", limits={"memory_mb": 64})
        self.assertEqual(ex["status"], "oom", (ex, err))
        self.assertNotIn(b"survived", out)
        # a job within its memory runs, and its peak is the guest's figure
        ex, out, _ = self.run_vm("b = bytearray(20 << 20)\nprint(len(b))\n",
                                 plugin="python", limits={"memory_mb": 64})
        self.assertEqual((ex["status"], out), ("ok", b"20971520\n"), ex)
        self.assertGreater(ex["max_rss_kb"], 20 * 1024)

    def test_output_cap(self):
        ex, out, _ = self.run_vm("yes kiln | head -c 1000000", limits={"output_bytes": 5000})
        self.assertEqual(ex["status"], "output_limit", ex)
        self.assertEqual(len(out), 5000)

    def test_more_memory_than_a_pooled_vm_gets_its_own(self):
        ex, out, err = self.run_vm("b = bytearray(900 << 20)\nprint('big ok')\n",
                                   plugin="python", limits={"memory_mb": 1024})
        self.assertEqual((ex["status"], out), ("ok", b"big ok\n"), (ex, err))


class Evaluation(VMCase):
    """Evaluation jobs in VMs: a C program built once in its own VM and
    each case judged in a fresh one; a CPU limit told by the guest's
    cgroup."""

    def test_c_tests_and_a_cpu_limit_in_vms(self):
        self.vm_worker("--pool", "0", "--slots", "2", plugins=["c", "python"])
        code = ('#include <stdio.h>\nint main(void) { int a, b; scanf("%d %d", &a, &b);'
                ' printf("%d\\n", a * b); return 0; }\n')
        j = self.job(code, plugin="c", tests=[{"stdin": "6 7", "expect": {"stdout": "42"}},
                                              {"stdin": "2 2", "expect": {"stdout": "5"}}])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=SLOW * 3)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        self.assertEqual([f["verdict"] for f in fs if f["kind"] == "case"], ["accepted", "wrong_answer"], fs)
        self.assertEqual((ex["verdict"], ex["passed"], ex["build"]["status"]), ("wrong_answer", 1, "ok"), ex)
        j = self.job("while True: pass", plugin="python", tests=[{"limits": {"cpu_ms": 500}}])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=SLOW)
        c = [f for f in fs if f["kind"] == "case"][0]
        self.assertEqual(c["verdict"], "time_limit", c)
        self.assertIn("CPU time", c["reason"])


class Languages(VMCase):
    """Languages with a runtime of their own in the guest: a Java program
    built once and judged on two cases, a Go build and run, node."""

    def test_java_go_javascript_in_vms(self):
        # javac and go under TCG take more than the default build CPU time
        self.vm_worker("--pool", "0", "--slots", "2", "--max-timeout-ms", "300000", "--build-cpu-ms", "300000",
                       "--build-timeout-ms", "300000",
                       plugins=["java", "go", "javascript"])
        java = ("import java.util.*;\npublic class Main {\n  public static void main(String[] a) {\n"
                "    Scanner s = new Scanner(System.in);\n    System.out.println(s.nextLong() * s.nextLong());\n  }\n}\n")
        go = "package main\n\nimport (\n\t\"fmt\"\n\t\"runtime\"\n)\n\nfunc main() {\n\tfmt.Println(runtime.Version())\n}\n"
        limits = {"timeout_ms": 300000}
        jobs = {"java": self.job(java, plugin="java", limits=limits,
                                 tests=[{"stdin": "6 7", "expect": {"stdout": "42"}},
                                        {"stdin": "2 2", "expect": {"stdout": "5"}}]),
                "go": self.job(go, plugin="go", limits=limits),
                "js": self.job("const os = require('os');\nconsole.log(os.release(), process.argv[2]);\n",
                               plugin="javascript", args=["x"], limits=limits)}
        for j in jobs.values():
            self.submit(j)
        got = {k: self.wait_exit(j["id"], timeout=SLOW * 5) for k, j in jobs.items()}
        fs = got["java"]
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        self.assertEqual([f["verdict"] for f in fs if f["kind"] == "case"], ["accepted", "wrong_answer"], fs)
        self.assertEqual((ex["verdict"], ex["build"]["status"]), ("wrong_answer", "ok"), ex)
        for k, want in (("go", b"go1.19"), ("js", GUEST_RELEASE.encode() + b" x\n")):
            ex = [f for f in got[k] if f["kind"] == "exit"][-1]
            out = b"".join(f["data"] for f in got[k] if f["kind"] == "stdout")
            self.assertEqual(ex["status"], "ok", (k, ex, got[k]))
            self.assertTrue(out.startswith(want), (k, out))


class Images(VMCase):
    """python-data in VMs: its squashfs is the guest's disk for the jobs
    that name it, the default's for the rest, from one worker."""

    def test_python_data_in_a_vm(self):
        data = read_env(os.path.join(BUILD, "images", "python-data", "kiln.env"))
        self.vm_worker("--pool", "0", "--slots", "2", "--image", "python-data=" + data["KILN_VM_IMAGE"],
                       "--image-digest", "python-data=" + data["KILN_ROOTFS_DIGEST"], plugins=["shell", "python"])
        code = ("import platform, numpy as np, pandas as pd\n"
                "print(platform.release(), int(pd.DataFrame({'a': np.arange(4)}).a.sum()))\n")
        ex, out, err = self.run_vm(code, plugin="python", image="python-data", limits={"timeout_ms": 100000})
        self.assertEqual(ex["status"], "ok", (ex, err[-1500:]))
        self.assertEqual(out.decode().split(), [GUEST_RELEASE, "6"])
        ex, out, err = self.run_vm("cat /etc/kiln-image")
        self.assertTrue(out.startswith(b"kiln runtime image default "), (ex, out))


class Failures(VMCase):
    """Each VM a cold boot (no pool, no snapshot), so the only QEMU running
    is the job's."""

    def setUp(self):
        super().setUp()
        self.w = self.vm_worker("--pool", "0", "--vm-cold", "--slots", "1", "--hang-ms", "6000",
                                "--retry-backoff-ms", "50", plugins=["shell"])

    def job_vm(self, marker):
        """Submit a job that sleeps on its first attempt; return its id and
        the pid of its VM once it runs."""
        j = self.job('if [ "$KILN_ATTEMPT" = 1 ]; then echo %s; sleep 60; fi; echo attempt $KILN_ATTEMPT'
                     % marker)
        self.submit(j)
        wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames(job_id=j["id"])),
                 SLOW, "the first attempt to run")
        pids = qemu_pids(self.state)
        self.assertEqual(len(pids), 1, pids)
        return j["id"], pids[0]

    def assert_retried(self, job_id):
        fs = self.wait_exit(job_id, timeout=SLOW, attempt=2)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        self.assertEqual((ex["status"], ex["attempt"]), ("ok", 2), ex)
        self.assertIn(b"attempt 2\n", b"".join(f["data"] for f in fs if f["kind"] == "stdout"))
        self.assertTrue(self.w.alive())

    def test_a_crashed_vm_is_retried(self):
        job_id, pid = self.job_vm("crash")
        os.kill(pid, signal.SIGKILL)
        self.assert_retried(job_id)
        self.assertIn(b"failed in kiln", self.w.text())

    def test_a_hung_vm_is_found_and_retried(self):
        job_id, pid = self.job_vm("hang")
        os.kill(pid, signal.SIGSTOP)  # the whole VM stops: no beat, no output
        self.assert_retried(job_id)
        self.assertIn(b"said nothing for", self.w.text())
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10, "the hung VM to be gone")


    def test_a_vm_stuck_booting_is_found_and_retried(self):
        j = self.job("echo attempt $KILN_ATTEMPT")
        self.submit(j)
        pid = wait_for(lambda: qemu_pids(self.state), 30, "the job's VM to start")[0]
        os.kill(pid, signal.SIGSTOP)  # long before its agent could say ready
        self.assertFalse(self.frames(job_id=j["id"]))
        self.assert_retried(j["id"])
        self.assertIn(b"said nothing for", self.w.text())


class BadImage(VMCase):
    def test_a_vm_that_cannot_mount_its_image_says_why(self):
        junk = os.path.join(self.tmp, "junk.img")
        with open(junk, "wb") as f:
            f.write(os.urandom(1 << 20))
        args = list(VM_ARGS)
        args[args.index("--vm-image") + 1] = junk
        self.state = os.path.join(self.tmp, "state")
        w = self.worker("vm", *args, "--state-dir", self.state, "--pool", "0", "--vm-cold",
                        "--max-attempts", "1")
        ex, _, _ = self.run_vm("echo never")
        self.assertEqual(ex["status"], "internal", ex)
        self.assertIn("mount the runtime image /dev/vda", ex["reason"])
        self.assertTrue(w.alive())
        wait_for(lambda: not qemu_pids(self.state), 20, "the VM to be gone")


class Panic(VMCase):
    def test_a_guest_panic_ends_the_job_internal_and_the_pool_recovers(self):
        # panic_on_oom=2: a cgroup OOM panics this guest's kernel
        w = self.vm_worker("--pool", "1", "--slots", "1", "--max-attempts", "2",
                           "--retry-backoff-ms", "50", "--vm-append", "sysctl.vm.panic_on_oom=2",
                           plugins=["python"])
        ex, _, _ = self.run_vm("b = bytearray(200 << 20)", plugin="python", limits={"memory_mb": 64})
        self.assertEqual(ex["status"], "internal", ex)
        self.assertEqual(ex["attempt"], 2, ex)
        self.assertIn("the sandbox ended before reporting an exit", ex["reason"])
        ex, out, _ = self.run_vm("print('after the panic')", plugin="python")
        self.assertEqual((ex["status"], out), ("ok", b"after the panic\n"), ex)
        self.assertTrue(w.alive())


class Network(VMCase):
    """No network device unless net.allow asks; then only the egress proxy."""

    def setUp(self):
        super().setUp()
        self.host = SecondHost(self.tmp)
        self.vm_worker("--pool", "1", "--net-private-ok", "10.231.0.0/16", plugins=["python"])

    def tearDown(self):
        self.host.stop()
        super().tearDown()

    def test_net_allow_reaches_the_allowed_host_only(self):
        code = ("import os, urllib.request\n"
                "print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else '-')\n"
                "def get(u):\n"
                "    try:\n"
                "        return urllib.request.urlopen(u, timeout=20).read().decode().strip()\n"
                "    except Exception as e:\n"
                "        return 'ERR ' + type(e).__name__\n"
                "print(get('http://PEER:8080/hello.txt'))\n"
                "print(get('http://PEER:8081/hello.txt'))\n").replace("PEER", self.host.peer)
        ex, out, err = self.run_vm(code, plugin="python", net={"allow": [self.host.peer + ":8080"]})
        lines = out.decode().splitlines()
        self.assertEqual(ex["status"], "ok", (ex, err))
        self.assertEqual(lines[1:], ["hello from the second host", "ERR HTTPError"], lines)
        self.assertTrue(any("8081: not in net.allow" in d for d in ex.get("denied", [])), ex)

    def test_a_jobs_connections_cost_the_host_a_bounded_amount(self):
        # 300 connections held at once: the host runs no process per
        # connection, carries at most 64 (the rest are told 503), and one
        # freed is usable again
        code = ("import socket, time\n"
                "held = []\n"
                "for i in range(300):\n"
                "    held.append(socket.create_connection(('127.0.0.1', 3128), 10))\n"
                "time.sleep(2)\n"
                "busy = 0\n"
                "for s in held:\n"
                "    s.setblocking(False)\n"
                "    try:\n"
                "        busy += s.recv(64).startswith(b'HTTP/1.1 503')\n"
                "    except BlockingIOError:\n"
                "        pass  # nothing to read: carried, the proxy waits for a request\n"
                "print('carried', 300 - busy, flush=True)\n"
                "time.sleep(6)\n"
                "for s in held: s.close()\n"
                "time.sleep(1)\n"
                "import urllib.request\n"
                "print(urllib.request.urlopen('http://PEER:8080/hello.txt', timeout=20).read().decode().strip())\n"
                "try:\n"
                "    socket.create_connection(('10.0.2.100', 3128), 3); print('reached the old guestfwd')\n"
                "except OSError as e:\n"
                "    print('no guestfwd', e.errno)\n").replace("PEER", self.host.peer)
        j = self.job(code, plugin="python", net={"allow": [self.host.peer + ":8080"]},
                     limits={"pids": 16, "memory_mb": 128, "timeout_ms": 100000})
        self.submit(j)
        wait_for(lambda: b"carried" in b"".join(f["data"] for f in self.frames(job_id=j["id"])
                                                  if f["kind"] == "stdout"), SLOW, "the connections")
        procs = []
        for p in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(p, "rb") as f:
                    if b"--pipe-to" in f.read():
                        procs.append(p)
            except OSError:
                pass
        self.assertEqual(procs, [], "a host process per connection")
        fds = len(os.listdir("/proc/%d/fd" % self.workers[0].proc.pid))
        self.assertLess(fds, 64 * 2 + 60, "the worker holds more than the mux's bound")
        fs = self.wait_exit(j["id"], timeout=SLOW)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        out = b"".join(f["data"] for f in fs if f["kind"] == "stdout").decode().splitlines()
        self.assertEqual(ex["status"], "ok", ex)
        self.assertEqual(out[0], "carried 64", out)
        self.assertEqual(out[1], "hello from the second host")
        self.assertTrue(out[2].startswith("no guestfwd"), out)

    def test_without_net_allow_there_is_no_way_out(self):
        code = ("import socket\n"
                "for addr in [('PEER', 8080), ('10.0.2.100', 3128), ('10.0.2.2', 22)]:\n"
                "    try:\n"
                "        socket.create_connection(addr, 3); print('reached', addr)\n"
                "    except OSError as e:\n"
                "        print('unreachable', e.errno)\n").replace("PEER", self.host.peer)
        ex, out, err = self.run_vm(code, plugin="python")
        self.assertEqual(ex["status"], "ok", (ex, err))
        self.assertNotIn(b"reached", out)
        self.assertEqual(out.count(b"unreachable"), 3, out)


class Secrets(VMCase):
    """A VM's egress goes through the same proxy: the secret's value reaches
    its host over HTTPS (the guest trusts the worker's CA, put in its image
    bundle by its agent) and plain HTTP; another host sees the placeholder."""

    def setUp(self):
        super().setUp()
        self.host = SecretHost(self.tmp)
        path = os.path.join(self.tmp, "secrets")
        with open(path, "w") as f:
            f.write("API http://%s:9080,%s:9443 vm-s3cr3t-VALUE\n" % (self.host.peer, self.host.peer))
        self.vm_worker("--pool", "1", "--net-private-ok", "10.231.0.0/16", "--secrets-file", path,
                       "--egress-ca", self.host.ca, plugins=["python"])

    def tearDown(self):
        self.host.stop()
        super().tearDown()

    def test_value_reaches_only_the_bound_host(self):
        code = ("import os, urllib.request\n"
                "def get(u):\n"
                "    r = urllib.request.Request(u, headers={'X': os.environ['K']})\n"
                "    return urllib.request.urlopen(r, timeout=30).read().decode().strip()\n"
                "for u in ('https://PEER:9443/vm', 'http://PEER:9080/vm', 'http://PEER:9081/vm'):\n"
                "    print(get(u))\n").replace("PEER", self.host.peer)
        ex, out, err = self.run_vm(code, plugin="python", secrets={"K": "API"},
                                   net={"allow": [self.host.peer + ":9081"]})
        self.assertEqual((ex["status"], out.decode().split()), ("ok", ["seen"] * 3), (ex, err))
        got = {g["port"]: g["headers"]["x"] for g in self.host.requests()}
        self.assertEqual((got[9443], got[9080]), ("vm-s3cr3t-VALUE",) * 2)
        self.assertTrue(got[9081].startswith("kiln-secret-"), got)
        self.assertTrue(any("9081: secret API is not bound" in d for d in ex["denied"]), ex)


class Collect(VMCase):
    """`collect` in a VM: the guest's agent walks its /work the same way."""

    def setUp(self):
        super().setUp()
        self.vm_worker("--pool", "1", plugins=["python"])

    def test_files_come_back_from_the_guest(self):
        code = ("import os\n"
                "os.makedirs('out/d')\n"
                "open('out/d/r.txt', 'wb').write(bytes(range(256)) * 4000)\n"
                "os.symlink('/etc/passwd', 'out/p.txt')\n")
        j = self.job(code, plugin="python", collect=["out/**"])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=SLOW)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        self.assertEqual(ex["status"], "ok", ex)
        data = b"".join(f["data"] for f in fs if f["kind"] == "file" and f["path"] == "out/d/r.txt")
        self.assertEqual(data, bytes(range(256)) * 4000)
        self.assertEqual(ex["collect"]["skipped_files"], [{"path": "out/p.txt", "why": "symlink"}])


class Sessions(VMCase):
    """A session in a VM: its python keeps its state from job to job in
    one guest; a timeout interrupts a cell, not the session."""

    def setUp(self):
        super().setUp()
        self.vm_worker("--pool", "1", plugins=["python"])

    def step(self, code, **limits):
        j = self.job(code, plugin="python", session={"id": "vm-s"})
        if limits:
            j["limits"] = limits
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=SLOW)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        return ex, [f["data"].decode() for f in fs if f["kind"] == "result"]

    def test_state_lives_across_jobs_in_one_guest(self):
        ex, res = self.step("import os\nboot = open('/proc/sys/kernel/random/boot_id').read()\nn = 1")
        self.assertEqual(ex["status"], "ok", ex)
        self.assertEqual(self.step("n += 1\nn")[1], ["2"])
        ex, res = self.step("while True:\n    n += 1", timeout_ms=3000)
        self.assertEqual(ex["status"], "timeout", ex)
        ex, res = self.step("(n > 2, boot == open('/proc/sys/kernel/random/boot_id').read())")
        self.assertEqual((ex["status"], res), ("ok", ["(True, True)"]), ex)
        self.assertEqual(ex["session"], {"id": "vm-s", "seq": 4})


    def test_nothing_a_cell_started_runs_while_the_session_idles(self):
        # the attacker's review, in a guest: a process whose main thread
        # exits while another spins, and children that keep sending
        # SIGCONT to the interpreter, whose own thread notes the time
        # every 50 ms whenever it runs
        hider = ("import ctypes, threading\n"
                 "def spin():\n"
                 "    while True:\n"
                 "        pass\n"
                 "threading.Thread(target=spin).start()\n"
                 "ctypes.CDLL(None).syscall(60, 0)\n")
        ex, res = self.step(
            "import os, subprocess, sys, threading, time\n"
            "subprocess.Popen([sys.executable, '-c', %r], start_new_session=True)\n"
            "stamps = []\n"
            "def note():\n"
            "    last = 0\n"
            "    while True:\n"
            "        now = time.monotonic()\n"
            "        if now - last > 0.05:\n"
            "            stamps.append(now)\n"
            "            last = now\n"
            "threading.Thread(target=note, daemon=True).start()\n"
            "me = os.getpid()\n"
            "for _ in range(8):\n"
            "    if os.fork() == 0:\n"
            "        while True:\n"
            "            os.kill(me, 18)\n"
            "time.sleep(0.5)\n"
            "t1 = time.monotonic()" % hider)
        self.assertEqual(ex["status"], "ok", ex)
        time.sleep(5)
        ex, res = self.step(
            "t2 = time.monotonic()\n"
            "ran = [round(s - t1, 2) for s in stamps if t1 + 0.3 < s < t2 - 1.5]\n"
            "alive = sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()"
            " and os.stat('/proc/' + p).st_uid == os.getuid()"
            " and any(open('/proc/%s/task/%s/stat' % (p, t)).read().rsplit(')', 1)[1].split()[0] != 'Z'"
            "         for t in os.listdir('/proc/%s/task' % p)))\n"
            "(t2 - t1 > 4, ran, alive)")
        self.assertEqual((ex["status"], res), ("ok", ["(True, [], [])"]), ex)

class ExposedPorts(VMCase):
    """A session's server in a VM, reached from outside over the guest's
    mux (the guest has no network device): GET, POST, a port nothing
    listens on, and the URL gone with the session."""

    def test_a_server_in_a_vm_session_is_reached_at_its_url(self):
        import urllib.error
        import urllib.request
        from kilntest import free_port
        listen = free_port()
        self.vm_worker("--pool", "0", "--expose-listen", "127.0.0.1:%d" % listen, plugins=["python"])
        server = ("import http.server, threading\n"
                  "class H(http.server.BaseHTTPRequestHandler):\n"
                  "    def do_GET(self):\n"
                  "        out = ('vm ' + self.path + ' ' + open('/proc/sys/kernel/osrelease').read()).encode()\n"
                  "        self.send_response(200); self.send_header('Content-Length', str(len(out)))\n"
                  "        self.end_headers(); self.wfile.write(out)\n"
                  "    do_POST = lambda self: (self.send_response(200), self.send_header('Content-Length', '2'),\n"
                  "        self.end_headers(), self.wfile.write(self.rfile.read(int(self.headers['Content-Length']))[:2]))\n"
                  "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 8000), H)\n"
                  "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
                  # an upgraded connection's bytes, echoed upper-cased
                  "import socket\n"
                  "u = socket.socket(); u.bind(('127.0.0.1', 8002)); u.listen(4)\n"
                  "def echo():\n"
                  "    c = u.accept()[0]; head = b''\n"
                  "    while b'\\r\\n\\r\\n' not in head: head += c.recv(4096)\n"
                  "    c.sendall(b'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n')\n"
                  "    while True:\n"
                  "        d = c.recv(4096)\n"
                  "        if not d: break\n"
                  "        c.sendall(d.upper())\n"
                  "threading.Thread(target=echo, daemon=True).start()")

        def get(url, data=None):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=SLOW) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        def step(code, **session):
            j = self.job(code, plugin="python", session=dict({"id": "vm-x"}, **session))
            self.submit(j)
            fs = self.wait_exit(j["id"], timeout=SLOW)
            return [f for f in fs if f["kind"] == "exit"][-1], {f["port"]: f["url"] for f in fs if f["kind"] == "exposed"}

        ex, urls = step(server, expose=[8000, 8001, 8002])
        self.assertEqual(ex["status"], "ok", ex)
        import socket
        import urllib.parse
        u = urllib.parse.urlsplit(urls[8002])
        c = socket.create_connection((u.hostname, u.port), timeout=SLOW)
        c.sendall(b"GET %sws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n" % u.path.encode())
        got = b""
        while b"\r\n\r\n" not in got:
            got += c.recv(4096)
        self.assertTrue(got.startswith(b"HTTP/1.1 101"), got)
        c.sendall(b"through the mux")
        back = b""
        while len(back) < 15:
            back += c.recv(4096)
        self.assertEqual(back, b"THROUGH THE MUX")
        c.close()
        self.assertEqual(get(urls[8000] + "a/b"), (200, ("vm /a/b %s\n" % GUEST_RELEASE).encode()))
        self.assertEqual(get(urls[8000] + "p", data=b"xyz" * 50000), (200, b"xy"))
        self.assertEqual(get(urls[8001])[0], 502)  # nothing listens there
        step("1", close=True)
        wait_for(lambda: get(urls[8000])[0] == 404, 30, "the URL gone with the session")


class Clock(VMCase):
    def test_a_restored_vm_runs_on_the_hosts_clock(self):
        # no pool: the job's VM is restored when the job comes, 10 s after
        # the snapshot was taken; without the agent setting the time from
        # "hello" the guest would be 10 s behind
        w = self.vm_worker("--pool", "0", plugins=["shell"])
        wait_for(lambda: b"qemu: snapshot ready" in w.text(), SLOW, "the snapshot")
        time.sleep(10)
        ex, out, _ = self.run_vm("date +%s.%N")
        self.assertEqual(ex["status"], "ok", ex)
        self.assertLess(abs(float(out) - time.time()), 3.0, out)


RANDOM_CODE = "import random; print(random.random(), random.getrandbits(64), hash('kiln'))"


class Entropy(VMCase):
    def test_vms_restored_from_one_snapshot_do_not_share_random_state(self):
        # every VM is restored from the same snapshot, its python started
        # after "hello" (warm pool of 2): without the host's seed the guest
        # kernels wake with one random state, and repeat each other
        w = self.vm_worker("--pool", "2", "--slots", "2", plugins=["python"])
        wait_for(lambda: b"qemu: snapshot ready" in w.text(), SLOW, "the snapshot")
        ids = []
        for _ in range(20):
            j = self.job(RANDOM_CODE, plugin="python")
            self.submit(j)
            ids.append(j["id"])
        lines = []
        for job_id in ids:
            fs = self.wait_exit(job_id, timeout=SLOW)
            ex = [f for f in fs if f["kind"] == "exit"][-1]
            self.assertEqual(ex["status"], "ok", ex)
            lines.append(b"".join(f["data"] for f in fs if f["kind"] == "stdout").decode().split())
        for k, what in enumerate(("random.random()", "getrandbits(64)", "the str hash seed")):
            self.assertEqual(len({l[k] for l in lines}), 20, "%s repeats across VMs: %s" % (what, lines))


class WarmPool(VMCase):
    def test_pool_of_two_serves_ten_jobs_and_leaves_nothing(self):
        w = self.vm_worker("--pool", "2", "--slots", "2", plugins=["shell"])
        wait_for(lambda: b"qemu: snapshot ready" in w.text(), SLOW, "the snapshot")
        ids = []
        for i in range(10):
            j = self.job("echo job %d; uname -r" % i)
            self.submit(j)
            ids.append(j["id"])
        for i, job_id in enumerate(ids):
            fs = self.wait_exit(job_id, timeout=SLOW)
            ex = [f for f in fs if f["kind"] == "exit"][-1]
            out = b"".join(f["data"] for f in fs if f["kind"] == "stdout").decode()
            self.assertEqual((ex["status"], out), ("ok", "job %d\n%s\n" % (i, GUEST_RELEASE)), ex)
        text = w.text()
        self.assertGreaterEqual(text.count(b"started (shell, warm"), 5, "most jobs took a warm VM")
        wait_for(lambda: len(qemu_pids(self.state)) == 2, SLOW, "the pool's two VMs, and no other")
        w.stop()
        wait_for(lambda: not qemu_pids(self.state), 20, "every QEMU to be gone")
        left = [os.path.join(d, f) for d, _, fs in os.walk(self.state) for f in fs]
        self.assertEqual(left, [], "files left behind")

    def test_what_a_killed_worker_left_is_swept(self):
        # killed with -9: its VMs die with it (PDEATHSIG), its snapshot and
        # VM directories stay until the next worker on the state dir starts
        w = self.vm_worker("--pool", "1", plugins=["shell"])
        wait_for(lambda: b"qemu: snapshot ready" in w.text(), SLOW, "the snapshot")
        old = os.path.join(self.state, "qemu-%d" % w.proc.pid)
        self.assertTrue(os.path.isdir(old))
        w.kill9()
        wait_for(lambda: not qemu_pids(self.state), 20, "every QEMU to be gone")
        self.assertTrue(os.listdir(old), "the snapshot is still there")
        w2 = self.vm_worker("--pool", "0", plugins=["shell"])
        wait_for(lambda: not os.path.exists(old), 20, "the dead worker's directory swept")
        self.assertIn(b"removed 1 state directory left by workers that are gone", w2.text())
        self.assertTrue(os.path.isdir(os.path.join(self.state, "qemu-%d" % w2.proc.pid)))


if __name__ == "__main__":
    main()
