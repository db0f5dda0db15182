"""Evaluation jobs: `tests` judged case by case (verdicts, compare modes,
CPU-time limits that hold on a busy worker), compiled plugins (c, cpp)
built once and run per case, stop_on_fail, tests_output, and the errors
a user can make. Each problem here is written for kiln, with the exact
verdict it must get."""
import time

from kilntest import KilnCase, main, rootfs_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()

C_SUM = r"""
#include <stdio.h>
int main(void) {
    long a, b;
    if (scanf("%ld %ld", &a, &b) != 2) return 2;
    printf("%ld\n", a + b);
    return 0;
}
"""
CPP_SORT = r"""
#include <algorithm>
#include <iostream>
#include <vector>
int main() {
    int n; std::cin >> n;
    std::vector<int> v(n);
    for (auto &x : v) std::cin >> x;
    std::sort(v.begin(), v.end());
    for (int i = 0; i < n; i++) std::cout << v[i] << (i + 1 < n ? ' ' : '\n');
}
"""
C_SQRT = r"""
#include <math.h>
#include <stdio.h>
int main(void) { double x; scanf("%lf", &x); printf("%.9f\n", sqrt(x)); return 0; }
"""
# each problem: (name, plugin, code, tests, extra job keys, expected job verdict, case verdicts)
PROBLEMS = [
    ("c sum, all pass", "c", C_SUM,
     [{"stdin": "1 2\n", "expect": {"stdout": "3\n"}},
      {"stdin": "-5 5", "expect": {"stdout": "0"}},
      {"stdin": "4000000000 1\n", "expect": {"stdout": "4000000001  \n\n\n"}}],
     {}, "accepted", ["accepted"] * 3),
    ("c sum, one wrong expectation", "c", C_SUM,
     [{"stdin": "1 2\n", "expect": {"stdout": "3\n"}},
      {"stdin": "2 2\n", "expect": {"stdout": "5\n"}}],
     {}, "wrong_answer", ["accepted", "wrong_answer"]),
    ("c reads nothing: exit 2 is a runtime error", "c", C_SUM,
     [{"stdin": "", "expect": {"stdout": "0\n"}}, {"stdin": "", "expect": {"exit": 2}}],
     {}, "runtime_error", ["runtime_error", "accepted"]),
    ("c does not compile", "c", "int main(void) { return undefined_name; }\n",
     [{"stdin": "", "expect": {"stdout": ""}}] * 2, {}, "compile_error", []),
    ("cpp sort", "cpp", CPP_SORT,
     [{"stdin": "5\n3 1 4 1 5\n", "expect": {"stdout": "1 1 3 4 5\n"}},
      {"stdin": "1\n7\n", "expect": {"stdout": "7"}}],
     {}, "accepted", ["accepted", "accepted"]),
    ("cpp loops forever: CPU time limit", "cpp",
     "int main() { volatile unsigned long x = 0; for (;;) x++; }\n",
     [{"stdin": "", "limits": {"cpu_ms": 300}}], {}, "time_limit", ["time_limit"]),
    ("c allocates too much: memory limit", "c",
     "#include <stdlib.h>\n#include <string.h>\nint main(void) { for (;;) { char *p = malloc(1 << 20);"
     " if (!p) return 3; memset(p, 1, 1 << 20); } }\n",
     [{"stdin": "", "limits": {"memory_mb": 64}}], {}, "memory_limit", ["memory_limit"]),
    ("c crashes: runtime error", "c",
     "#include <stdio.h>\nint main(void) { volatile int *p = 0; printf(\"%d\\n\", *p); return 0; }\n",
     [{"stdin": ""}], {}, "runtime_error", ["runtime_error"]),
    ("c prints too much: output limit", "c",
     "#include <stdio.h>\nint main(void) { for (;;) puts(\"yes yes yes yes\"); }\n",
     [{"stdin": "", "limits": {"output_bytes": 4096}}], {}, "output_limit", ["output_limit"]),
    ("c sqrt, passes only with float tolerance", "c", C_SQRT,
     [{"stdin": "2", "expect": {"stdout": "1.41421"}}, {"stdin": "1e6", "expect": {"stdout": "1000.0001"}}],
     {"compare": {"float": 1e-5}}, "accepted", ["accepted", "accepted"]),
    ("c sqrt, exact lines fail", "c", C_SQRT,
     [{"stdin": "2", "expect": {"stdout": "1.41421"}}], {}, "wrong_answer", ["wrong_answer"]),
    ("tokens ignore the layout", "python", "print(*input().split(), sep='\\n')",
     [{"stdin": "1  2 3", "expect": {"stdout": "1 2\n3"}}], {"compare": "tokens"}, "accepted", ["accepted"]),
    ("exact is exact", "python", "print('a ')",
     [{"stdin": "", "expect": {"stdout": "a\n"}}], {"compare": "exact"}, "wrong_answer", ["wrong_answer"]),
    ("stop_on_fail skips the rest", "python", "import sys; sys.exit(int(input()))",
     [{"stdin": "0"}, {"stdin": "1"}, {"stdin": "0"}, {"stdin": "0"}], {"stop_on_fail": True},
     "runtime_error", ["accepted", "runtime_error", "skipped", "skipped"]),
    ("deno, judged with no build", "deno-eval", "console.log(6 * 7)",
     [{"expect": {"stdout": "42"}}, {"expect": {"stdout": "41"}}], {}, "wrong_answer",
     ["accepted", "wrong_answer"]),
    ("cpp throws: runtime error", "cpp",
     "#include <stdexcept>\nint main() { throw std::runtime_error(\"no\"); }\n",
     [{"stdin": ""}], {}, "runtime_error", ["runtime_error"]),
    ("python without expectations: exit codes", "python", "import sys; sys.exit(int(input()))",
     [{"stdin": "0"}, {"stdin": "3", "expect": {"exit": 3}}], {}, "accepted", ["accepted", "accepted"]),
]


