"""A pass means the tests ran: a job with `expect_end` that exits 0 before
its program's end is an error, whatever ended it (sys.exit, os._exit, an
atexit handler after a failed assert, a thread that calls os._exit while
the tests run), and a program that searches its own source, environment,
descriptors, /proc and memory for the token that proves an end finds
nothing it can use, nor one that rewrites the runner's names or brings a
module of its own named ctypes. Each hostile program here passed as `ok` before
`expect_end` existed (they exit 0); each must now fail, in a forked
(zygote) sandbox and in one that starts python afresh, and through
`kiln eval`, whose pass@1 counts only the honest samples."""
import json
import os
import subprocess

from kilntest import BIN, KilnCase, main, rootfs_args, skip_unless_jail_works

skip_unless_jail_works()
ROOTFS = rootfs_args()
KILN = os.path.join(BIN, "kiln")

PROMPT = 'def add_one(x):\n    """x + 1"""\n'
TEST = ("def check(candidate):\n"
        "    import time\n"
        "    time.sleep(0.2)\n"
        "    assert candidate(1) == 2\n"
        "    assert candidate(41) == 42\n")
HONEST = "    return x + 1\n"
WRONG = "    return x\n"

# completions that exit 0 without the tests passing
CHEATS = {
    "sys_exit": "    return x\nimport sys\nsys.exit(0)\n",
    "os_exit": "    return x\nimport os\nos._exit(0)\n",
    "raise_systemexit_in_call": "    raise SystemExit(0)\n",
    "atexit_after_failed_assert": "    return x\nimport atexit, os\natexit.register(os._exit, 0)\n",
    "thread_exits_while_tests_run": (
        "    return x\n"
        "import os, threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.1), os._exit(0))).start()\n"),
    "token_hunt": (
        "    return x\n"
        "import gc, os, re, sys\n"
        "seen, in_cells = set(), set()\n"
        "def grab(v):\n"
        "    if isinstance(v, str):\n"
        "        v = v.encode('utf-8', 'replace')\n"
        "    if isinstance(v, (bytes, bytearray)):\n"
        "        seen.update(re.findall(rb'[0-9a-f]{32}', v))\n"
        "def read(p):\n"
        "    try:\n"
        "        with open(p, 'rb') as f:\n"
        "            grab(f.read(1 << 20))\n"
        "    except Exception:\n"
        "        pass\n"
        "read(__file__)\n"
        "grab(repr(os.environ))\n"
        "grab(repr(sys.argv))\n"
        "for p in ('/proc/self/environ', '/proc/self/cmdline', '/proc/1/environ', '/proc/1/cmdline'):\n"
        "    read(p)\n"
        "for d in ('/tmp', '/tmp/.kiln-end', '/work', '/dev/shm'):\n"
        "    for n in (os.listdir(d) if os.path.isdir(d) else []):\n"
        "        read(os.path.join(d, n))\n"
        "for fd in range(64):\n"
        "    try:\n"
        "        grab(os.read(fd, 65536))\n"
        "    except Exception:\n"
        "        pass\n"
        "# what the process holds: every frame's names, and every object the\n"
        "# gc knows with what it refers to (a function's closure cells too)\n"
        "f = sys._getframe()\n"
        "while f is not None:\n"
        "    for v in list(f.f_locals.values()) + list(f.f_globals.values()):\n"
        "        grab(v)\n"
        "    f = f.f_back\n"
        "try:\n"
        "    for o in gc.get_objects():\n"
        "        for v in gc.get_referents(o):\n"
        "            grab(v)\n"
        "            if type(v).__name__ == 'cell':\n"
        "                try:\n"
        "                    c = v.cell_contents\n"
        "                except ValueError:\n"
        "                    continue\n"
        "                if isinstance(c, bytes) and re.fullmatch(rb'[0-9a-f]{32}', c):\n"
        "                    in_cells.add(c)\n"
        "except RuntimeError:\n"
        "    pass\n"
        "# a token held in a closure is the best guess, else any\n"
        "guess = sorted(in_cells or seen)\n"
        "os.makedirs('/tmp/.kiln-end', exist_ok=True)\n"
        "if guess:\n"
        "    with open('/tmp/.kiln-end/proof', 'wb') as out:\n"
        "        out.write(guess[0])\n"
        "os._exit(0)\n"),
    "audit_the_end_itself": (
        "    return x\n"
        "import os, sys\n"
        "sys.audit('kiln.end')\n"
        "os._exit(0)\n"),
    "child_reads_parent_memory": (
        "    return x\n"
        "import os, subprocess, sys\n"
        "# a child (no audit hook of its parent's) reads its parent's memory for\n"
        "# a 32-byte bytes object never hashed: size 32, hash -1, 32 hex digits\n"
        "code = ('import re, sys\\n'\n"
        "        'pid = int(sys.argv[1])\\n'\n"
        "        'maps = open(\"/proc/%d/maps\" % pid).read().splitlines()\\n'\n"
        "        'mem = open(\"/proc/%d/mem\" % pid, \"rb\")\\n'\n"
        "        'pat = re.compile(re.escape(bytes([32, 0, 0, 0, 0, 0, 0, 0]) + bytes([255] * 8)) + rb\"([0-9a-f]{32})\\\\x00\")\\n'\n"
        "        'for l in maps:\\n'\n"
        "        '    a, b = [int(x, 16) for x in l.split()[0].split(\"-\")]\\n'\n"
        "        '    try:\\n'\n"
        "        '        mem.seek(a)\\n'\n"
        "        '        m = pat.search(mem.read(b - a))\\n'\n"
        "        '    except Exception:\\n'\n"
        "        '        continue\\n'\n"
        "        '    if m:\\n'\n"
        "        '        sys.stdout.buffer.write(m.group(1))\\n'\n"
        "        '        break\\n')\n"
        "r = subprocess.run([sys.executable, '-c', code, str(os.getpid())], capture_output=True)\n"
        "os.makedirs('/tmp/.kiln-end', exist_ok=True)\n"
        "if r.stdout:\n"
        "    open('/tmp/.kiln-end/proof', 'wb').write(r.stdout)\n"
        "os._exit(0)\n"),
    "ctypes_reads_memory": (
        "    return x\n"
        "import ctypes, os\n"
        "ctypes.string_at(id(os), 64)\n"
        "os._exit(0)\n"),
    # the runner's names, rewritten from the program: isinstance becomes
    # sys.audit, so the runner's own frame would call audit('kiln.end', int)
    "rewrite_the_runners_globals": (
        "    return x\n"
        "import os, sys\n"
        "g = sys._getframe(1).f_globals\n"
        "g['isinstance'] = sys.audit\n"
        "g['_kiln_exit'] = lambda c: os._exit(0)\n"
        "raise SystemExit('kiln.end')\n"),
    # a module of its own named ctypes (FILES), imported if the runner
    # imported ctypes once the script's directory was on the path: it would
    # find the token in the runner's frame and write the proof itself
    "own_module_named_ctypes": "    return x\n",
}

