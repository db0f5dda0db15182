"""python and deno-eval jobs in the runtime image, cold and from warm
pools: what a user sees (output, exit codes, stdin, args, env, files,
errors), that warm and cold agree, that pools lose nothing under load, and
that isolation holds for the interpreters too."""
import json
import math
import os
import shutil
import subprocess

from kilntest import KilnCase, main, rootfs_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()


class Runtimes(KilnCase):
    pool = "0"

    def setUp(self):
        super().setUp()
        self.w = self.worker("rt", *ROOTFS, "--pool", self.pool, "--slots", "4", "--log-level", "debug")

    def py(self, code, **kw):
        return self.run_job(code, plugin="python", **kw)

    def deno(self, code, **kw):
        return self.run_job(code, plugin="deno-eval", **kw)

    # ---- python ----

    def test_python_output_exit_stdin_args_env_files(self):
        ex, out, err = self.py(
            "import os, sys\n"
            "print('args', sys.argv[1:])\n"
            "print('line', input())\n"
            "print('env', os.environ['GREETING'])\n"
            "print('file', open('data/in.txt').read().strip())\n"
            "print('oops', file=sys.stderr)\n"
            "sys.exit(3)\n",
            stdin=b"hello\n", args=["a b", "c"], env={"GREETING": "hi"},
            files={"data/in.txt": b"content\n"})
        self.assertEqual((ex["status"], ex["code"]), ("error", 3))
        self.assertEqual(out.decode().splitlines(),
                         ["args ['a b', 'c']", "line hello", "env hi", "file content"])
        self.assertEqual(err, b"oops\n")

    def test_python_ok(self):
        ex, out, _ = self.py("print(sum(range(10)))")
        self.assertEqual((ex["status"], ex["code"], out), ("ok", 0, b"45\n"))

    def test_python_syntax_error(self):
        ex, out, err = self.py("print(1/0")
        self.assertEqual((ex["status"], ex["code"], out), ("error", 1, b""))
        self.assertIn(b'File "/work/main.py", line 1', err)
        self.assertIn(b"SyntaxError", err)

    def test_python_uncaught_exception_traceback(self):
        ex, _, err = self.py("def f():\n    raise ValueError('bad value')\nf()\n")
        self.assertEqual((ex["status"], ex["code"]), ("error", 1))
        self.assertTrue(err.startswith(b"Traceback (most recent call last):\n"), err)
        self.assertIn(b'File "/work/main.py", line 3, in <module>', err)
        self.assertTrue(err.endswith(b"ValueError: bad value\n"), err)
        self.assertNotIn(b"runpy", err)

    def test_python_sees_only_the_jobs_environment(self):
        ex, out, _ = self.py("import os, json; print(json.dumps(dict(os.environ)))", env={"MINE": "1"})
        env = json.loads(out)
        self.assertEqual(sorted(env), ["HOME", "KILN_ATTEMPT", "KILN_JOB_ID", "LANG", "MINE", "PATH", "TMPDIR"])

    def test_python_cannot_read_the_workers_files(self):
        ex, out, _ = self.py(
            "import os\n"
            "print(os.path.exists(%r), os.path.exists('/etc/shadow'))\n"
            "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
            "print(open('/etc/kiln-image').read().split(':')[0])\n" % self.tmp)
        lines = out.decode().splitlines()
        self.assertEqual(lines[0], "False False")
        self.assertLessEqual(len(json.loads(lines[1].replace("'", '"'))), 3)
        self.assertTrue(lines[2].startswith("kiln runtime image default "), lines[2])

    # ---- deno ----

    def test_deno_output_exit_stdin_args_env_files(self):
        ex, out, err = self.deno(
            "const input = await new Response(Deno.stdin.readable).text();\n"
            "console.log('args', JSON.stringify(Deno.args));\n"
            "console.log('line', input.trim());\n"
            "console.log('env', Deno.env.get('GREETING'));\n"
            "console.log('file', (await Deno.readTextFile('/work/data/in.txt')).trim());\n"
            "console.error('oops');\n"
            "Deno.exit(4);\n",
            stdin=b"hello\n", args=["a b", "c"], env={"GREETING": "hi"},
            files={"data/in.txt": b"content\n"})
        self.assertEqual((ex["status"], ex["code"]), ("error", 4), err)
        self.assertEqual(out.decode().splitlines(),
                         ['args ["a b","c"]', "line hello", "env hi", "file content"])
        self.assertEqual(err, b"oops\n")

    def test_deno_typescript_with_types(self):
        ex, out, err = self.deno(
            "interface Pair<T> { a: T; b: T }\n"
            "function sum(p: Pair<number>): number { return p.a + p.b; }\n"
            "const p: Pair<number> = { a: 40, b: 2 };\n"
            "console.log(sum(p));\n")
        self.assertEqual((ex["status"], out), ("ok", b"42\n"), err)

    def test_deno_syntax_error(self):
        ex, out, err = self.deno("console.log(1;\n")
        self.assertEqual((ex["status"], ex["code"], out), ("error", 1, b""))
        self.assertIn(b"main.ts", err)

    def test_deno_uncaught_error(self):
        ex, _, err = self.deno("function f() { throw new Error('boom'); }\nf();\n")
        self.assertEqual((ex["status"], ex["code"]), ("error", 1))
        self.assertIn(b"Uncaught", err)
        self.assertIn(b"Error: boom", err)

    def test_deno_has_no_network_and_no_host_files(self):
        ex, out, err = self.deno(
            "for (const u of ['http://127.0.0.1:%d/', 'https://example.com/']) {\n"
            "  try { await fetch(u); console.log('FETCHED', u); }\n"
            "  catch (e) { console.log('denied', e.name); } }\n"
            "try { await Deno.readTextFile('/etc/passwd'); console.log('READ'); }\n"
            "catch (e) { console.log('denied', e.name); }\n"
            "try { Deno.env.get('PATH'); console.log('ENV'); } catch (e) { console.log('denied', e.name); }\n"
            "try { new Deno.Command('/bin/sh'); await new Deno.Command('/bin/sh', {args: ['-c', 'true']}).output(); console.log('RAN'); }\n"
            "catch (e) { console.log('denied', e.name); }\n" % self.redis.port)
        self.assertEqual(ex["status"], "ok", err)
        self.assertEqual(out.decode().split(), ["denied", "NotCapable"] * 5)


