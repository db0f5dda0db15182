#!/usr/bin/python3
"""kiln latency and throughput benchmark.

Measures, in one run on this machine, through a real redis-server:
  - end-to-end latency (XADD of the job -> exit frame read) p50/p99, jobs one
    at a time, for shell, python and deno-eval, from a warm pool and cold;
  - sustained jobs/s with a burst of jobs and --slots = CPUs;
  - for python, also "exec": warm pools with --no-zygote (each sandbox
    starts its own interpreter instead of forking the template's);
and beside them the floor measured in the same run: the bare interpreter
spawned directly from this process (no sandbox, no queue).

Prints a table, writes bench.json and, when gnuplot is installed, bench.png
into the output directory.

  tests/bench/bench_latency.py [--build DIR] [--out DIR] [--n 100] [--burst 200]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
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

CODE = {"shell": "echo 1", "python": "print(1)", "deno-eval": "console.log(1)"}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def floor_cmd(plugin, image):
    if plugin == "shell":
        return [image + "/usr/bin/dash", "-c", "echo 1"]
    if plugin == "python":
        return ["/usr/bin/python3", "-I", "-c", "print(1)"]
    return [image + "/usr/local/bin/deno", "eval", "console.log(1)"]


def floor(plugin, image, n, burst, cpus):
    env = dict(os.environ, DENO_DIR=tempfile.mkdtemp(prefix="deno-"), NO_COLOR="1")
    cmd = floor_cmd(plugin, image)
    run = lambda _: subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, check=True)
    run(0)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        run(0)
        lat.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    with ThreadPoolExecutor(cpus) as ex:
        list(ex.map(run, range(burst)))
    return lat, burst / (time.perf_counter() - t)


class Bench:
    def __init__(self, r, tag):
        self.r, self.tag = r, tag

    def one(self, plugin):
        jid = "b-" + uuid.uuid4().hex[:10]
        reply = "bench.reply." + jid
        t = time.perf_counter()
        self.r.xadd("kiln.jobs", {"job": msgpack.packb(
            {"id": jid, "plugin": plugin, "code": CODE[plugin], "reply_to": reply})})
        last = "0"
        while True:
            for _, entries in self.r.xread({reply: last}, block=5000) or []:
                for eid, f in entries:
                    last = eid
                    fr = msgpack.unpackb(f[b"frame"])
                    if fr["kind"] == "exit":
                        if fr["status"] != "ok":
                            raise SystemExit("bench job failed: %r" % fr)
                        self.r.delete(reply)
                        return (time.perf_counter() - t) * 1000

    def burst(self, plugin, n):
        reply = "bench.burst." + uuid.uuid4().hex[:8]
        pipe = self.r.pipeline()
        for i in range(n):
            pipe.xadd("kiln.jobs", {"job": msgpack.packb(
                {"id": "%s-%d" % (reply, i), "plugin": plugin, "code": CODE[plugin], "reply_to": reply})})
        t = time.perf_counter()
        pipe.execute()
        done, last = 0, "0"
        while done < n:
            for _, entries in self.r.xread({reply: last}, block=10000) or []:
                for eid, f in entries:
                    last = eid
                    if msgpack.unpackb(f[b"frame"])["kind"] == "exit":
                        done += 1
        secs = time.perf_counter() - t
        self.r.delete(reply)
        return n / secs


def plot(rows, out):
    """Draw the p50 latencies of `rows` (warm, cold and floor per plugin) as
    bench.png in `out` with gnuplot; returns its path, or None without
    gnuplot."""
    if not shutil.which("gnuplot"):
        return None
    dat = os.path.join(out, "bench.dat")
    with open(dat, "w") as fh:
        # a comment: as a data line, the header became an empty cluster
        # that left a third of the plot blank left of the bars
        fh.write("# plugin warm cold floor\n")
        for plugin in CODE:
            v = {r["mode"]: r["p50"] for r in rows if r["plugin"] == plugin}
            fh.write("%s %.2f %.2f %.2f\n" % (plugin, v["warm"], v["cold"], v["floor"]))
    png = os.path.join(out, "bench.png")
    script = ("set terminal png size 800,480; set output '%s';"
              "set title 'kiln end-to-end latency p50 (enqueue to exit frame), beside a bare spawn';"
              "set ylabel 'ms'; set style data histograms; set style histogram clustered gap 1;"
              "set style fill solid 0.8 border -1; set key top left; set yrange [0:*];"
              "set xrange [-0.6:%d.6]; set offsets 0, 0, graph 0.25, 0;"
              "plot '%s' using 2:xtic(1) title 'kiln warm', '' using 3 title 'kiln cold',"
              " '' using 4 title 'bare spawn (floor)'") % (png, len(CODE) - 1, dat)
    subprocess.run(["gnuplot", "-e", script], check=True)
    return png


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--burst", type=int, default=200)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["KILN_BUILD"] = build
    import kilntest
    kilntest.BIN = os.path.join(build, "bin")
    out = os.path.abspath(a.out or os.path.join(build, "bench"))
    os.makedirs(out, exist_ok=True)
    kv = read_env(os.path.join(build, "rootfs", "kiln.env"))
    rootfs = ["--rootfs", kv["KILN_ROOTFS"], "--rootfs-digest", kv["KILN_ROOTFS_DIGEST"]]
    cpus = os.cpu_count() or 2
    rows = []
    with Lab("kiln-bench-") as lab:
        tmp, redis_srv, w = lab.tmp, lab.redis, None
        warm = str(max(4, cpus * 2))
        # "exec": warm pools whose python starts afresh in each sandbox
        # (--no-zygote), as before python sandboxes were forked
        for mode, pool, extra, plugins in (("warm", warm, [], CODE), ("cold", "0", [], CODE),
                                           ("exec", warm, ["--no-zygote"], ["python"])):
            w = lab.worker("bench-" + mode, *rootfs, "--pool", pool,
                           "--slots", str(cpus), *extra)
            time.sleep(1.5)  # let the pools fill
            b = Bench(redis_srv.client, mode)
            for plugin in plugins:
                for _ in range(5):
                    b.one(plugin)  # warm up caches
                lat = []
                for _ in range(a.n):
                    lat.append(b.one(plugin))
                    if pool != "0":
                        time.sleep(0.03)  # latency of a job that finds its pool full
                rate = b.burst(plugin, a.burst)
                rows.append({"plugin": plugin, "mode": mode, "p50": pct(lat, 50), "p99": pct(lat, 99),
                             "jobs_s": rate})
            w.stop()
            w = None
        for plugin in CODE:
            # the bare interpreter runs from the image tree (the squashfs is a file)
            lat, rate = floor(plugin, kv.get("KILN_ROOTFS_TREE", kv["KILN_ROOTFS"]), a.n, a.burst, cpus)
            rows.append({"plugin": plugin, "mode": "floor", "p50": pct(lat, 50), "p99": pct(lat, 99),
                         "jobs_s": rate})

    floor_of = {r["plugin"]: r for r in rows if r["mode"] == "floor"}
    print("kiln benchmark: %d sequential jobs for latency, a burst of %d for throughput, %d CPUs"
          % (a.n, a.burst, cpus))
    print("%-10s %-6s %9s %9s %9s   %s" % ("plugin", "mode", "p50 ms", "p99 ms", "jobs/s", "vs floor (bare spawn)"))
    for r in rows:
        f = floor_of[r["plugin"]]
        rel = "" if r["mode"] == "floor" else "p50 %+.1f ms, %.2fx jobs/s" % (r["p50"] - f["p50"], r["jobs_s"] / f["jobs_s"])
        print("%-10s %-6s %9.2f %9.2f %9.1f   %s" % (r["plugin"], r["mode"], r["p50"], r["p99"], r["jobs_s"], rel))
    # the throughput issue's targets, each beside what this run measured
    got = {(r["plugin"], r["mode"]): r for r in rows}
    for plugin, target in (("python", 3.0), ("shell", 2.0)):
        p50 = got[(plugin, "warm")]["p50"]
        print("target: %s warm p50 <= %.0f ms: %.2f ms, %s" % (plugin, target, p50, "met" if p50 <= target else "MISSED"))
    x = got[("deno-eval", "warm")]["jobs_s"] / floor_of["deno-eval"]["jobs_s"]
    print("target: deno-eval warm jobs/s >= 1.5x a bare `deno eval` loop: %.2fx, %s" % (x, "met" if x >= 1.5 else "MISSED"))
    # issue 30's: a warm python job end to end in at most half a bare
    # `python3 -c` spawn's time (tests/bench/bench_budget.py: where it goes)
    x = got[("python", "warm")]["p50"] / floor_of["python"]["p50"]
    print("target: python warm p50 <= 0.5x a bare `python3 -c` spawn's: %.2fx (%.2f ms beside %.2f), %s"
          % (x, got[("python", "warm")]["p50"], floor_of["python"]["p50"], "met" if x <= 0.5 else "MISSED"))
    print("where a target is missed, docs/benchmarks.md (Batch evaluation) has the profile of what is left")
    with open(os.path.join(out, "bench.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    png = plot(rows, out)
    if png:
        print("plot: %s" % png)
    print("figures: %s" % os.path.join(out, "bench.json"))


if __name__ == "__main__":
    main()
