#!/usr/bin/python3
"""What preloading heavy modules saves on an image, and what it costs.

One worker serves the default image and python-data; a job on python-data
imports pandas (and numpy with it) and makes a small frame. Measured in one
run, through a real redis-server, jobs one at a time:
  - "preload": the worker started with --image-preload python-data=numpy,pandas
    (python's template on python-data imports them before it forks);
  - "plain": the same worker without it (the template preloads the
    standard modules of --preload only);
  - "bare": python3 -I -c with the same code spawned directly from here (no
    sandbox, no queue): the floor;
latency (enqueue to exit frame) p50/p99, the job's CPU (its exit frame's
cpu_ms) and its sandbox's peak memory (max_rss_kb), and the template's own
memory (PSS and RSS of the template interpreter, from /proc) beside the
plain template's. The two worker modes alternate in rounds so that the
machine's drift falls on both.

  tests/bench/bench_images.py [--build DIR] [--n 30] [--rounds 2]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_python  # noqa: E402

debian_python.ensure(__file__)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import msgpack  # noqa: E402
from kilntest import read_env, wait_for  # noqa: E402
from benchlab import Lab  # noqa: E402

CODE = "import pandas as pd\nprint(len(pd.DataFrame({'a': [1, 2, 3]})))\n"
PRELOAD = "numpy,pandas"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def one(r):
    """One python-data job: (latency ms, cpu_ms, max_rss_kb, forked)."""
    jid = "b-" + uuid.uuid4().hex[:10]
    reply = "bench.reply." + jid
    code = "import sys\nforked = 'pandas' in sys.modules\n" + CODE + "print(forked)\n"
    t = time.perf_counter()
    r.xadd("kiln.jobs", {"job": msgpack.packb({"id": jid, "plugin": "python", "image": "python-data",
                                                "code": code, "reply_to": reply})})
    last, out = "0", b""
    while True:
        for _, entries in r.xread({reply: last}, block=10000) or []:
            for eid, f in entries:
                last = eid
                fr = msgpack.unpackb(f[b"frame"])
                if fr["kind"] == "stdout":
                    out += fr["data"]
                if fr["kind"] == "exit":
                    ms = (time.perf_counter() - t) * 1000
                    if fr["status"] != "ok":
                        raise SystemExit("bench job failed: %r" % fr)
                    r.delete(reply)
                    return ms, fr["cpu_ms"], fr["max_rss_kb"], out.split()[-1] == b"True"


def template_memory(image):
    """(PSS KiB, RSS KiB) of the python template serving `image`: the
    process with python's preload in its environment (KILN_ZYGOTE,
    KILN_PRELOAD) whose root is that image; None if none is up."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
            if not (any(e.startswith(b"KILN_ZYGOTE=") for e in env) and any(e.startswith(b"KILN_PRELOAD=") for e in env)):
                continue
            with open("/proc/%s/root/etc/kiln-image" % pid) as f:
                if not f.read().startswith("kiln runtime image %s " % image):
                    continue
            with open("/proc/%s/smaps_rollup" % pid) as f:
                kv = {l.split(":")[0]: int(l.split()[1]) for l in f if l.split()[1:2] and l.split()[1].isdigit()}
            return kv.get("Pss", 0), kv.get("Rss", 0)
        except OSError:
            continue
    return None


def bare(n):
    lat = []
    cmd = ["/usr/bin/python3", "-I", "-c", CODE]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        lat.append((time.perf_counter() - t) * 1000)
    return lat


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--n", type=int, default=30, help="jobs per mode per round")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["KILN_BUILD"] = build
    import kilntest
    kilntest.BIN = os.path.join(build, "bin")
    kv = read_env(os.path.join(build, "rootfs", "kiln.env"))
    dv = read_env(os.path.join(build, "images", "python-data", "kiln.env"))
    base = ["--rootfs", kv["KILN_ROOTFS"], "--rootfs-digest", kv["KILN_ROOTFS_DIGEST"],
            "--image", "python-data=" + dv["KILN_ROOTFS"], "--image-digest", "python-data=" + dv["KILN_ROOTFS_DIGEST"],
            "--pool", "2", "--slots", "2"]
    modes = {"preload": ["--image-preload", "python-data=" + PRELOAD], "plain": []}
    got = {m: {"lat": [], "cpu": [], "rss": [], "forked": 0} for m in modes}
    mem = {}
    with Lab("kiln-bench-") as lab:
        tmp, redis_srv, w = lab.tmp, lab.redis, None
        r = redis_srv.client
        for rnd in range(a.rounds):
            for mode in (modes if rnd % 2 == 0 else reversed(list(modes))):
                w = lab.worker("bench-%s-%d" % (mode, rnd), *base, *modes[mode])
                # the image's template starts with its first job: wait until
                # jobs fork from it (the job says whether pandas was there)
                one(r)
                wait_for(lambda: "python sandboxes fork" in w.text().decode(errors="replace").split(
                    "pools of image python-data")[-1], 30, "python-data's python template")
                for _ in range(5):
                    one(r)
                g = got[mode]
                for _ in range(a.n):
                    ms, cpu, rss, forked = one(r)
                    g["lat"].append(ms)
                    g["cpu"].append(cpu)
                    g["rss"].append(rss)
                    g["forked"] += forked
                    time.sleep(0.05)  # its pool refilled: a job that finds one warm
                if mode not in mem:
                    mem[mode] = template_memory("python-data")
                w.stop()
                w = None
        lat_bare = bare(a.n * a.rounds)

    n = a.n * a.rounds
    print("kiln preload benchmark: %d python-data jobs per mode (%d rounds), `import pandas` and a small frame"
          % (n, a.rounds))
    print("%-8s %9s %9s %10s %12s %8s" % ("mode", "p50 ms", "p99 ms", "cpu_ms p50", "peak KiB p50", "forked"))
    for mode in modes:
        g = got[mode]
        print("%-8s %9.1f %9.1f %10.0f %12.0f %5d/%d" % (mode, pct(g["lat"], 50), pct(g["lat"], 99),
                                                        statistics.median(g["cpu"]), statistics.median(g["rss"]),
                                                        g["forked"], n))
    print("%-8s %9.1f %9.1f %10s %12s %8s" % ("bare", pct(lat_bare, 50), pct(lat_bare, 99), "-", "-", "-"))
    p, q = pct(got["preload"]["lat"], 50), pct(got["plain"]["lat"], 50)
    print("preload saves %.1f ms a job (p50 %.1f against %.1f: %.2fx); bare python3 -I -c: %.1f ms"
          % (q - p, p, q, q / p if p else 0, pct(lat_bare, 50)))
    for mode in modes:
        if mem.get(mode):
            print("python-data's python template, %s: PSS %.1f MiB, RSS %.1f MiB (one per worker and image)"
                  % (mode, mem[mode][0] / 1024, mem[mode][1] / 1024))

if __name__ == "__main__":
    main()