class RuntimesWarm(Runtimes):
    """The same tests, every job from a warm pool."""
    pool = "2"

    def run_job(self, code, **kw):
        needs_more = kw.get("plugin") == "deno-eval" and kw.get("env")  # more permissions: cold
        if not needs_more:
            self.w.wait_pool(kw.get("plugin", "shell"), 1)
        result = super().run_job(code, **kw)
        jid = result[0]["id"]
        line = [l for l in self.w.text().splitlines() if b"job %s attempt 1: started" % jid.encode() in l]
        self.assertEqual(b", warm," in line[0], not needs_more, line)
        return result


class WarmVsCold(KilnCase):
    JOBS = [
        ("python", "import sys\nprint(sys.argv, input())\nprint('e', file=sys.stderr)\nsys.exit(2)",
         {"args": ["x"], "stdin": b"in\n"}),
        ("python", "def f():\n    return 1/0\nf()\n", {}),
        ("python", "print(1/0", {}),
        ("deno-eval", "console.log(Deno.args, await new Response(Deno.stdin.readable).text());",
         {"args": ["y"], "stdin": b"dd"}),
        ("deno-eval", "const x: number = 7; console.log(x * 6); console.error('warn'); Deno.exit(3);", {}),
        ("shell", "echo $1; cat; exit 5", {"args": ["z"], "stdin": b"s\n"}),
        ("perl", "print \"$0 [@ARGV] \", scalar(<STDIN>), $ENV{KILN_JOB_ID} ? 'id' : '';\n"
                 "print STDERR \"e\\n\";\nexit 2;\n", {"args": ["x y", ""], "stdin": b"in\n"}),
        ("perl", "sub f { die \"boom\\n\" }\nf();\n", {}),
        ("perl", "print 1;\nprint(\n", {}),
        # ruby and php: as a cold run has them, $0, ARGV, the environment,
        # stdin, an uncaught exception's backtrace, a syntax error
        ("ruby", "at_exit { $stderr.puts 'bye' }\np [__FILE__, $0, __FILE__ == $0, ARGV, ENV['K'], $stdin.read, self,\n"
                 "   local_variables, ARGV[0].encoding, defined?(Fiddle), ENV.keys.sort]\n"
                 "def f = raise(ArgumentError, 'boom')\nf\n", {"args": ["é", ""], "stdin": b"in\n", "env": {"K": "v"}}),
        ("ruby", "puts 1\ndef f(\n", {}),
        ("ruby", "$stdout.write 'x'\nexit 4\n", {}),
        ("php", "<?php\nregister_shutdown_function(function () { fwrite(STDERR, \"bye\\n\"); });\n"
                "echo json_encode([__FILE__, $argv, $argc, getenv('K'), array_keys($_SERVER), $_SERVER['SCRIPT_NAME'],\n"
                "  fgets(STDIN), array_keys(get_defined_vars()), class_exists('FFI', false) ? 'ffi' : '',\n"
                "  array_keys(getenv())]), \"\\n\";\n"
                "function f() { throw new RuntimeException('boom'); }\nf();\n",
         {"args": ["x y", ""], "stdin": b"in\n", "env": {"K": "v"}}),
        ("php", "<?php\necho 1;\nfunction (\n", {}),
        ("php", "<?php\necho 'x';\nundefined_fn();\n", {}),
        # R: its command line, environment (with what R adds), stdin, auto
        # printing, warnings, an error's "Calls:" and "Execution halted"
        ("r", "print(commandArgs())\nprint(sort(names(Sys.getenv())))\nprint(Sys.getenv('K'))\n"
              "cat(readLines(file('stdin')), sep = '\\n')\nmessage('to stderr')\n1 + 1\n"
              "d <- tempdir(); writeLines('t', file.path(d, 'x')); print(file.exists(file.path(d, 'x')))\n"
              "print(search())\nprint(length(getLoadedDLLs()))\nf <- function() { warning('w'); stop('boom') }\nf()\n",
         {"args": ["a b", "c"], "stdin": b"in\n", "env": {"K": "v"}}),
        ("r", "x <- (1 +\n", {}),
        ("r", "cat('x\\n')\nquit(status = 3)\n", {}),
    ]

    def results(self, pool):
        w = self.worker("wc" + pool, *ROOTFS, "--pool", pool, "--slots", "1", "--log-level", "debug")
        got = []
        for plugin, code, kw in self.JOBS:
            if pool != "0":
                w.wait_pool(plugin, 1)
            ex, out, err = self.run_job(code, plugin=plugin, **kw)
            got.append((ex["status"], ex["code"], out, err))
        w.stop()
        self.workers.remove(w)
        return got, w.text()

    def test_warm_and_cold_give_identical_results(self):
        cold, cold_log = self.results("0")
        warm, warm_log = self.results("2")
        self.assertNotIn(b", warm,", cold_log)
        self.assertEqual(warm_log.count(b", warm,"), len(self.JOBS), "every job of the warm run was warm")
        for (plugin, _, _), c, w in zip(self.JOBS, cold, warm):
            self.assertEqual(c, w, "%s: cold %r != warm %r" % (plugin, c, w))


