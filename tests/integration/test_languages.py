"""Every language of benchmarks, run as a user would: for each of java,
javascript, typescript, go, rust, csharp, php, ruby, lua, perl, r and bash,
a `tests` job whose program is right (several cases, a compiled language
built once), one that is wrong, a runtime error, a busy loop past its time,
a memory hog past its memory limit (oom: the JVM's, V8's, Go's and Mono's
heaps are sized to the sandbox, so the sandbox's limit is what stops them),
an output flood, a compile error (compiled languages), and a hostile
program that tries the network, a write outside /work and a process that
outlives its job. Then `kiln eval` over a MultiPL-E file spanning all of
them (plus python and cpp), with an honest, a wrong and an early-exiting
completion per language, each judged as MultiPL-E's rule and kiln's end
check say, with a per-language breakdown. The programs are in languages.py."""
import glob
import json
import os
import subprocess

from kilntest import BIN, BUILD, KilnCase, main, rootfs_args, skip_unless_jail_works, wait_for
import languages as L

skip_unless_jail_works()
ROOTFS = rootfs_args()
KILN = os.path.join(BIN, "kiln")
LANGS = ["java", "javascript", "typescript", "go", "rust", "csharp", "php", "ruby", "lua", "perl", "r", "bash"]
# an image built with KILN_IMAGE_LANGS has some of them: the others skip
with open(os.path.join(BUILD, "rootfs", "languages")) as f:
    IN_IMAGE = set(f.read().split())
CASES = [{"stdin": "1 2\n", "expect": {"stdout": "3\n"}}, {"stdin": "10 -4\n", "expect": {"stdout": "6\n"}},
         {"stdin": "100 200\n", "expect": {"stdout": "300\n"}}]


def sleepers():
    """Host processes that are `sleep 1234`: left behind by a job."""
    out = []
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(p, "rb") as f:
                if f.read() == b"sleep\x001234\x00":
                    out.append(p)
        except OSError:
            pass
    return out


class Languages(KilnCase):
    def setUp(self):
        super().setUp()
        self.worker("w1", *ROOTFS, "--pool", "0", "--max-timeout-ms", "120000")

    def submit_all(self, jobs):
        for j in jobs.values():
            self.submit(j)
        got = {}
        for name, j in jobs.items():
            fs = self.wait_exit(j["id"], timeout=240)
            got[name] = ([f for f in fs if f["kind"] == "exit"][-1],
                         b"".join(f["data"] for f in fs if f["kind"] == "stdout"),
                         b"".join(f["data"] for f in fs if f["kind"] == "stderr"))
        return got

    def check(self, lang):
        if lang not in IN_IMAGE:
            self.skipTest("%s is not in the runtime image (KILN_IMAGE_LANGS)" % lang)
        limits = {"timeout_ms": 60000}
        jobs = {
            "sum": self.job(L.SUM[lang], plugin=lang, tests=CASES, limits=limits),
            "wrong": self.job(L.WRONG[lang], plugin=lang, tests=CASES, limits=limits),
            "raise": self.job(L.RAISE[lang], plugin=lang, limits=limits),
            "loop": self.job(L.LOOP[lang], plugin=lang, limits={"timeout_ms": 4000}),
            "hog": self.job(L.HOG[lang], plugin=lang, limits={"memory_mb": 128, "timeout_ms": 60000}),
            "flood": self.job(L.FLOOD[lang], plugin=lang, limits={"output_bytes": 20000, "timeout_ms": 60000}),
            "hostile": self.job(L.HOSTILE[lang], plugin=lang, limits=limits),
        }
        if lang in L.COMPILED:
            jobs["broken"] = self.job(L.BROKEN[lang], plugin=lang, tests=CASES, limits=limits)
        got = self.submit_all(jobs)
        ex, out, err = got["sum"]
        self.assertEqual((ex["status"], ex.get("verdict"), ex.get("passed")), ("ok", "accepted", 3), (lang, ex, err))
        if lang in L.COMPILED:
            self.assertEqual(ex["build"]["status"], "ok", ex)  # built once, for the three cases
        ex, out, err = got["wrong"]
        self.assertEqual((ex.get("verdict"), ex.get("passed")), ("wrong_answer", 0), (lang, ex))
        ex, out, err = got["raise"]
        self.assertEqual(ex["status"], "error", (lang, ex, err))
        self.assertNotEqual(ex["code"], 0)
        self.assertIn(b"boom", err, lang)
        self.assertEqual(got["loop"][0]["status"], "timeout", (lang, got["loop"][0]))
        ex = got["hog"][0]
        self.assertEqual(ex["status"], "oom", (lang, ex, got["hog"][2][-2000:]))
        self.assertEqual(got["flood"][0]["status"], "output_limit", (lang, got["flood"][0]))
        self.assertEqual(len(got["flood"][1]), 20000, lang)
        ex, out, err = got["hostile"]
        self.assertNotIn(b":ok", out, (lang, out, err))
        self.assertIn(b"write:no", out, (lang, out, err))
        if lang in L.COMPILED:
            ex, out, err = got["broken"]
            self.assertEqual((ex.get("verdict"), ex["build"]["status"]), ("compile_error", "error"), (lang, ex))
            self.assertTrue(ex["build"]["output"], ex)
        wait_for(lambda: not sleepers(), 10, "no process of %s's hostile job left on the host" % lang)

    def test_java(self):
        self.check("java")

    def test_javascript(self):
        self.check("javascript")

    def test_typescript(self):
        self.check("typescript")

    def test_go(self):
        self.check("go")

    def test_rust(self):
        self.check("rust")

    def test_csharp(self):
        self.check("csharp")

    def test_php(self):
        self.check("php")

    def test_ruby(self):
        self.check("ruby")

    def test_lua(self):
        self.check("lua")

    def test_perl(self):
        self.check("perl")

    def test_r(self):
        self.check("r")

    def test_bash(self):
        self.check("bash")

    def test_the_files_name_rules_hold(self):
        if not {"java", "go", "javascript"} <= IN_IMAGE:
            self.skipTest("java, go or javascript is not in the runtime image (KILN_IMAGE_LANGS)")
        # a Java public class of any name; a Go test file; ES modules
        java = "public class Solver {\n  public static void main(String[] a) {\n    System.out.println(\"solver \" + a[0]);\n  }\n}\n"
        gotest = ("package calc_test\n\nimport \"testing\"\n\nfunc TestSum(t *testing.T) {\n"
                  "\tif 1+1 != 2 {\n\t\tt.Fatal(\"no\")\n\t}\n}\n")
        esm = "import { strict as assert } from 'node:assert';\nassert.equal(1 + 1, 2);\nexport const x = 1;\nconsole.log('esm ok');\n"
        got = self.submit_all({
            "java": self.job(java, plugin="java", args=["x"], limits={"timeout_ms": 60000}),
            "gotest": self.job(gotest, plugin="go", limits={"timeout_ms": 60000}),
            "esm": self.job(esm, plugin="javascript"),
        })
        self.assertEqual((got["java"][0]["status"], got["java"][1]), ("ok", b"solver x\n"), got["java"])
        self.assertEqual((got["gotest"][0]["status"], got["gotest"][1]), ("ok", b"PASS\n"), got["gotest"])
        self.assertEqual((got["esm"][0]["status"], got["esm"][1]), ("ok", b"esm ok\n"), got["esm"])