class EvalJobs(KilnCase):
    def setUp(self):
        super().setUp()
        self.w = self.worker("ev", *ROOTFS, "--pool", "0", "--slots", "2")

    def run_tests(self, plugin, code, tests, timeout=90, **kw):
        j = self.job(code, plugin=plugin, tests=tests, **kw)
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=timeout)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        cases = [f for f in fs if f["kind"] == "case"]
        return ex, cases, fs

    def test_every_problem_gets_its_verdict(self):
        for name, plugin, code, tests, extra, verdict, verdicts in PROBLEMS:
            with self.subTest(name):
                ex, cases, _ = self.run_tests(plugin, code, tests, **extra)
                self.assertEqual(ex["verdict"], verdict, (name, ex, cases))
                self.assertEqual([c["verdict"] for c in cases], verdicts, (name, cases))
                self.assertEqual([c["case"] for c in cases], list(range(len(verdicts))))
                self.assertEqual(ex["total"], len(tests))
                self.assertEqual(ex["passed"], verdicts.count("accepted"))
                self.assertEqual(ex["status"], "ok" if verdict == "accepted" else "error")
                if plugin in ("c", "cpp"):
                    self.assertEqual(ex["build"]["status"], "ok" if verdict != "compile_error" else "error")

    def test_wrong_answer_shows_where(self):
        ex, cases, _ = self.run_tests("python", "print('a'); print('b'); print('c')",
                                      [{"expect": {"stdout": "a\nB\nc\n"}}])
        c = cases[0]
        self.assertEqual((c["verdict"], c["line"], c["expected"], c["got"]), ("wrong_answer", 2, b"B", b"b"))
        ex, cases, _ = self.run_tests("python", "print(1, 2, 3.5)", [{"expect": {"stdout": "1 2 3.6"}}],
                                      compare={"float": 0.01})
        c = cases[0]
        self.assertEqual((c["token"], c["expected"], c["got"]), (3, b"3.6", b"3.5"))

    def test_a_flood_of_output_is_judged_without_keeping_it(self):
        # 20 MB against an expected "a": a wrong answer, judged on what is
        # kept (never the whole cap); whitespace after the answer is fine
        hwm = lambda: int(open("/proc/%d/status" % self.w.proc.pid).read().split("VmHWM:")[1].split()[0])
        before = hwm()
        ex, cases, _ = self.run_tests(
            "python", "import sys\nprint('a')\nsys.stdout.write(input() * 20000000)",
            [{"stdin": "x", "expect": {"stdout": "a"}, "limits": {"output_bytes": 64 << 20}},
             {"stdin": " ", "expect": {"stdout": "a"}, "limits": {"output_bytes": 64 << 20}}])
        self.assertEqual([c["verdict"] for c in cases], ["wrong_answer", "accepted"], cases)
        self.assertIn("goes on past", cases[0]["reason"])
        self.assertLess(hwm() - before, 16 * 1024, "the worker's peak memory grew: the 20 MB were kept")

    def test_compile_error_reports_the_compiler_and_runs_nothing(self):
        ex, cases, fs = self.run_tests("cpp", "int main() { return nope; }\n", [{"stdin": ""}] * 3)
        self.assertEqual((ex["status"], ex["verdict"], ex["passed"], ex["total"]),
                         ("error", "compile_error", 0, 3))
        self.assertIn(b"nope", ex["build"]["output"])
        self.assertIn(b"error", ex["build"]["output"])
        self.assertEqual(cases, [], "no case ran")
        self.assertFalse([f for f in fs if f["kind"] in ("stdout", "stderr")])

    def test_a_plain_c_job_builds_then_runs(self):
        ex, out, err = self.run_job(C_SUM, plugin="c", stdin=b"40 2\n", timeout=60)
        self.assertEqual((ex["status"], out), ("ok", b"42\n"), err)
        self.assertEqual(ex["build"]["status"], "ok")
        self.assertNotIn("verdict", ex)

    def test_a_c_job_with_runs_builds_once(self):
        j = self.job(C_SUM, plugin="c", runs=[{"stdin": "1 2"}, {"stdin": "3 4"}])
        self.submit(j)
        fs = wait_for(lambda: [f for f in self.frames(job_id=j["id"]) if f["kind"] == "exit" and "run" not in f]
                      and self.frames(job_id=j["id"]), 60, "the summary")
        outs = [(f["run"], f["data"]) for f in fs if f["kind"] == "stdout"]
        self.assertEqual(outs, [(0, b"3\n"), (1, b"7\n")])
        ex = [f for f in fs if f["kind"] == "exit"]
        self.assertEqual([e.get("run") for e in ex], [0, 1, None])
        self.assertEqual(ex[-1]["build"]["status"], "ok")
        self.assertEqual(self.w.text().count(b"its build"), 1, "built once")

    def test_cases_get_fresh_sandboxes_and_their_own_artifact_copy(self):
        # a case that scribbles over the program and leaves files behind;
        # the next case must see the program intact and /tmp, /work empty
        code = (r'#include <stdio.h>' "\n" r'#include <stdlib.h>' "\n"
                r'int main(void) { int n = 0; if (fopen("/tmp/left", "r")) n++; if (fopen("/work/left", "r")) n++;'
                r' fclose(fopen("/tmp/left", "w")); fclose(fopen("/work/left", "w"));'
                r' FILE *f = fopen("/work/prog", "w"); if (f) { fputs("broken", f); fclose(f); }'
                r' printf("%d\n", n); return 0; }' "\n")
        ex, cases, _ = self.run_tests("c", code, [{"expect": {"stdout": "0"}}] * 3)
        self.assertEqual([c["verdict"] for c in cases], ["accepted"] * 3, cases)

    def test_tests_output_streams_case_output_too(self):
        ex, cases, fs = self.run_tests("python", "print(input()); import sys; print('e', file=sys.stderr)",
                                       [{"stdin": "x", "expect": {"stdout": "x"}}, {"stdin": "y"}],
                                       tests_output=True)
        outs = [(f["run"], f["data"]) for f in fs if f["kind"] == "stdout"]
        self.assertEqual(outs, [(0, b"x\n"), (1, b"y\n")])
        ex, cases, fs = self.run_tests("python", "print(input())", [{"stdin": "x"}])
        self.assertEqual([f for f in fs if f["kind"] == "stdout"], [], "not streamed unless asked")

    def test_a_failing_case_shows_the_start_of_its_stderr(self):
        ex, cases, _ = self.run_tests("python", "raise ValueError('bad input here')", [{}])
        self.assertEqual(cases[0]["verdict"], "runtime_error")
        self.assertIn(b"ValueError: bad input here", cases[0]["stderr"])

    def test_bad_tests_are_rejected_with_a_reason(self):
        for tests, extra, want in (
                ([], {}, "must hold 1 to 1000"),
                ([{"expect": {"exit": "0"}}], {}, "tests[0].expect.exit"),
                ([{"limits": {"cpu_ms": 0}}], {}, "tests[0].limits.cpu_ms"),
                ([{"limits": {"memory_mb": 10 ** 6}}], {}, "tests[0].limits.memory_mb"),
                ([{}], {"compare": "fuzzy"}, "field 'compare'"),
                ([{}], {"compare": {"float": -1}}, "field 'compare'"),
                ([{}], {"stop_on_fail": 1}, "stop_on_fail"),
                ([{}], {"runs": [{}]}, "not both")):
            with self.subTest(want):
                ex, _, _ = self.run_tests("python", "pass", tests, **extra)
                self.assertEqual(ex["status"], "rejected", ex)
                self.assertIn(want, ex["reason"])
                self.assertEqual(ex["attempt"], 1)