FILES = {
    "own_module_named_ctypes": {"ctypes.py": (
        b"import os, sys\n"
        b"f = sys._getframe()\n"
        b"while f is not None:\n"
        b"    t = f.f_locals.get('tok')\n"
        b"    if isinstance(t, bytes):\n"
        b"        os.makedirs('/tmp/.kiln-end', exist_ok=True)\n"
        b"        open('/tmp/.kiln-end/proof', 'wb').write(t)\n"
        b"        os._exit(0)\n"
        b"    f = f.f_back\n"
        b"def CDLL(*a, **k):\n"
        b"    class L:\n"
        b"        def prctl(self, *a):\n"
        b"            return 0\n"
        b"    return L()\n")},
}
# cheats that end 1, their tests failed (most others end 0, before their end)
ENDS_ONE = {"rewrite_the_runners_globals", "own_module_named_ctypes"}


def program(completion):
    return PROMPT + completion + "\n" + TEST + "\ncheck(add_one)"


class EndChecked(KilnCase):
    def check_all(self, *worker_args):
        self.worker("w1", *ROOTFS, *worker_args)
        ex, out, err = self.run_job(program(HONEST), plugin="python", expect_end=True)
        self.assertEqual(ex["status"], "ok", (ex, err))
        ex, out, err = self.run_job(program(WRONG), plugin="python", expect_end=True)
        self.assertEqual((ex["status"], ex["code"]), ("error", 1), ex)
        for name, completion in CHEATS.items():
            files = FILES.get(name, {})
            # each exits 0 without expect_end: the hole this closes
            if name not in ("ctypes_reads_memory", "child_reads_parent_memory", "token_hunt",
                            "rewrite_the_runners_globals", "own_module_named_ctypes"):
                ex, out, err = self.run_job(program(completion), plugin="python", files=files)
                self.assertEqual(ex["status"], "ok", (name, ex, err))
            ex, out, err = self.run_job(program(completion), plugin="python", expect_end=True, files=files)
            self.assertEqual(ex["status"], "error", (name, ex, err))
            if name == "ctypes_reads_memory":  # refused outright
                self.assertEqual(ex["code"], 1, (name, ex))
                self.assertIn(b"is refused in a run whose end is checked", err)
            elif name in ENDS_ONE:
                self.assertEqual(ex["code"], 1, (name, ex, err))
            elif name != "raise_systemexit_in_call":
                self.assertEqual(ex["code"], 0, (name, ex, err))
                self.assertIn("before its end", ex["reason"], name)

    def test_forked_sandboxes(self):
        self.check_all()

    def test_sandboxes_that_start_python_afresh(self):
        self.check_all("--no-zygote", "--pool", "0")

    def test_the_reason_says_why_and_other_plugins_refuse(self):
        self.worker("w1", *ROOTFS)
        ex, out, err = self.run_job(program(CHEATS["os_exit"]), plugin="python", expect_end=True)
        self.assertEqual((ex["status"], ex["code"]), ("error", 0), ex)
        self.assertIn("before its end", ex["reason"])
        ex, out, err = self.run_job("true", plugin="shell", expect_end=True)
        self.assertEqual(ex["status"], "rejected", ex)
        self.assertIn("expect_end", ex["reason"])
        ex, out, err = self.run_job("import os\nprint(sorted(os.listdir('/tmp')))", plugin="python",
                                    expect_end=True)
        self.assertEqual((ex["status"], out), ("ok", b"['.kiln-end']\n"), (ex, err))


