"""Sessions: a job's `session` runs it in a sandbox whose interpreter
outlives its jobs. Python, deno and shell state (values, functions,
imports, cwd, files) carries over from job to job of one session, never
into another; a job that fails or times out leaves the session going; a
session ends on close, on idle, when its interpreter exits, by cancel or
drain, and a job for it after that ends session_lost with why."""
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import msgpack

from kilntest import BIN, KafkaCase, KilnCase, free_port, main, rootfs_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()


class SessionCase(KilnCase):
    def setUp(self):
        super().setUp()
        self.sid = "s-" + uuid.uuid4().hex[:10]

    def start(self, *extra, consumer="w1"):
        self.w = self.worker(consumer, *ROOTFS, *extra)
        return self.w

    def step(self, code, plugin="python", sid=None, wait=40, files=None, **session):
        """Run one job of the session; return (exit frame, stdout, stderr, results)."""
        s = {"id": sid or self.sid}
        s.update(session)
        ex, out, err = None, None, None
        j = self.job(code, plugin=plugin, session=s)
        if files:
            j["files"] = files
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=wait)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        out = b"".join(f["data"] for f in fs if f["kind"] == "stdout").decode()
        err = b"".join(f["data"] for f in fs if f["kind"] == "stderr").decode()
        res = [f["data"].decode() for f in fs if f["kind"] == "result"]
        return ex, out, err, res