class ManyInputs(KilnCase):
    def test_runs_each_input_its_own_exit_frame_then_a_summary(self):
        self.worker("runs", *ROOTFS, "--pool", "2")
        j = self.job("import sys\nx = int(input())\nprint(x * 2, sys.argv[1:])\nsys.exit(0 if x < 3 else 1)",
                     plugin="python", args=["default"],
                     runs=[{"stdin": b"1\n"}, {"stdin": b"2\n", "args": ["own"]}, {"stdin": b"5\n"}],
                     meta={"batch": 9})
        self.submit(j)
        fs = wait_for(lambda: (lambda f: f if any(x["kind"] == "exit" and "run" not in x for x in f) else None)(
            self.frames(job_id=j["id"])), 60, "the summary frame")
        self.assertEqual([f["seq"] for f in fs], list(range(len(fs))), "seq runs on across inputs")
        outs = {}
        for f in fs:
            if f["kind"] == "stdout":
                outs[f["run"]] = outs.get(f["run"], b"") + f["data"]
        self.assertEqual(outs, {0: b"2 ['default']\n", 1: b"4 ['own']\n", 2: b"10 ['default']\n"})
        exits = [f for f in fs if f["kind"] == "exit"]
        self.assertEqual([(e.get("run"), e["status"], e["code"]) for e in exits],
                         [(0, "ok", 0), (1, "ok", 0), (2, "error", 1), (None, "error", None)])
        summary = exits[-1]
        self.assertEqual((summary["runs"], summary["runs_ok"]), (3, 2))
        self.assertEqual(summary["meta"], {"batch": 9})
        wait_for(lambda: self.pending() == 0, 5, "the job to be acknowledged once")