class BuildLimits(KilnCase):
    def test_a_build_has_limits_of_its_own(self):
        # compile-time evaluation that would take minutes: the build's own
        # CPU limit (the operator's) ends it, and the job ends compile_error
        self.worker("bl", *ROOTFS, "--pool", "0", "--build-cpu-ms", "1500", "--build-timeout-ms", "20000")
        code = ("constexpr long f() { long s = 0; for (long i = 0; i < 200000; i++)"
                " for (long j = 0; j < 200000; j++) s += i ^ j; return s; }\n"
                "constexpr long x = f();\nint main() { return (int)(x & 1); }\n")
        t0 = time.time()
        j = self.job(code, plugin="cpp", tests=[{}])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=60)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        self.assertEqual((ex["verdict"], ex["build"]["status"]), ("compile_error", "killed"), ex)
        self.assertIn("cpu_ms", ex["reason"])
        self.assertGreaterEqual(ex["build"]["cpu_ms"], 1500)
        self.assertLess(time.time() - t0, 15)
        self.assertEqual([f for f in fs if f["kind"] == "case"], [])


class CpuLimitsUnderLoad(KilnCase):
    """Cases near their CPU limits get the same verdicts on an idle worker
    and on one whose other slots run CPU-bound jobs: the limit is CPU time,
    and the wall clock only a distant backstop."""

    NEAR = [  # (CPU to burn in ms, limit in ms, verdict)
        (150, 600, "accepted"), (350, 600, "accepted"),
        (900, 600, "time_limit"), (1500, 600, "time_limit"),
    ]
    BURN = ("import time\nn = int(input())\nt = time.process_time() + n / 1000\n"
            "while time.process_time() < t:\n    pass\n")

    def verdicts(self):
        tests = [{"stdin": str(ms), "limits": {"cpu_ms": limit}} for ms, limit, _ in self.NEAR]
        j = self.job(self.BURN, plugin="python", tests=tests)
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=120)
        return [f for f in fs if f["kind"] == "case"]

    def test_same_verdicts_idle_and_busy(self):
        self.worker("cpu", *ROOTFS, "--pool", "0", "--slots", "4")
        want = [v for _, _, v in self.NEAR]
        idle = self.verdicts()
        self.assertEqual([c["verdict"] for c in idle], want, idle)
        # three CPU-bound jobs on this 2-core machine's other slots
        hogs = [self.job("while :; do :; done", limits={"timeout_ms": 60000}) for _ in range(3)]
        for h in hogs:
            self.submit(h)
        w = self.workers[-1]
        wait_for(lambda: all(("job %s attempt 1: started" % h["id"]).encode() in w.text() for h in hogs),
                 20, "the three hogs to run")
        busy = self.verdicts()
        self.assertEqual([c["verdict"] for c in busy], want, busy)
        for c in busy:
            if c["verdict"] == "time_limit":
                self.assertIn("CPU time", c["reason"], "the CPU limit, not the wall clock")
        # the wall clock was slower under load, the CPU time was not
        slow = sum(c["wall_ms"] for c in busy[:2]) / max(1, sum(c["wall_ms"] for c in idle[:2]))
        self.assertGreater(slow, 1.2, "the worker was busy")
        for i, b in zip(idle[:2], busy[:2]):
            self.assertLess(abs(b["cpu_ms"] - i["cpu_ms"]), 150)

    def test_wall_clock_backstop(self):
        self.worker("wall", *ROOTFS, "--pool", "0", "--slots", "2")
        # sleeping uses no CPU: only the backstop (3 x 200 + 1000 ms) ends it
        t0 = time.time()
        j = self.job("import time; time.sleep(30)", plugin="python", tests=[{"limits": {"cpu_ms": 200}}])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=30)
        c = [f for f in fs if f["kind"] == "case"][0]
        self.assertEqual(c["verdict"], "time_limit")
        self.assertIn("wall clock", c["reason"])
        self.assertLess(time.time() - t0, 10)

    def test_children_nobody_waits_for_count(self):
        # the kernel reaps them at once, so no process's accounting keeps
        # their time: only the sandbox's cgroup does
        self.worker("unw", *ROOTFS, "--pool", "0", "--slots", "2")
        code = ("import os, signal, time\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
                "for _ in range(20):\n    if os.fork() == 0:\n        t = time.process_time() + 0.1\n"
                "        while time.process_time() < t: pass\n        os._exit(0)\n    time.sleep(0.15)\n")
        j = self.job(code, plugin="python", tests=[{"limits": {"cpu_ms": 800, "timeout_ms": 20000}}])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=60)
        c = [f for f in fs if f["kind"] == "case"][0]
        self.assertEqual(c["verdict"], "time_limit", c)
        self.assertGreaterEqual(c["cpu_ms"], 800, c)

    def test_threads_and_children_count(self):
        self.worker("thr", *ROOTFS, "--pool", "0", "--slots", "2")
        code = ("import os, time\n"
                "for _ in range(3):\n"
                "    if os.fork() == 0:\n"
                "        t = time.process_time() + 0.4\n"
                "        while time.process_time() < t: pass\n"
                "        os._exit(0)\n"
                "for _ in range(3): os.wait()\n")
        j = self.job(code, plugin="python", tests=[{"limits": {"cpu_ms": 800}}])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=60)
        c = [f for f in fs if f["kind"] == "case"][0]
        self.assertEqual(c["verdict"], "time_limit", "three children of 400 ms each pass 800 ms: %r" % c)


if __name__ == "__main__":
    main()