class RunnersHideTheirMemory(KilnCase):
    """A runner whose end is checked keeps the token in its process's
    memory: the program must not read it there. Ruby and Perl runners make
    the process non-dumpable, so /proc/self/mem (and a child's look at
    /proc/PPID/mem) is refused, and the sandbox's filter refuses making it
    dumpable again; PHP's checked run has no FFI. Each probe passed
    before this."""

    PROBES = {
        "ruby": ("def probe(p)\n  File.open(p, 'rb') { |f| f.read(1) }\n  'read'\n"
                 "rescue SystemCallError => e\n  \"refused #{e.class}\"\nend\n"
                 "puts probe('/proc/self/mem')\n"
                 "puts IO.popen(['sh', '-c', 'head -c1 /proc/$PPID/mem >/dev/null 2>&1 && echo read || echo refused']).read\n"
                 "v, $VERBOSE = $VERBOSE, nil\n"
                 "puts((syscall(157, 4, 1, 0, 0, 0) rescue \"refused #{$!.class}\"))\n"
                 "puts probe('/proc/self/mem')\n",
                 ["refused Errno::EACCES", "refused", "refused Errno::EPERM", "refused Errno::EACCES"]),
        "perl": ("print open(my $f, '<', '/proc/self/mem') ? \"read\\n\" : \"refused\\n\";\n"
                 "print `head -c1 /proc/\\$PPID/mem >/dev/null 2>&1 && echo read || echo refused`;\n"
                 "print syscall(157, 4, 1, 0, 0, 0) == -1 ? \"refused\\n\" : \"dumpable\\n\";\n",
                 ["refused", "refused", "refused"]),
        "php": ("<?php\ntry { FFI::cdef('int getpid(void);'); echo \"ffi\\n\"; }\n"
                "catch (Throwable $e) { echo \"refused\\n\"; }\n",
                ["refused"]),
    }

    def check(self, *worker_args):
        self.worker("mem", *ROOTFS, *worker_args)
        for plugin, (code, want) in self.PROBES.items():
            ex, out, err = self.run_job(code, plugin=plugin, expect_end=True)
            self.assertEqual(ex["status"], "ok", (plugin, ex, err))
            self.assertEqual(out.decode().split("\n")[:-1], want, (plugin, err))

    def test_cold_runs(self):
        self.check("--pool", "0", "--no-zygote")

    def test_warm_runs(self):
        self.check("--pool", "1")


class KilnEval(KilnCase):
    def test_pass_at_1_counts_only_programs_whose_tests_ran(self):
        self.worker("w1", *ROOTFS)
        problems = os.path.join(self.tmp, "problems.jsonl")
        samples = os.path.join(self.tmp, "samples.jsonl")
        with open(problems, "w") as f:
            f.write(json.dumps({"task_id": "t/0", "prompt": PROMPT, "test": TEST,
                                "entry_point": "add_one"}) + "\n")
        names = ["honest"] + sorted(CHEATS)
        with open(samples, "w") as f:
            f.write(json.dumps({"task_id": "t/0", "completion": HONEST}) + "\n")
            for n in names[1:]:
                f.write(json.dumps({"task_id": "t/0", "completion": CHEATS[n]}) + "\n")
        out = os.path.join(self.tmp, "results.jsonl")
        r = subprocess.run([KILN, "eval", "--problems", problems, "--samples", samples, "--out", out,
                            "--k", "1", "--timeout-ms", "20000"], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, KILN_REDIS=self.redis.url))
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertAlmostEqual(summary["pass@1"], 1 / len(names), places=12)
        with open(out) as f:
            rows = [json.loads(l) for l in f if '"sample"' in l]
        passed = {names[x["sample"]]: x["passed"] for x in rows}
        self.assertEqual(passed, {n: n == "honest" for n in names})


if __name__ == "__main__":
    main()