class PoolUnderLoad(KilnCase):
    def test_pool_of_two_under_ten_concurrent_jobs_loses_none(self):
        w = self.worker("load", *ROOTFS, "--pool", "2", "--slots", "10", "--log-level", "debug")
        w.wait_pool("python", 2)
        ids = []
        for i in range(10):
            j = self.job("import time; time.sleep(0.2); print(%d)" % i, plugin="python")
            ids.append(j["id"])
            self.submit(j)
        for i, jid in enumerate(ids):
            fs = self.wait_exit(jid, timeout=60)
            self.assertEqual(fs[-1]["status"], "ok")
            self.assertEqual(b"".join(f["data"] for f in fs if f["kind"] == "stdout"), b"%d\n" % i)
        log = w.text()
        self.assertGreaterEqual(log.count(b", warm,"), 2, "no job came from the pool")
        self.assertGreaterEqual(log.count(b"started (python, from"), 1, "no job fell back to a cold start")
        wait_for(lambda: b"misses" in w.text(), 15, "the pool's stats line")
        self.assertEqual(self.pending(), 0)


class ZygoteScripts(KilnCase):
    """php and R sandboxes forked from template interpreters, as python's
    are: each job a fresh fork, confined as any sandbox, its random numbers
    its own; a run of PHP whose end is checked starts cold (no FFI: it
    could read the runner's token), R's forks, and both are judged as
    before."""

    CONFINED = {
        "php": "<?php\n$st = [];\nforeach (file('/proc/self/status') as $l) { [$k, $v] = explode(':', $l, 2); $st[$k] = trim($v); }\n"
               "echo implode(' ', [posix_getuid(), posix_getgid(), getmypid(), $st['CapEff'], $st['NoNewPrivs'], $st['Seccomp']]), \"\\n\";\n"
               "$p = array_map('intval', array_filter(scandir('/proc'), 'ctype_digit')); sort($p); echo json_encode(array_values($p)), \"\\n\";\n"
               "$f = array_values(array_diff(scandir('/proc/self/fd'), ['.', '..'])); sort($f); echo json_encode($f), \"\\n\";\n"
               "$e = array_keys(getenv()); sort($e); echo json_encode($e), \"\\n\";\n"
               "echo json_encode(array_slice(explode(\"\\0\", file_get_contents('/proc/1/cmdline')), 0, 2)), \"\\n\";\n"
               "echo json_encode(array_values(array_diff(scandir('/work'), ['.', '..']))), \"\\n\", json_encode(array_values(array_diff(scandir('/tmp'), ['.', '..']))), \"\\n\";\n"
               "echo random_int(0, PHP_INT_MAX), ' ', mt_rand(), \"\\n\";\n"
               "echo posix_setuid(0) ? 'escalated' : 'refused', \"\\n\";\n"
               "echo @fsockopen('1.1.1.1', 80, $no, $msg, 2) ? 'network' : 'no network', \"\\n\";\n",
    }

    def setUp(self):
        super().setUp()
        self.w = self.worker("zs", *ROOTFS, "--pool", "0", "--slots", "4", "--log-level", "debug")
        wait_for(lambda: b"php sandboxes fork from a template" in self.w.text(), 30, "the php template")

    def test_forked_jobs_are_confined_and_each_their_own(self):
        for plugin, code in self.CONFINED.items():
            outs = []
            for _ in range(2):
                ex, out, err = self.run_job(code, plugin=plugin, env={"ONLY": "this"})
                self.assertEqual(ex["status"], "ok", (plugin, err))
                outs.append(out.decode().splitlines())
            for lines in outs:
                self.assertEqual(lines[0].split()[:3], ["1000", "1000", "2"], plugin)
                self.assertEqual(lines[0].split()[3:], ["0000000000000000", "1", "2"], plugin)
                self.assertEqual(json.loads(lines[1]), [1, 2], "only the agent and the job: " + plugin)
                self.assertEqual(json.loads(lines[3]),
                                 ["HOME", "KILN_ATTEMPT", "KILN_JOB_ID", "LANG", "ONLY", "PATH", "TMPDIR"],
                                 "the job's environment, nothing of the template's: " + plugin)
                self.assertEqual(json.loads(lines[4]), ["kiln-agent", "--adopt"], plugin)
                self.assertEqual(json.loads(lines[5]), ["main.php"], plugin)
                self.assertEqual(lines[8:], ["refused", "no network"], plugin)
            self.assertNotEqual(outs[0][7], outs[1][7], "two forked %s jobs drew the same random numbers" % plugin)
        self.assertGreaterEqual(self.w.text().count(b"php sandbox forked"), 2)

    def test_forked_r_jobs_are_confined_and_each_their_own(self):
        wait_for(lambda: b"r sandboxes fork from a template" in self.w.text(), 30, "the R template")
        code = ("st <- readLines('/proc/self/status')\n"
                "g <- function(k) trimws(sub('^[^:]*:', '', st[startsWith(st, paste0(k, ':'))]))\n"
                "cat(strsplit(g('Uid'), '\\\\s+')[[1]][1], Sys.getpid(), g('CapEff'), g('NoNewPrivs'), g('Seccomp'), '\\n')\n"
                "cat(sort(as.integer(grep('^[0-9]+$', list.files('/proc'), value = TRUE))), '\\n')\n"
                "cat(sort(names(Sys.getenv()))[startsWith(sort(names(Sys.getenv())), 'KILN')], '\\n')\n"
                "x <- readBin('/proc/1/cmdline', 'raw', 200); cat(rawToChar(x[seq_len(which(x == 0)[1] - 1)]), '\\n')\n"
                "cat(list.files('/work'), '\\n')\n"
                "cat(runif(1), '\\n')\n"
                "r <- tryCatch({ socketConnection('1.1.1.1', 80, timeout = 2); 'network' }, error = function(e) 'no network',"
                " warning = function(w) 'no network')\ncat(r, '\\n')\n")
        outs = []
        for _ in range(2):
            ex, out, err = self.run_job(code, plugin="r", env={"ONLY": "this"})
            self.assertEqual(ex["status"], "ok", err)
            outs.append([l.strip() for l in out.decode().splitlines()])
        for lines in outs:
            self.assertEqual(lines[0].split(), ["1000", "2", "0000000000000000", "1", "2"])
            self.assertEqual(lines[1], "1 2", "only the agent and the job")
            self.assertEqual(lines[2], "KILN_ATTEMPT KILN_JOB_ID", "nothing of the template's")
            self.assertEqual(lines[3], "kiln-agent")
            self.assertEqual(lines[4], "main.R")
            self.assertEqual(lines[6], "no network")
        self.assertNotEqual(outs[0][5], outs[1][5], "two forked R jobs drew the same random numbers")
        self.assertGreaterEqual(self.w.text().count(b"r sandbox forked"), 2)
        # kiln eval's checked runs fork too, and are judged as cold ones
        ex, out, err = self.run_job("cat('ran\\n')\n", plugin="r", expect_end=True)
        self.assertEqual((ex["status"], out), ("ok", b"ran\n"), err)
        ex, _, err = self.run_job("cat('ran\\n')\nquit(status = 0)\ncat(1)\n", plugin="r", expect_end=True)
        self.assertEqual((ex["status"], ex["code"]), ("error", 0), err)
        self.assertGreaterEqual(self.w.text().count(b"r sandbox forked"), 4)

    def test_a_checked_run_starts_cold(self):
        """kiln eval's runs (expect_end) start php as a cold run does, never
        forked: a program that runs to its end passes, one that exits early
        or fails does not."""
        forked = self.w.text().count(b"php sandbox forked")
        cases = {
            "php": ("<?php\necho \"ran\\n\";\n", "<?php\necho \"ran\\n\";\nexit(0);\necho 1;\n",
                    "<?php\nthrow new Exception('x');\n"),
        }
        for plugin, (good, early, bad) in cases.items():
            ex, out, err = self.run_job(good, plugin=plugin, expect_end=True)
            self.assertEqual((ex["status"], out), ("ok", b"ran\n"), (plugin, err))
            ex, _, err = self.run_job(early, plugin=plugin, expect_end=True)
            self.assertEqual((ex["status"], ex["code"]), ("error", 0), (plugin, "an early exit 0 is no pass", err))
            self.assertIn("before its end", ex["reason"], plugin)
            ex, _, _ = self.run_job(bad, plugin=plugin, expect_end=True)
            self.assertEqual(ex["status"], "error", plugin)
        self.assertEqual(self.w.text().count(b"php sandbox forked"), forked, "a checked run was forked")


