#!/usr/bin/python3
"""Every language of benchmarks, timed beside its bare toolchain in the
same run, through a real redis-server and the jail:

  - interpreted (javascript, php, ruby, lua, perl, r): end-to-end p50 of
    a one-line program, jobs one at a time, and jobs/s over a burst with
    --slots = CPUs, from a warm pool (where the plugin has a warm start)
    or a template-forked cold sandbox; beside a bare spawn of the same
    interpreter on the same program (`node main.js`, `ruby main.rb`, ...),
    one at a time and a burst on as many threads as CPUs;
  - compiled (c, cpp, go, rust, java, csharp, typescript): one `tests` job
    with 10 cases (two numbers in, their sum out): its build's wall time
    beside the bare compiler's on the same source, and each case's wall
    time as the agent measured it beside a bare exec of the artifact the
    bare compiler made (java: p50 per case beside a bare `java` run).

  tests/bench/bench_languages.py [--build DIR] [--n 40] [--burst 60] [--only java,go]

Prints one table, writes languages.json into build/bench.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_python  # noqa: E402

debian_python.ensure(__file__)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import msgpack  # noqa: E402
from kilntest import read_env  # noqa: E402
from benchlab import Lab  # noqa: E402
import languages as L  # noqa: E402

JDK = "/usr/lib/jvm/java-17-openjdk-amd64/bin/"

# a one-line program per interpreter, and its bare run (the file, then argv)
INTERPRETED = {
    "javascript": ("console.log(1)\n", "main.js", ["/usr/bin/node", "{f}"]),
    "php": ("<?php echo 1, \"\\n\";\n", "main.php", ["/usr/bin/php8.2", "{f}"]),
    "ruby": ("puts 1\n", "main.rb", ["/usr/bin/ruby3.1", "{f}"]),
    "lua": ("print(1)\n", "main.lua", ["/usr/bin/lua5.4", "{f}"]),
    "perl": ("print 1, \"\\n\";\n", "main.pl", ["/usr/bin/perl", "{f}"]),
    "r": ("cat(1, '\\n')\n", "main.R", ["/usr/bin/Rscript", "{f}"]),
}

C_SUM = "#include <stdio.h>\nint main(void) { long a, b; scanf(\"%ld %ld\", &a, &b); printf(\"%ld\\n\", a + b); }\n"
CPP_SUM = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }\n"
# the source, its file, the bare build (in the directory), the bare run
COMPILED = {
    "c": (C_SUM, "main.c", [["/usr/bin/gcc", "-O2", "-o", "prog", "main.c", "-lm"]], ["./prog"]),
    "cpp": (CPP_SUM, "main.cpp", [["/usr/bin/g++", "-O2", "-o", "prog", "main.cpp", "-lm"]], ["./prog"]),
    "go": (L.SUM["go"], "main.go", [["/usr/lib/go-1.19/bin/go", "build", "-o", "prog", "main.go"]], ["./prog"]),
    "rust": (L.SUM["rust"], "main.rs", [["/usr/bin/rustc", "--edition", "2021", "-O", "-C", "debuginfo=0", "-C",
                                        "strip=symbols", "-o", "prog", "main.rs"]], ["./prog"]),
    "java": (L.SUM["java"], "Main.java", [[JDK + "javac", "-d", "classes", "Main.java"],
                                          [JDK + "jar", "cf", "prog.jar", "-C", "classes", "."]],
             [JDK + "java", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Xshare:auto", "-cp", "prog.jar", "Main"]),
    "csharp": (L.SUM["csharp"], "main.cs", [["/usr/bin/mcs", "-nologo", "-out:prog.exe", "main.cs"]],
               ["/usr/bin/mono", "prog.exe"]),
    "typescript": (L.SUM["typescript"], "main.ts",
                   [["/usr/bin/node", "/usr/share/nodejs/typescript/lib/tsc.js", "--target", "esnext", "--module",
                     "commonjs", "--skipLibCheck", "main.ts"]], ["/usr/bin/node", "main.js"]),
}
CASES = [{"stdin": "%d %d\n" % (i, 2 * i), "expect": {"stdout": "%d\n" % (3 * i)}} for i in range(10)]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def timed(cmd, cwd, stdin=b""):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": cwd, "GOCACHE": cwd + "/.gocache", "GOPATH": cwd + "/go",
                        "GO111MODULE": "off", "LANG": "C.UTF-8"})
    return (time.perf_counter() - t) * 1000


class Client:
    def __init__(self, r):
        self.r = r

    def frames(self, job):
        reply = "bench.reply." + job["id"]
        job = dict(job, reply_to=reply)
        t = time.perf_counter()
        self.r.xadd("kiln.jobs", {"job": msgpack.packb(job)})
        got, last = [], "0"
        while True:
            for _, entries in self.r.xread({reply: last}, block=60000) or []:
                for eid, f in entries:
                    last = eid
                    fr = msgpack.unpackb(f[b"frame"])
                    got.append(fr)
                    if fr["kind"] == "exit":
                        self.r.delete(reply)
                        return (time.perf_counter() - t) * 1000, got

    def one(self, plugin, code):
        ms, got = self.frames({"id": "b-" + uuid.uuid4().hex[:10], "plugin": plugin, "code": code})
        if got[-1]["status"] != "ok":
            raise SystemExit("bench job failed: %r" % got[-1])
        return ms

    def burst(self, plugin, code, n):
        reply = "bench.burst." + uuid.uuid4().hex[:8]
        pipe = self.r.pipeline()
        for i in range(n):
            pipe.xadd("kiln.jobs", {"job": msgpack.packb({"id": "%s-%d" % (reply, i), "plugin": plugin, "code": code,
                                                          "reply_to": reply})})
        t = time.perf_counter()
        pipe.execute()
        done, last = 0, "0"
        while done < n:
            for _, entries in self.r.xread({reply: last}, block=60000) or []:
                for eid, f in entries:
                    last = eid
                    if msgpack.unpackb(f[b"frame"])["kind"] == "exit":
                        done += 1
        secs = time.perf_counter() - t
        self.r.delete(reply)
        return n / secs


def bare_interpreter(lang, n, burst, cpus, tmp):
    code, name, cmd = INTERPRETED[lang]
    d = os.path.join(tmp, "bare-" + lang)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "w") as f:
        f.write(code)
    argv = [a.format(f=os.path.join(d, name)) for a in cmd]
    timed(argv, d)
    lat = [timed(argv, d) for _ in range(n)]
    t = time.perf_counter()
    with ThreadPoolExecutor(cpus) as ex:
        list(ex.map(lambda _: timed(argv, d), range(burst)))
    return pct(lat, 50), burst / (time.perf_counter() - t)


def bare_compiled(lang, tmp):
    code, name, builds, run = COMPILED[lang]
    d = os.path.join(tmp, "bare-" + lang)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "w") as f:
        f.write(code)
    for b in builds:  # once, to have the toolchain's files in the page cache
        timed(b, d)
    # then as kiln builds: a fresh build cache (go's), no classes of before
    for left in ("classes", ".gocache"):
        shutil.rmtree(os.path.join(d, left), ignore_errors=True)
    build = sum(timed(b, d) for b in builds)
    case = [timed(run, d, c["stdin"].encode()) for c in CASES]
    return build, statistics.median(case)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--burst", type=int, default=60)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["KILN_BUILD"] = build
    import kilntest
    kilntest.BIN = os.path.join(build, "bin")
    only = set(a.only.split(",")) if a.only else None
    out = os.path.join(build, "bench")
    os.makedirs(out, exist_ok=True)
    kv = read_env(os.path.join(build, "rootfs", "kiln.env"))
    rootfs = ["--rootfs", kv["KILN_ROOTFS"], "--rootfs-digest", kv["KILN_ROOTFS_DIGEST"]]
    cpus = os.cpu_count() or 2
    rows = []
    with Lab("kiln-bench-lang-") as lab:
        tmp, redis_srv, w = lab.tmp, lab.redis, None
        w = lab.worker("bench-lang", *rootfs, "--pool", str(max(4, cpus * 2)),
                       "--slots", str(cpus), "--max-timeout-ms", "120000")
        time.sleep(3)  # let the pools fill
        c = Client(redis_srv.client)
        for lang, (code, _, _) in INTERPRETED.items():
            if only and lang not in only:
                continue
            for _ in range(3):
                c.one(lang, code)
            lat = []
            for _ in range(a.n):
                lat.append(c.one(lang, code))
                time.sleep(0.03)  # the pool refills between jobs, as between a user's
            rate = c.burst(lang, code, a.burst)
            bp50, brate = bare_interpreter(lang, a.n, a.burst, cpus, tmp)
            rows.append({"lang": lang, "kind": "interpreted", "p50": pct(lat, 50), "jobs_s": rate,
                         "bare_p50": bp50, "bare_jobs_s": brate})
        for lang, (code, _, _, _) in COMPILED.items():
            if only and lang not in only:
                continue
            c.frames({"id": "b-" + uuid.uuid4().hex[:10], "plugin": lang, "code": code, "tests": CASES[:1],
                      "limits": {"timeout_ms": 60000}})  # a first build warms the image's pages
            ms, got = c.frames({"id": "b-" + uuid.uuid4().hex[:10], "plugin": lang, "code": code, "tests": CASES,
                                "limits": {"timeout_ms": 60000}})
            ex = got[-1]
            if ex.get("verdict") != "accepted":
                raise SystemExit("bench job failed: %r" % ex)
            cases = [f["wall_ms"] for f in got if f["kind"] == "case"]
            bbuild, bcase = bare_compiled(lang, tmp)
            rows.append({"lang": lang, "kind": "compiled", "build_ms": ex["build"]["wall_ms"], "case_p50": pct(cases, 50),
                         "job_ms": ms, "bare_build_ms": bbuild, "bare_case_ms": bcase})

    print("kiln languages benchmark, %d CPUs, jail backend; bare = the same toolchain run directly, same run" % cpus)
    print("%-11s %9s %9s %8s %9s   %s" % ("interpreted", "p50 ms", "jobs/s", "bare p50", "bare j/s", "kiln vs bare"))
    for r in rows:
        if r["kind"] == "interpreted":
            print("%-11s %9.1f %9.1f %8.1f %9.1f   %.2fx jobs/s" % (r["lang"], r["p50"], r["jobs_s"], r["bare_p50"],
                                                                  r["bare_jobs_s"], r["jobs_s"] / r["bare_jobs_s"]))
    print("%-11s %9s %9s %9s %9s %9s   %s" % ("compiled", "build ms", "bare", "case p50", "bare exec", "10 cases",
                                             "case vs bare exec"))
    for r in rows:
        if r["kind"] == "compiled":
            print("%-11s %9.0f %9.0f %9.1f %9.1f %9.0f   %.2fx" % (
                r["lang"], r["build_ms"], r["bare_build_ms"], r["case_p50"], r["bare_case_ms"], r["job_ms"],
                r["case_p50"] / r["bare_case_ms"]))
    with open(os.path.join(out, "languages.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    print("figures: %s" % os.path.join(out, "languages.json"))


if __name__ == "__main__":
    main()