class Sessions(SessionCase):
    def test_python_state_lives_across_ten_jobs(self):
        self.start()
        steps = [
            ("x = 41\ndef f(a):\n    return a + x\nimport math", None),
            ("f(1)", "42"),
            ("open('data.txt', 'w').write('kept')\nn = open('/tmp/t', 'w').write('tmp')", None),
            ("open('data.txt').read() + open('/tmp/t').read()", "'kepttmp'"),
            ("x = 100\nmath.sqrt(f(-19))", "9.0"),
            ("class C:\n    n = 3\nc = C()", None),
            ("c.n * x", "300"),
            ("print('printed', x)", None),
            ("import os\nos.getcwd()", "'/work'"),
            ("_ if False else sorted(k for k in globals() if not k.startswith('__'))",
             "['C', '_', 'c', 'f', 'math', 'n', 'os', 'x']"),
        ]
        for i, (code, want) in enumerate(steps, 1):
            ex, out, err, res = self.step(code)
            self.assertEqual(ex["status"], "ok", (code, ex, err))
            self.assertEqual(ex["session"], {"id": self.sid, "seq": i})
            self.assertEqual(res, [want] if want else [], code)
        self.assertIn("printed 100", self.step("print('printed', x)")[1])

    def test_two_sessions_never_see_each_other(self):
        self.start()
        other = "s-" + uuid.uuid4().hex[:10]
        self.assertEqual(self.step("secret = 'mine'\nopen('f', 'w').write('mine')")[0]["status"], "ok")
        ex, out, err, res = self.step("import os\n'secret' in globals(), os.path.exists('f')", sid=other)
        self.assertEqual(res, ["(False, False)"], err)
        # and a plain job on the same worker sees nothing of either
        ex, out, err = self.run_job("import os; print(os.path.exists('f'))", plugin="python")
        self.assertEqual(out, b"False\n")
        self.assertEqual(self.step("secret")[3], ["'mine'"])

    def test_errors_and_timeouts_leave_the_session_going(self):
        self.start()
        self.step("n = 1")
        ex, out, err, res = self.step("1/0")
        self.assertEqual((ex["status"], ex["code"]), ("error", 1))
        self.assertIn("ZeroDivisionError", err)
        self.assertIn('File "<cell 2>", line 1', err)
        j = self.job("import time\nn = 2\nwhile True:\n    pass", plugin="python",
                     session={"id": self.sid}, limits={"timeout_ms": 1500})
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=30)
        self.assertEqual(fs[-1]["status"], "timeout", fs[-1])
        self.assertEqual(self.step("n")[3], ["2"])
        ex, out, err, res = self.step("import sys\nsys.exit(3)")
        self.assertEqual((ex["status"], ex["code"]), ("error", 3))
        self.assertEqual(self.step("n + 1")[3], ["3"])
        # a cell's child processes do not outlive it
        self.step("import subprocess\np = subprocess.Popen(['sleep', '1000'])")
        self.assertEqual(self.step("p.poll()")[3], ["-9"])

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            lines = r.read().decode().splitlines()
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in lines if l and l[0] != "#"}

    def test_close_idle_and_lost(self):
        self.port = free_port()
        self.start("--metrics-addr", "127.0.0.1:%d" % self.port)
        self.assertEqual(self.step("a = 1")[0]["status"], "ok")
        m = self.metrics()
        self.assertEqual((m["kiln_sessions_open"], m['kiln_sessions_opened_total{plugin="python"}']), (1, 1))
        ex = self.step("a", close=True)[0]
        self.assertEqual((ex["status"], ex["session"]["seq"]), ("ok", 2))
        ex = self.step("a")[0]
        self.assertEqual(ex["status"], "session_lost", ex)
        self.assertIn("closed", ex["reason"])
        self.assertNotIn("seq", ex["session"])
        m = self.metrics()
        self.assertEqual((m["kiln_sessions_open"], m['kiln_sessions_closed_total{reason="closed"}']), (0, 1))
        other = "s-" + uuid.uuid4().hex[:10]
        self.assertEqual(self.step("b = 2", sid=other, idle_ms=1000)[0]["status"], "ok")
        wait_for(lambda: self.metrics().get('kiln_sessions_closed_total{reason="idle"}') == 1, 15,
                 "the idle session to end")
        ex = self.step("b", sid=other)[0]
        self.assertEqual(ex["status"], "session_lost")
        self.assertIn("idle", ex["reason"])
        self.assertEqual(self.metrics()['kiln_sessions_closed_total{reason="idle"}'], 1)
        # the interpreter's own exit ends it too
        third = "s-" + uuid.uuid4().hex[:10]
        ex = self.step("echo bye; exit 4", plugin="shell", sid=third)[0]
        self.assertEqual((ex["status"], ex["code"]), ("error", 4))
        ex = self.step("echo again", plugin="shell", sid=third)[0]
        self.assertEqual(ex["status"], "session_lost")
        self.assertIn("exited", ex["reason"])

    def test_shell_session(self):
        self.start()
        ex, out, err, res = self.step("x=5; f() { echo \"f$x $1\"; }; mkdir -p sub; cd sub; echo hi > here",
                                      plugin="shell")
        self.assertEqual(ex["status"], "ok", err)
        ex, out, err, res = self.step("f arg; pwd; cat here; x=$((x+1))", plugin="shell")
        self.assertEqual(out, "f5 arg\n/work/sub\nhi\n", err)
        ex, out, err, res = self.step("false", plugin="shell")
        self.assertEqual((ex["status"], ex["code"]), ("error", 1))
        j = self.job("while :; do sleep 0.1; done", plugin="shell", session={"id": self.sid},
                     limits={"timeout_ms": 1000})
        self.submit(j)
        self.assertEqual(self.wait_exit(j["id"], timeout=30)[-1]["status"], "timeout")
        self.assertEqual(self.step("echo $x", plugin="shell")[1], "6\n")

    def test_deno_session(self):
        self.start()
        steps = [
            ("let x: number = 41;\nconst f = (a: number): number => a + x;\n"
             "import { join } from 'node:path';", None),
            ("f(1)", "42"),
            ("x = 1; f(0)", "1"),
            ("'w'", '"w"', {"kept.txt": b"kept"}),
            ("await Deno.readTextFile('/work/kept.txt')", '"kept"'),
            ("function g() { return join('a', 'b'); }", None),
            ("g()", '"a/b"'),
            ("const o = {a: [1, 2]}; o", "{ a: [ 1, 2 ] }"),
            ("console.log('printed', x)", None),
            ("let x = 9; x", "9"),
        ]
        for i, (code, want, *files) in enumerate(steps, 1):
            ex, out, err, res = self.step(code, plugin="deno-eval", files=files[0] if files else None)
            self.assertEqual(ex["status"], "ok", (code, ex, err))
            self.assertEqual(res, [want] if want else [], (code, err))
            self.assertEqual(ex["session"]["seq"], i)
        ex, out, err, res = self.step("throw new Error('boom')", plugin="deno-eval")
        self.assertEqual(ex["status"], "error")
        self.assertIn("boom", err)
        j = self.job("x = 77; while (true) {}", plugin="deno-eval", session={"id": self.sid},
                     limits={"timeout_ms": 1500})
        self.submit(j)
        self.assertEqual(self.wait_exit(j["id"], timeout=30)[-1]["status"], "timeout")
        self.assertEqual(self.step("x", plugin="deno-eval")[3], ["77"])

    def test_rejections(self):
        self.start("--max-sessions", "1")
        for bad, why in [({"session": {"id": self.sid}, "plugin": "c"}, "keeps no sessions"),
                         ({"session": {"id": "bad id"}}, "session.id"),
                         ({"session": {"id": self.sid}, "stdin": b"x"}, "no 'stdin'"),
                         ({"session": {"id": self.sid}, "runs": [{}]}, "no 'runs'"),
                         ({"session": {"id": self.sid, "idle_ms": 5}}, "idle_ms"),
                         ({"session": "x"}, "must be a map")]:
            j = self.job("1", plugin=bad.pop("plugin", "python"), **bad)
            self.submit(j)
            ex = self.wait_exit(j["id"])[-1]
            self.assertEqual(ex["status"], "rejected", (bad, ex))
            self.assertIn(why, ex["reason"])
        self.assertEqual(self.step("1")[0]["status"], "ok")
        ex = self.step("1", sid="s-other")[0]
        self.assertEqual(ex["status"], "rejected")
        self.assertIn("--max-sessions 1", ex["reason"])
        ex = self.step("1", plugin="shell")[0]
        self.assertEqual(ex["status"], "rejected")
        self.assertIn("runs plugin python", ex["reason"])

    def test_cancel_and_drain_end_sessions(self):
        w = self.start()
        self.assertEqual(self.step("a = 1")[0]["status"], "ok")
        subprocess.run([os.path.join(BIN, "kiln"), "cancel", "--redis", self.redis.url, self.sid], check=True,
                       capture_output=True)
        wait_for(lambda: b"session %s: ended (cancelled)" % self.sid.encode() in w.text(), 10)
        ex = self.step("a")[0]
        self.assertEqual(ex["status"], "session_lost")
        self.assertIn("cancelled", ex["reason"])
        other = "s-" + uuid.uuid4().hex[:10]
        self.assertEqual(self.step("b = 1", sid=other)[0]["status"], "ok")
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.proc.wait(timeout=20), 0)
        self.assertIn(b"ended (drained)", w.text())
        # the queue remembers: a job for it on another worker is told too
        self.start(consumer="w2")
        ex = self.step("b", sid=other)[0]
        self.assertEqual(ex["status"], "session_lost", ex)
        self.assertIn("drained", ex["reason"])

    def test_kiln_submit_session(self):
        self.start()
        kiln = [os.path.join(BIN, "kiln"), "submit", "--redis", self.redis.url, "--plugin", "python",
                "--session", self.sid]
        r = subprocess.run(kiln + ["--code", "v = 6 * 7"], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(kiln + ["--close", "--code", "v"], capture_output=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout), (0, b"42\n"), r.stderr)
        r = subprocess.run(kiln + ["--code", "v"], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn(b"session_lost", r.stderr)



class Hostile(SessionCase):
    """From the attacker's side: what a session's job leaves behind does
    not run on (a zombie leader whose threads spin, children that keep
    waking the interpreter), use CPU while the session idles, change the
    files collect sends, push results past the output cap, or reach another
    signer's session."""

    def sandbox_cpu_ms(self):
        """CPU the worker's sandboxes have used so far (ms), from the host:
        the cgroups the worker made (sb-<its pid>-...)."""
        pid = self.w.proc.pid
        total = 0
        for root, key in (("/sys/fs/cgroup/cpuacct/kiln", None), ("/sys/fs/cgroup/kiln", "usage_usec")):
            if not os.path.isdir(root):
                continue
            for d in os.listdir(root):
                if not d.startswith("sb-%d-" % pid):
                    continue
                try:
                    if key is None:
                        with open(os.path.join(root, d, "cpuacct.usage")) as f:
                            total += int(f.read()) // 1000000
                    else:
                        with open(os.path.join(root, d, "cpu.stat")) as f:
                            lines = f.read().splitlines()
                        for l in lines:
                            if l.startswith(key + " "):
                                total += int(l.split()[1]) // 1000
                except OSError:
                    pass
            return total
        self.skipTest("no cgroup CPU accounting on this host")

    def idle_cpu_ms(self, seconds=3.0):
        a = self.sandbox_cpu_ms()
        time.sleep(seconds)
        return self.sandbox_cpu_ms() - a

    def test_a_process_whose_main_thread_exited_does_not_outlive_its_cell(self):
        # the main thread exits (a zombie leader), another thread spins on
        self.start("--pool", "0", "--no-zygote")
        hider = ("import ctypes, threading\n"
                 "def spin():\n"
                 "    while True:\n"
                 "        pass\n"
                 "threading.Thread(target=spin).start()\n"
                 "ctypes.CDLL(None).syscall(60, 0)\n")
        ex, out, err, res = self.step(
            "import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', %r], start_new_session=True)\n"
            "time.sleep(0.5)\n'hidden'" % hider)
        self.assertEqual(ex["status"], "ok", err)
        spent = self.idle_cpu_ms()
        self.assertLess(spent, 300, "an idle session used %d ms of CPU in 3 s" % spent)
        # and nothing of it is left for the next cell to find
        ex, out, err, res = self.step(
            "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()"
            " and os.stat('/proc/' + p).st_uid == os.getuid()"
            " and any(open('/proc/%s/task/%s/stat' % (p, t)).read().rsplit(')', 1)[1].split()[0] != 'Z'"
            "         for t in os.listdir('/proc/%s/task' % p)))")
        self.assertEqual(res, ["[]"], err)

    def test_children_cannot_wake_the_idle_interpreter(self):
        # eight children keep sending SIGCONT to the interpreter while the
        # cell ends; a thread of the interpreter would spin if it ran
        self.start("--pool", "0", "--no-zygote")
        code = ("import os, threading, time\n"
                "def spin():\n"
                "    while True:\n"
                "        pass\n"
                "threading.Thread(target=spin, daemon=True).start()\n"
                "me = os.getpid()\n"
                "for _ in range(8):\n"
                "    if os.fork() == 0:\n"
                "        while True:\n"
                "            os.kill(me, 18)\n"
                "time.sleep(0.3)\n")
        for attempt in range(3):
            ex, out, err, res = self.step(code)
            self.assertEqual(ex["status"], "ok", err)
            spent = self.idle_cpu_ms(2.0)
            self.assertLess(spent, 300, "try %d: an idle session used %d ms of CPU in 2 s" % (attempt + 1, spent))

    def test_results_count_against_the_output_cap(self):
        self.start()
        j = self.job("import os\n"
                     "fd = os.open('/tmp/.kiln-repl/ctl', os.O_WRONLY)\n"
                     "for _ in range(64):\n"
                     "    os.write(fd, b'R 65536\\n' + b'x' * 65536)\n"
                     "'done'", plugin="python", session={"id": self.sid},
                     limits={"output_bytes": 1000})
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=40)
        got = sum(len(f["data"]) for f in fs if f["kind"] in ("result", "stdout", "stderr"))
        self.assertLessEqual(got, 1000, "%d bytes came back under a cap of 1000" % got)
        self.assertLessEqual(len([f for f in fs if f["kind"] == "result"]), 1)
        # a value larger than what is left of the cap is not sent
        j = self.job("print('x' * 500)\n'y' * 5000", plugin="python", session={"id": self.sid},
                     limits={"output_bytes": 1000})
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=40)
        self.assertEqual(fs[-1]["status"], "output_limit", fs[-1])
        self.assertEqual([f for f in fs if f["kind"] == "result"], [])

    def test_what_collect_sends_is_what_the_cell_left(self):
        # a writer that hides as a zombie leader keeps rewriting the files
        # after its cell; collect must see them as the cell left them
        self.start("--pool", "0", "--no-zygote")
        writer = ("import ctypes, os, threading\n"
                  "def loop():\n"
                  "    n = 0\n"
                  "    while True:\n"
                  "        n += 1\n"
                  "        for i in range(200):\n"
                  "            with open('/work/out/%03d.txt' % i, 'w') as f:\n"
                  "                f.write(str(n))\n"
                  "threading.Thread(target=loop).start()\n"
                  "ctypes.CDLL(None).syscall(60, 0)\n")
        j = self.job("import os, subprocess, sys, time\n"
                     "os.makedirs('out', exist_ok=True)\n"
                     "for i in range(200):\n"
                     "    open('out/%%03d.txt' %% i, 'w').write('0')\n"
                     "subprocess.Popen([sys.executable, '-c', %r], start_new_session=True)\n"
                     "time.sleep(0.3)\n" % writer, plugin="python", session={"id": self.sid},
                     collect=["out/*.txt"])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=40)
        self.assertEqual(fs[-1]["status"], "ok", fs[-1])
        sent = {}
        for f in fs:
            if f["kind"] == "file":
                sent[f["path"]] = sent.get(f["path"], b"") + bytes(f["data"])
        self.assertEqual(len(sent), 200)
        # a window, not a wait: a writer that outlived the cell would change
        # the files in it
        time.sleep(0.5)
        ex, out, err, res = self.step("sorted((p, open('out/' + p).read()) for p in os.listdir('out'))")
        now = dict(eval(res[0]))
        self.assertEqual({"out/" + p: v.encode() for p, v in now.items()}, sent)

    def test_an_oom_names_the_limit_the_session_holds(self):
        # the first job's memory_mb holds for the session; a later job
        # asking for more gets no more, and its OOM says so
        self.start()
        j = self.job("x = 1", plugin="python", session={"id": self.sid}, limits={"memory_mb": 64})
        self.submit(j)
        self.assertEqual(self.wait_exit(j["id"], timeout=40)[-1]["status"], "ok")
        j = self.job("b = bytearray(200 << 20)", plugin="python", session={"id": self.sid},
                     limits={"memory_mb": 512})
        self.submit(j)
        ex = self.wait_exit(j["id"], timeout=40)[-1]
        self.assertEqual(ex["status"], "oom", ex)
        self.assertIn("(64 MiB)", ex["reason"])

    def test_session_ids_cannot_be_listed(self):
        # a client allowed only to add jobs (and to SCAN key names) learns
        # no session id from the names of kiln's keys, and reads no salt
        import redis as redis_py
        self.start()
        sid = "victim-" + uuid.uuid4().hex[:8]
        self.assertEqual(self.step("secret = 42", sid=sid)[0]["status"], "ok")
        self.r.execute_command("ACL", "SETUSER", "adder", "on", ">pw", "resetkeys", "%W~kiln.jobs",
                               "+xadd", "+scan", "+ping")
        adder = redis_py.Redis(port=self.redis.port, username="adder", password="pw")
        names = [k.decode() for k in adder.scan_iter(match="*", count=1000)]
        self.assertTrue(any(n.startswith("kiln.jobs:session:") for n in names), names)
        self.assertEqual([n for n in names if sid in n or sid.split("-")[1] in n], [])
        with self.assertRaises(redis_py.exceptions.NoPermissionError):
            adder.get("kiln.jobs:session-salt")
        # the session lives on for whoever has its id
        self.assertEqual(self.step("secret", sid=sid)[3], ["42"])

    def test_a_result_follows_the_cells_output(self):
        self.start()
        for _ in range(3):
            j = self.job("print('x' * 50000)\n'last'", plugin="python", session={"id": self.sid})
            self.submit(j)
            fs = self.wait_exit(j["id"], timeout=40)
            kinds = [f["kind"] for f in fs]
            self.assertEqual(kinds[-2:], ["result", "exit"], kinds)
            self.assertEqual(sum(len(f["data"]) for f in fs if f["kind"] == "stdout"), 50001)

    def test_nothing_a_cell_started_outlives_it(self):
        self.start()
        # a process that keeps forking, so one scan of /proc would miss some
        code = ("import os, time\n"
                "if os.fork() == 0:\n"
                "    while True:\n"
                "        if os.fork() == 0:\n"
                "            time.sleep(0.001)\n"
                "            continue\n"
                "        os._exit(0)\n"
                "time.sleep(0.5)\n"
                "'forked'")
        self.assertEqual(self.step(code)[3], ["'forked'"])
        # (a killed child of the interpreter stays a zombie until it waits)
        ex, out, err, res = self.step(
            "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit()"
            " and os.stat('/proc/' + p).st_uid == os.getuid() and int(p) != os.getpid()"
            " and open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[0] != 'Z')")
        self.assertEqual(res, ["[]"], err)

    def test_an_idle_session_uses_no_cpu(self):
        self.start()
        # a thread that spins after its cell has ended
        self.step("import threading, time\n"
                  "def spin():\n"
                  "    while True:\n"
                  "        pass\n"
                  "threading.Thread(target=spin, daemon=True).start()\n"
                  "t1 = time.process_time()")
        time.sleep(3)  # a window in which a thread left running would spin
        ex, out, err, res = self.step("time.process_time() - t1 < 1.0")
        self.assertEqual(res, ["True"], err)

    def test_a_session_is_its_signers(self):
        keys = os.path.join(self.tmp, "keys")
        k1, k2 = bytes(range(32)), bytes(range(100, 132))
        with open(keys, "w") as f:
            f.write("k1 %s\nk2 %s\n" % (k1.hex(), k2.hex()))
        self.start("--require-signature", "--keys-file", keys)
        import hashlib
        import hmac

        def signed(code, kid, key):
            j = self.job(code, plugin="python", session={"id": self.sid},
                         not_after=int(time.time() * 1000) + 60000)
            body = msgpack.packb({k: j[k] for k in sorted(j)}, use_bin_type=True)
            j["sig"] = {"kid": kid, "mac": hmac.new(key, body, hashlib.sha256).digest()}
            self.submit(j)
            return self.wait_exit(j["id"], timeout=40)[-1]
        self.assertEqual(signed("secret = 'k1 only'", "k1", k1)["status"], "ok")
        ex = signed("secret", "k2", k2)
        self.assertEqual(ex["status"], "rejected", ex)
        self.assertIn("another key", ex["reason"])
        self.assertEqual(signed("secret", "k1", k1)["status"], "ok")