class MultiplE(KilnCase):
    def test_kiln_eval_over_every_language(self):
        if set(LANGS) - IN_IMAGE:
            self.skipTest("the runtime image lacks %s (KILN_IMAGE_LANGS)" % ", ".join(sorted(set(LANGS) - IN_IMAGE)))
        self.worker("w1", *ROOTFS, "--pool", "0")
        problems = os.path.join(self.tmp, "problems.jsonl")
        samples = os.path.join(self.tmp, "samples.jsonl")
        expect = {}
        with open(problems, "w") as p, open(samples, "w") as s:
            for code, (prompt, tests, honest, wrong, cheat) in L.MULTIPLE.items():
                p.write(json.dumps({"name": "HumanEval_53_add", "language": L.SPELLED.get(code, code),
                                    "prompt": prompt, "tests": tests, "stop_tokens": ["\nqqq_never"]}) + "\n")
                key = "%s/HumanEval_53_add" % code
                more = [("cheat", c) for c in L.MORE_CHEATS.get(code, [])]
                for kind, completion in [("honest", honest), ("wrong", wrong), ("cheat", cheat)] + more:
                    if completion is None:
                        continue
                    s.write(json.dumps({"task_id": key, "completion": completion}) + "\n")
                    # bash proves no end: its early exit passes, as under MultiPL-E
                    expect.setdefault(key, []).append(kind == "honest" or (kind == "cheat" and code == "sh"))
        out = os.path.join(self.tmp, "results.jsonl")
        r = subprocess.run([KILN, "eval", "--problems", problems, "--samples", samples, "--out", out, "--k", "1",
                            "--timeout-ms", "60000", "--concurrency", "4"], capture_output=True, text=True,
                           timeout=1500, env=dict(os.environ, KILN_REDIS=self.redis.url))
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("sh: its plugin (bash) cannot prove a program ran to its end", r.stderr)
        with open(out) as f:
            rows = [json.loads(line) for line in f]
        got = {}
        for x in rows:
            if "sample" in x:
                got.setdefault(x["task_id"], {})[x["sample"]] = x
        for key, want in expect.items():
            self.assertEqual([got[key][i]["passed"] for i in range(len(want))], want,
                             (key, [got[key][i]["result"] for i in range(len(want))]))
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(set(summary["languages"]), set(L.MULTIPLE))
        self.assertAlmostEqual(summary["languages"]["java"]["pass@1"], 1 / 4, places=9)  # honest, wrong, two cheats
        self.assertAlmostEqual(summary["languages"]["go"]["pass@1"], 1 / 2, places=9)


if __name__ == "__main__":
    main()
