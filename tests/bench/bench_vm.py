#!/usr/bin/python3
"""kiln microVM benchmark: what a QEMU microvm sandbox costs here, beside the
jail measured in the same run, through a real redis-server.

For each of jail, qemu booting every VM (--vm-cold) and qemu restoring VMs
from the snapshot:
  - sandbox ready: spawn -> agent ready (-> interpreter started, for python),
    as the worker's pool logs it for every refill;
  - memory per idle warm sandbox: RSS and PSS (PSS splits pages shared
    among VMs, such as the snapshot's guest RAM, between them);
  - end to end (XADD -> exit frame), shell `echo 1` and python `print(1)`,
    from a full pool (warm) and with no pool (cold).

Targets under TCG (no KVM): a warm VM ready <= 300 ms, <= 80 MB RSS per
warm VM, a shell job end to end <= 2 s cold.

  tests/bench/bench_vm.py [--build DIR] [--n 10]
"""
import argparse
import glob
import os
import re
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_python  # noqa: E402

debian_python.ensure(__file__)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from bench_latency import Bench, pct  # noqa: E402
from kilntest import Redis, Worker, read_env, wait_for  # noqa: E402

PLUGINS = ["shell", "python"]


def mem_of(pids):
    """RSS and PSS (MiB) of each pid, from smaps_rollup."""
    out = []
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                t = f.read()
        except OSError:
            continue
        rss = int(re.search(r"^Rss:\s+(\d+)", t, re.M).group(1)) / 1024
        pss = int(re.search(r"^Pss:\s+(\d+)", t, re.M).group(1)) / 1024
        out.append((rss, pss))
    return out


def children(pid):
    kids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.split("/")[2]))
    return kids


def tree(pid):
    out = [pid]
    for k in children(pid):
        out += tree(k)
    return out


def sandbox_mem(worker, backend):
    """Per sandbox (a jail's agent and what it started; one QEMU): RSS, PSS."""
    per = []
    for kid in children(worker.proc.pid):
        try:
            with open("/proc/%d/comm" % kid) as f:
                comm = f.read()
        except OSError:
            continue  # it ended (a job's sandbox) since the listing
        if backend == "qemu" and not comm.startswith("qemu"):
            continue
        m = mem_of(tree(kid))
        if m:
            per.append((sum(r for r, _ in m), sum(p for _, p in m)))
    return per


def ready_times(worker, plugin):
    pat = re.compile(rb"pool %s: sandbox warm in (\d+) ms" % plugin.encode())
    return [int(x) for x in pat.findall(worker.text())]


def run_mode(tmp, srv, name, args, n, plugin_dir):
    row = {"mode": name}
    common = ["--plugin-dir", plugin_dir, "--slots", "1", "--log-level", "debug",
              "--state-dir", os.path.join(tmp, "state-" + name)]
    w = Worker(tmp, srv.url, "bench-" + name, *args, *common, "--pool", "1")
    try:
        if "qemu" in name and "--vm-cold" not in args:
            wait_for(lambda: b"qemu: snapshot ready" in w.text(), 180, "the snapshot")
        b = Bench(srv.client, name)
        for plugin in PLUGINS:
            wait_for(lambda: w.pool_ready(plugin) >= 1, 180, "a warm %s sandbox" % plugin)
            before = len(ready_times(w, plugin))
            lat = []
            for _ in range(n):
                wait_for(lambda: w.pool_ready(plugin) >= 1, 180, "the pool to refill")
                lat.append(b.one(plugin))
            wait_for(lambda: w.pool_ready(plugin) >= 1, 180, "the pool to refill")
            ready = ready_times(w, plugin)[before:]
            row[plugin + "_warm_p50"] = pct(lat, 50)
            row[plugin + "_ready_p50"] = pct(ready, 50) if ready else float("nan")
        mem = sandbox_mem(w, "qemu" if "qemu" in name else "jail")
        row["rss"] = statistics.mean(r for r, _ in mem) if mem else float("nan")
        row["pss"] = statistics.mean(p for _, p in mem) if mem else float("nan")
    finally:
        w.stop()
    # cold: no pool, each job makes its own sandbox
    w = Worker(tmp, srv.url, "bench-" + name + "-cold", *args, *common, "--pool", "0")
    try:
        if "qemu" in name and "--vm-cold" not in args:
            wait_for(lambda: b"qemu: snapshot ready" in w.text(), 180, "the snapshot")
        b = Bench(srv.client, name)
        for plugin in PLUGINS:
            row[plugin + "_cold_p50"] = pct([b.one(plugin) for _ in range(max(3, n // 2))], 50)
    finally:
        w.stop()
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--n", type=int, default=10)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["KILN_BUILD"] = build
    import kilntest
    kilntest.BIN = os.path.join(build, "bin")
    env = read_env(os.path.join(build, "rootfs", "kiln.env"), os.path.join(build, "vm", "vm.env"))
    rootfs = ["--rootfs", env["KILN_ROOTFS"], "--rootfs-digest", env["KILN_ROOTFS_DIGEST"]]
    vm = ["--backend", "qemu", "--vm-kernel", env["KILN_VM_KERNEL"], "--vm-initrd",
          env["KILN_VM_INITRD"], "--vm-image", env["KILN_VM_IMAGE"]]
    tmp = tempfile.mkdtemp(prefix="kiln-bench-vm-")
    os.chmod(tmp, 0o755)  # the jail's uid walks to its mount point under it
    plugin_dir = os.path.join(tmp, "plugins")
    os.makedirs(plugin_dir)
    for p in PLUGINS:
        os.symlink(os.path.join(build, "lib", "kiln", "plugins", p + ".so"), os.path.join(plugin_dir, p + ".so"))
    rows = []
    srv = None
    try:
        srv = Redis(tmp)
        rows.append(run_mode(tmp, srv, "jail", ["--backend", "jail", *rootfs], a.n, plugin_dir))
        rows.append(run_mode(tmp, srv, "qemu-boot", [*vm, "--vm-cold"], a.n, plugin_dir))
        rows.append(run_mode(tmp, srv, "qemu-snapshot", vm, a.n, plugin_dir))
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    accel = "KVM" if os.path.exists("/dev/kvm") and "vmx" in open("/proc/cpuinfo").read() else "TCG"
    print("kiln microVM benchmark (%s, %d CPUs), %d jobs per figure; p50 in ms, memory in MiB"
          % (accel, os.cpu_count() or 0, a.n))
    cols = ["shell_ready_p50", "python_ready_p50", "rss", "pss", "shell_warm_p50", "python_warm_p50",
            "shell_cold_p50", "python_cold_p50"]
    heads = ["sh ready", "py ready", "RSS/sb", "PSS/sb", "sh warm", "py warm", "sh cold", "py cold"]
    print("%-14s" % "backend" + "".join("%10s" % h for h in heads))
    for r in rows:
        print("%-14s" % r["mode"] + "".join("%10.1f" % r[c] for c in cols))
    snap = rows[2]
    print("targets (TCG): warm VM ready <= 300 ms: %.0f ms; <= 80 MB RSS per warm VM: %.0f MiB; "
          "shell cold end to end <= 2000 ms: %.0f ms"
          % (snap["shell_ready_p50"], snap["rss"], snap["shell_cold_p50"]))


if __name__ == "__main__":
    main()