class SharedStream(KilnCase):
    """Two workers read one job stream: every job of a session runs in its
    session's sandbox, in order, whichever worker took it."""

    def setUp(self):
        super().setUp()
        # one slot each: the jobs waiting in a session hold the slots, and
        # what they wait for comes forwarded (outside the slots)
        self.w1 = self.worker("w1", *ROOTFS, "--claim-idle-ms", "3000", "--slots", "1")
        self.w2 = self.worker("w2", *ROOTFS, "--claim-idle-ms", "3000", "--slots", "1")

    def submit_step(self, sid, code, **kw):
        j = self.job(code, plugin="python", session={"id": sid}, **kw)
        self.submit(j)
        return j["id"]

    def test_jobs_follow_their_session_in_order(self):
        sids = ["s-" + uuid.uuid4().hex[:10] for _ in range(3)]
        ids = {sid: [] for sid in sids}
        # pipelined: all of every session's jobs at once, interleaved
        for sid in sids:
            ids[sid].append(self.submit_step(sid, "seen = []\nimport os\npid = os.getpid()"))
        for k in range(1, 9):
            for sid in sids:
                ids[sid].append(self.submit_step(sid, "seen.append(%d)\n(os.getpid() == pid, seen)" % k))
        for sid in sids:
            for n, jid in enumerate(ids[sid], 1):
                fs = self.wait_exit(jid, timeout=60)
                ex = [f for f in fs if f["kind"] == "exit"][-1]
                self.assertEqual(ex["status"], "ok", (sid, n, ex))
                self.assertEqual(ex["session"], {"id": sid, "seq": n})
                if n > 1:
                    res = [f["data"].decode() for f in fs if f["kind"] == "result"]
                    self.assertEqual(res, ["(True, %r)" % list(range(1, n))], (sid, n))
        # both workers took jobs; some were forwarded to the holder
        logs = self.w1.text() + self.w2.text()
        self.assertIn(b"forwarded there", logs)
        self.assertNotIn(b"waited 5000 ms", logs)  # each waited for its turn, not past it
        self.assertEqual(self.pending(), 0)

    def test_owner_killed(self):
        sid = "s-" + uuid.uuid4().hex[:10]
        j = self.submit_step(sid, "a = 1")
        ex = self.wait_exit(j)[-1]
        self.assertEqual(ex["status"], "ok")
        owner = self.w1 if ex["worker"] == "w1" else self.w2
        other = self.w2 if owner is self.w1 else self.w1
        # a job runs in it when its worker dies
        running = self.submit_step(sid, "import time\ntime.sleep(30)")
        wait_for(lambda: b"job %s attempt 1: started" % running.encode() in owner.text(), 20)
        owner.kill9()
        # the running job is not run again elsewhere: it ends session_lost
        fs = self.wait_exit(running, timeout=60)
        ex = fs[-1]
        self.assertEqual(ex["status"], "session_lost", ex)
        self.assertIn("gone", ex["reason"])
        self.assertEqual(ex["worker"], other.consumer)
        # and so does the next one
        ex = self.wait_exit(self.submit_step(sid, "a"), timeout=60)[-1]
        self.assertEqual(ex["status"], "session_lost", ex)
        self.assertEqual([f for f in self.frames() if f["id"] == running and f["kind"] == "stdout"], [])
        wait_for(lambda: self.pending() == 0, 30, "nothing pending")