def zygotes():
    """Host pids of template interpreters (their environment names the zygote)."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                if b"KILN_ZYGOTE_FDS=" in f.read():
                    out.append(int(pid))
        except (OSError, ValueError):
            pass
    return out


class Zygote(KilnCase):
    """python sandboxes forked from one template interpreter: each is still
    a sandbox of its own, confined and limited as any other."""

    def setUp(self):
        super().setUp()
        self.w = self.worker("zy", *ROOTFS, "--pool", "0", "--slots", "4", "--log-level", "debug")
        wait_for(lambda: b"python sandboxes fork from a template interpreter" in self.w.text(), 20,
                 "the python template")

    def py(self, code, **kw):
        return self.run_job(code, plugin="python", **kw)

    def tearDown(self):
        try:
            if self.w.alive() and b"template is gone" not in self.w.text():
                jobs = self.w.text().count(b"started (python")
                self.assertGreaterEqual(self.w.text().count(b"python sandbox forked"), jobs,
                                        "every python job ran in a forked sandbox")
        finally:
            super().tearDown()

    def test_forked_job_is_confined(self):
        ex, out, err = self.py(
            "import os, sys, socket\n"
            "st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
            "print(os.getuid(), os.getgid(), os.getpid(), st['CapEff'].strip(), st['CapBnd'].strip(),\n"
            "      st['NoNewPrivs'].strip(), st['Seccomp'].strip())\n"
            "print(sorted(os.environ))\n"
            "print([m for m in sys.modules if 'ctypes' in m])\n"
            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
            "print(sorted(os.listdir('/proc/self/fd')))\n"
            "print(open('/proc/1/cmdline').read().split(chr(0))[:2])\n"
            "st = os.stat('/work/main.py')\n"
            "print(socket.gethostname(), os.listdir('/work'), os.listdir('/tmp'), st.st_uid, st.st_gid, oct(st.st_mode))\n"
            "try:\n"
            "    os.unshare(0) if hasattr(os, 'unshare') else os.setuid(0)\n"
            "    print('escalated')\n"
            "except OSError as e:\n"
            "    print('refused', e.errno)\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 80), timeout=2)\n"
            "    print('network')\n"
            "except OSError:\n"
            "    print('no network')\n",
            env={"ONLY": "this"})
        self.assertEqual(ex["status"], "ok", err)
        lines = out.decode().splitlines()
        self.assertEqual(lines[0], "1000 1000 2 0000000000000000 0000000000000000 1 2")
        self.assertEqual(lines[1], "['HOME', 'KILN_ATTEMPT', 'KILN_JOB_ID', 'LANG', 'ONLY', 'PATH', 'TMPDIR']")
        self.assertEqual(lines[2], "[]", "the zygote's own modules are not the job's")
        self.assertEqual(lines[3], "[1, 2]", "only the agent and the job in its pid namespace")
        self.assertEqual(lines[4], "['0', '1', '2', '3']", "stdio and listdir's own: nothing of the template's")
        self.assertEqual(lines[5], "['kiln-agent', '--adopt']")
        self.assertEqual(lines[6], "kiln ['main.py'] [] 1000 1000 0o100644", "the job's files are the job's")
        self.assertEqual(lines[7:], ["refused 1", "no network"])

    def test_two_forked_sandboxes_share_nothing(self):
        a = self.job("import os, socket, time\n"
                     "for p in ('/tmp/a', '/work/a', '/dev/shm/a'):\n"
                     "    open(p, 'w').write('secret')\n"
                     "s = socket.socket(socket.AF_UNIX); s.bind('\\0kiln-zygote-test'); s.listen()\n"
                     "print('ready', flush=True)\n"
                     "time.sleep(3)\n", plugin="python")
        self.submit(a)
        wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames(job_id=a["id"])), 20, "job A to be up")
        ex, out, err = self.py(
            "import os, socket\n"
            "print([os.path.exists(p) for p in ('/tmp/a', '/work/a', '/dev/shm/a')])\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            "    s.connect('\\0kiln-zygote-test'); print('reached A')\n"
            "except OSError:\n"
            "    print('A unreachable')\n"
            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n")
        self.assertEqual(ex["status"], "ok", err)
        self.assertEqual(out.decode().splitlines(), ["[False, False, False]", "A unreachable", "[1, 2]"])
        fa = self.wait_exit(a["id"])
        self.assertEqual(fa[-1]["status"], "ok")

    def test_forked_sandbox_limits_hold(self):
        ex, _, _ = self.py("b = bytearray(300 << 20)\nb[::4096] = b'x' * len(b[::4096])\n",
                           limits={"memory_mb": 64})
        self.assertEqual(ex["status"], "oom", ex)
        ex, _, _ = self.py("import time; time.sleep(10)", limits={"timeout_ms": 500})
        self.assertEqual(ex["status"], "timeout", ex)
        ex, out, _ = self.py("import os\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n"
                             "            import time; time.sleep(2); os._exit(0)\n        n += 1\n"
                             "except OSError:\n    pass\nprint(n)", limits={"pids": 10})
        self.assertEqual(ex["status"], "ok", ex)
        self.assertLess(int(out), 10, "the pids limit holds")

    def test_template_gone_jobs_go_on_and_it_comes_back(self):
        self.assertEqual(self.py("print(1)")[0]["status"], "ok")
        pids = zygotes()
        self.assertTrue(pids, "no template interpreter found")
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass  # a sandbox forked from the template, gone with it
        wait_for(lambda: b"template is gone" in self.w.text(), 10, "the worker to notice")
        ex, out, _ = self.py("print(2)")
        self.assertEqual((ex["status"], out), ("ok", b"2\n"), "a job without the template starts afresh")
        wait_for(lambda: self.w.text().count(b"python sandboxes fork from a template interpreter") >= 2, 20,
                 "the template to be back")
        ex, out, _ = self.py("print(3)")
        self.assertEqual((ex["status"], out), ("ok", b"3\n"))
        self.assertTrue(self.w.alive())

    def test_preloaded_modules_are_loaded_and_each_jobs_own(self):
        """--preload's modules are imported in the template (a job's import
        of them costs nothing), yet what one job does to them reaches no
        other job, and random is seeded afresh in each fork."""
        code = ("import sys\n"
                "print(all(m in sys.modules for m in ('typing', 'collections', 're', 'math', 'random', 'hashlib')))\n"
                "import math, random, typing\n"
                "print(math.pi, typing.List is not None, random.random())\n"
                "math.pi = 3\n"
                "typing.List = None\n"
                "random.seed(1)\n")
        outs = []
        for _ in range(3):
            ex, out, err = self.py(code)
            self.assertEqual(ex["status"], "ok", err)
            outs.append(out.decode().splitlines())
        self.assertEqual(outs[0][0], "True", "the default preload is imported in the template")
        for o in outs:
            self.assertEqual(o[1].split()[:2], [repr(math.pi), "True"], "a job saw another job's change")
        self.assertEqual(len({o[1].split()[2] for o in outs}), 3, "jobs drew the same random numbers")

    def test_a_jobs_own_modules_come_first_forked_and_afresh(self):
        """A job's modules beside main.py import, and shadow the standard
        library's (preloaded or not), the same in a forked sandbox and in
        one that starts python afresh; a data directory or file that is no
        module shadows nothing."""
        own = ("import helper, random, json, collections.abc\n"
               "print(helper.X, random.X, json.X, collections.abc.X, hasattr(json, 'dumps'))\n")
        files = {"helper.py": b"X = 0\n", "random.py": b"X = 1\n", "json.py": b"X = 2\n",
                 "collections/__init__.py": b"", "collections/abc.py": b"X = 3\n"}
        data = "import re, json\nprint(json.dumps([1]), re.sub('a', 'b', 'a'))\n"
        data_files = {"re/data.txt": b"not a package\n", "json": b"not a module\n"}
        for how in ("forked", "afresh"):
            if how == "afresh":
                self.w.stop()
                self.workers.remove(self.w)
                self.worker("afresh", *ROOTFS, "--pool", "0", "--no-zygote", "--log-level", "debug")
            ex, out, err = self.py(own, files=files)
            self.assertEqual((ex["status"], out), ("ok", b"0 1 2 3 False\n"), (how, err))
            ex, out, err = self.py(data, files=data_files)
            self.assertEqual((ex["status"], out), ("ok", b"[1] b\n"), (how, err))

    def test_preload_flag(self):
        self.w.stop()
        self.workers.remove(self.w)
        code = "import sys\nprint([m in sys.modules for m in ('typing', 'xml.dom.minidom', 'ctypes')])\n"
        for flag, want in (("", b"[False, False, False]\n"),
                           ("nosuchmod,ctypes,xml.dom.minidom", b"[False, True, True]\n")):
            w = self.worker("pl", *ROOTFS, "--pool", "0", "--preload", flag, "--log-level", "debug")
            wait_for(lambda: b"python sandboxes fork from a template interpreter" in w.text(), 20,
                     "the python template")
            ex, out, err = self.py(code)
            self.assertEqual((ex["status"], out), ("ok", want), err)
            if flag:
                self.assertIn(b"kiln: preload nosuchmod: ModuleNotFoundError", w.text(),
                              "a module the image lacks is said, and the rest preloaded")
                # a run whose end is checked refuses ctypes: from a template
                # that preloaded it, such a run starts afresh, with nothing
                # of the template's
                probe = "import sys\nprint('xml.dom.minidom' in sys.modules)\n"
                ex, out, err = self.py(probe, expect_end=True)
                self.assertEqual((ex["status"], out), ("ok", b"False\n"), err)
            w.stop()
            self.workers.remove(w)

    def test_no_zygote_flag(self):
        self.w.stop()
        self.workers.remove(self.w)
        w = self.worker("nz", *ROOTFS, "--pool", "0", "--no-zygote", "--log-level", "debug")
        ex, out, _ = self.py("print(4)")
        self.assertEqual((ex["status"], out), ("ok", b"4\n"))
        self.assertNotIn(b"template", w.text())


class ExecTemplate(KilnCase):
    """shell sandboxes forked from a template agent (no interpreter to
    share: the forked job process execs the job's program): each still a
    sandbox of its own, and nothing of one job reaches the next."""

    def setUp(self):
        super().setUp()
        self.w = self.worker("ex", *ROOTFS, "--pool", "0", "--slots", "2", "--log-level", "debug")
        wait_for(lambda: b"shell sandboxes fork from a template agent" in self.w.text(), 20,
                 "the shell template")

    def tearDown(self):
        try:
            if self.w.alive():
                jobs = self.w.text().count(b"started (shell")
                self.assertGreaterEqual(self.w.text().count(b"shell sandbox forked"), jobs,
                                        "every shell job ran in a forked sandbox")
        finally:
            super().tearDown()

    def test_forked_shell_job_is_confined(self):
        ex, out, err = self.run_job(
            "read -r st < /proc/self/status\n"
            "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$$/status | tr -s '\\t ' ' '\n"
            "echo uid $(id -u) gid $(id -g) pid $$\n"
            "echo pids /proc/[0-9]*\n"
            "echo fds /proc/$$/fd/*\n"
            "tr '\\0' ' ' < /proc/1/cmdline; echo\n"
            "env | cut -d= -f1 | sort | tr '\\n' ' '; echo\n"
            "cat /proc/self/cgroup\n",
            env={"ONLY": "this"})
        self.assertEqual(ex["status"], "ok", err)
        lines = out.decode().splitlines()
        self.assertEqual(lines[:4], ["CapEff: 0000000000000000", "CapBnd: 0000000000000000",
                                     "NoNewPrivs: 1", "Seccomp: 2"])
        self.assertEqual(lines[4], "uid 1000 gid 1000 pid 2")
        self.assertEqual(lines[5], "pids /proc/1 /proc/2", "only the agent and the job")
        # stdio, and the directory the glob itself is reading: nothing of the
        # template's, and not the pipe its execve would have said a failure on
        self.assertEqual(lines[6], "fds /proc/2/fd/0 /proc/2/fd/1 /proc/2/fd/2 /proc/2/fd/3")
        # PID 1 is the template's own agent, copied (never exec'd again):
        # what its command line says names no host path
        self.assertEqual(lines[7].split()[0], "kiln-agent")
        self.assertNotIn("/", lines[7], "no host path in PID 1's command line")
        self.assertEqual(lines[8].split(), ["HOME", "KILN_ATTEMPT", "KILN_JOB_ID", "LANG", "ONLY", "PATH", "PWD", "TMPDIR"])
        self.assertTrue(lines[9].endswith(":/"), "its cgroups are its root: " + lines[9])

    def test_nothing_of_one_job_reaches_the_next(self):
        a = self.job("for p in /tmp/a /work/a /dev/shm/a; do echo secret > $p; done\n"
                     "(setsid sleep 30 > /dev/null 2>&1 &)\n"
                     "trap '' TERM HUP\n"
                     "echo left\n")
        ex, out, _ = self.run_job(a["code"])
        self.assertEqual((ex["status"], out), ("ok", b"left\n"))
        ex, out, err = self.run_job(
            "for p in /tmp/a /work/a /dev/shm/a; do [ -e $p ] && echo found $p; done\n"
            "echo /proc/[0-9]*\n")
        self.assertEqual(ex["status"], "ok", err)
        self.assertEqual(out.decode().splitlines(), ["/proc/1 /proc/2"])
        # and on the host, the sleep that tried to outlive its job is gone
        host = subprocess.run(["pgrep", "-f", "^sleep 30$"], capture_output=True)
        self.assertEqual(host.stdout, b"", "a job's process outlived its sandbox")

    def test_a_timed_out_forked_job_still_reports_what_it_used(self):
        ex, _, _ = self.run_job("while :; do :; done", limits={"timeout_ms": 700})
        self.assertEqual(ex["status"], "timeout", ex)
        self.assertGreater(ex["cpu_ms"], 100, "its CPU time, told by its agent")
        # about its 700 ms: the agent's clock starts a little after the
        # worker's timer (ASan once reported 699)
        self.assertGreaterEqual(ex["wall_ms"], 600)


if __name__ == "__main__":
    main()