class OverKafka(KafkaCase):
    """Kafka: a session's jobs keyed by its id reach its worker in order; a
    job for a session that ended, or whose partition moved in a rebalance,
    is told so wherever it lands."""

    def kstep(self, sid, code, **session):
        j = self.job(code, plugin="python", session=dict(session, id=sid))
        self.produce([j], key=sid)

        def exit_of():
            fs = [f for _, _, f, _, _ in self.kframes() if f["id"] == j["id"]]
            return fs if any(f["kind"] == "exit" for f in fs) else None
        fs = wait_for(exit_of, 90, "the exit frame of " + j["id"], interval=0.3)
        ex = [f for f in fs if f["kind"] == "exit"]
        self.assertEqual(len(ex), 1, fs)
        return ex[0], [f["data"].decode() for f in fs if f["kind"] == "result"]

    def control(self):
        return [msgpack.unpackb(v, raw=False) for _, _, v, _, _ in self.consume("kiln.control")]

    def test_state_lives_and_a_moved_session_says_so(self):
        k1 = self.kworker("k1", *ROOTFS)
        sid = "s-" + uuid.uuid4().hex[:10]
        ex, res = self.kstep(sid, "v = 20")
        self.assertEqual((ex["status"], ex["session"]), ("ok", {"id": sid, "seq": 1}), ex)
        ex, res = self.kstep(sid, "v + 1")
        self.assertEqual((ex["status"], res), ("ok", ["21"]), ex)
        closed = "s-" + uuid.uuid4().hex[:10]
        self.assertEqual(self.kstep(closed, "c = 1", close=True)[0]["status"], "ok")
        # what the control topic says of them
        wait_for(lambda: {"session_end": closed, "why": "closed"} in self.control(), 30, "the close said")
        self.assertIn({"session_open": sid, "worker": "k1"}, self.control())
        # the worker dies; its partitions go to another, which learns from
        # the control topic which sessions exist
        k1.kill9()
        self.kworker("k2", *ROOTFS)
        ex, res = self.kstep(sid, "v")
        self.assertEqual(ex["status"], "session_lost", ex)
        self.assertIn("moved", ex["reason"])
        self.assertEqual(ex["worker"], "k2")
        ex, res = self.kstep(closed, "c")
        self.assertEqual(ex["status"], "session_lost", ex)
        self.assertIn("closed", ex["reason"])
        # a new session opens on the new worker as on any
        ex, res = self.kstep("s-" + uuid.uuid4().hex[:10], "1 + 1")
        self.assertEqual((ex["status"], res), ("ok", ["2"]), ex)


if __name__ == "__main__":
    main()
