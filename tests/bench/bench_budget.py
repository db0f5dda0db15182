#!/usr/bin/python3
"""Where a job's CPU goes: a per-phase budget, measured.

Sends N jobs one at a time (shell `true`, then python `pass`) to a
kiln-worker on the jail backend through a real redis-server, while
`perf record` samples every CPU of the machine (system-wide, kernel and
user call stacks). Each sample is then put in one phase by the process it
ran in and the functions on its stack, and the table gives each phase's
CPU per job (ms), with the same phases of a fork harness (a warm python
process that forks a child per program, what evaluation harnesses do)
measured the same way. Idle time and perf's own samples are left out;
samples no rule names are a row of their own ("other"), never spread
over the rest.

  tests/bench/bench_budget.py [--build DIR] [--n 300] [--freq 1999]

Needs perf (Debian's linux-perf) and root (system-wide sampling).
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debian_python  # noqa: E402

debian_python.ensure(__file__)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import msgpack  # noqa: E402
from kilntest import read_env  # noqa: E402
from benchlab import Lab  # noqa: E402
from bench_eval import BWRAP  # noqa: E402

PY = "/usr/bin/python3"
# issue 30's targets, as bench_eval.py prints them
TARGET_TRUE_JOBS_S, TARGET_WORKER_MS, TARGET_FORK, TARGET_BWRAP = 300, 0.5, 0.8, 3.0

# The phases, in a job's order. A sample's phase: the first rule below
# that its process and stack match.
PHASES = [
    ("queue", "queue read and decode (worker)"),
    ("plan", "plugin plan (worker)"),
    ("create", "sandbox creation: clone, namespaces, mounts"),
    ("agent", "the agent: setup, messages, its fork"),
    ("exec", "the program's exec"),
    ("run", "the program's own run"),
    ("exit", "exit and teardown: exit, reap, cgroup reset"),
    ("deferred", "the kernel's deferred cleanup: kworkers, RCU"),
    ("frames", "frames and ack (worker)"),
    ("worker", "worker: loop, log, stacks perf lost"),
    ("redis", "redis-server"),
    ("client", "client: sends jobs, reads frames"),
    ("other", "other processes"),
]

# kernel functions that say what a stack is doing (any frame)
K_EXIT = frozenset(("do_exit", "do_group_exit", "release_task", "exit_mmap", "free_nsproxy", "put_mnt_ns",
          "__x64_sys_wait4", "do_wait", "cgroup_rmdir", "__x64_sys_exit_group", "kernel_wait4"))
K_CREATE = frozenset(("copy_process", "unshare_nsproxy_namespaces", "__x64_sys_unshare", "__x64_sys_setns",
            "__x64_sys_mount", "__x64_sys_pivot_root", "__x64_sys_open_tree", "__x64_sys_move_mount",
            "__x64_sys_mount_setattr", "__x64_sys_fsmount", "cgroup_attach_task", "cgroup_mkdir",
            "__cgroup_procs_write", "__x64_sys_landlock_restrict_self", "__x64_sys_seccomp",
            "__x64_sys_prctl", "__x64_sys_setrlimit", "__x64_sys_prlimit64"))
K_EXEC = frozenset(("__x64_sys_execve", "__x64_sys_execveat", "bprm_execve", "load_elf_binary"))
# the worker's own functions (kiln is built with frame pointers), tried
# on a stack's frames from the leaf outwards: the first that names a phase
W_PHASES = [
    ("exit", re.compile(r"bury|reap|cgroup_reset|cgroup_stats|on_pidfd|parse_exit|sandbox_free|_kill\b")),
    ("create", re.compile(r"jail_spawn|link_spawn|zygote_spawn|^fill\b|^fill\.|cgroup_limit|jail_cgroup|pool_")),
    ("plan", re.compile(r"plan|plugin|prepare")),
    ("frames", re.compile(r"frame|report|_ack|op_send|on_op_reply|kiln_chan|on_msg|publish")),
    ("queue", re.compile(r"redis|fetch|deliver_entries|^start\.|kiln_mp|job_parse|job_decode|^on_read$")),
]
# the worker's frames: their names start so (libuv, libc and the kernel's do not)
W_OWN = re.compile(r"^(kiln|jail|bury|fill|on_|parse_|start\.|deliver|emit|write_text|op_|redis)")


def perf_script(data):
    """The samples of a perf.data file: (comm, pid, [frames leaf first])."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid,tid,ip,sym"],
                         capture_output=True, text=True, check=True).stdout
    samples, cur = [], None
    for line in out.splitlines():
        if not line.strip():
            if cur is not None:
                samples.append(cur)
            cur = None
            continue
        if not line.startswith((" ", "\t")):
            m = re.match(r"\s*(.+?)\s+(\d+)/(\d+)\s*$", line) or re.match(r"\s*(.+?)\s+(\d+)\s*$", line)
            if m is None:
                cur = None
                continue
            cur = (m.group(1), int(m.group(2)), [])
        elif cur is not None:
            parts = line.split(None, 1)
            cur[2].append(parts[1].split("+0x")[0].strip() if len(parts) > 1 else "?")
    if cur is not None:
        samples.append(cur)
    return samples


def phase_of(comm, pid, frames, pids):
    if comm == "swapper" or pid == 0:
        return None
    if comm.startswith("perf"):
        return None
    if pid == pids["client"]:
        return "client"
    if comm.startswith("redis-serv") or pid == pids["redis"]:
        return "redis"
    if comm.startswith(("kworker", "ksoftirqd", "rcu", "kcompactd", "khugepaged", "migration", "kswapd")):
        return "deferred"
    fs = set(frames)
    if pid == pids["worker"] or comm.startswith("kiln-worker"):
        for f in frames:
            if W_OWN.match(f):
                for ph, rx in W_PHASES:
                    if rx.search(f):
                        return ph
        if fs & K_CREATE:
            return "create"
        return "worker"
    if fs & K_EXEC:
        return "exec"  # with the address space it replaces
    if fs & K_EXIT:
        return "exit"
    if fs & K_CREATE:
        return "create"
    if comm.startswith("kiln-agent") or comm == "kiln-zygote":
        return "agent"
    return pids["program"](comm)


def record(freq, data, fn):
    """Runs fn() while perf samples the whole machine; returns fn's value."""
    p = subprocess.Popen(["perf", "record", "-a", "-g", "-F", str(freq), "-o", data, "--quiet"],
                         stdout=subprocess.DEVNULL)  # its errors, if any, on our stderr
    time.sleep(1.0)  # perf is sampling
    try:
        return fn()
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(60)


def syscall_of(frames):
    """The system call a stack is in (its outermost __x64_sys_ frame), or
    the process's own leaf function."""
    for f in reversed(frames):
        if f.startswith("__x64_sys_"):
            return f[len("__x64_sys_"):] + "()"
        if f in ("exc_page_fault", "asm_exc_page_fault"):
            return "page faults"
        if f in ("schedule", "__schedule", "finish_task_switch"):
            return "context switches"
    return frames[0] if frames else "?"


# the kernel's work for a network namespace, wherever it is done: made at
# the sandbox's clone, torn down later by a kworker (issue 30's lever: no
# namespace for a job without network)
K_NETNS = frozenset(("copy_net_ns", "setup_net",
                     "cleanup_net", "ops_exit_list", "ops_undo_list", "inet_twsk_purge", "default_device_exit_batch"))


def budget(samples, pids, n, freq, detail=None):
    """CPU ms per job by phase; with detail, also the top system calls (or
    leaf functions) of each phase's samples, with their comm."""
    ms = 1000.0 / freq
    count = collections.Counter()
    for comm, pid, frames in samples:
        ph = phase_of(comm, pid, frames, pids)
        if ph is not None:
            count[ph] += 1
            if pid == pids["worker"]:
                count["worker process"] += 1
            if not K_NETNS.isdisjoint(frames):
                count["netns"] += 1
            if detail is not None:
                detail[ph][(comm, syscall_of(frames))] += 1
    out = {ph: count[ph] * ms / n for ph, _ in PHASES}
    out["netns"] = count["netns"] * ms / n
    return out, count["worker process"] * ms / n


def add_job(r, reply, i, plugin, code):
    return r.xadd("kiln.jobs", {"job": msgpack.packb({"id": "%s-%d" % (reply, i), "plugin": plugin, "code": code,
                                                      "reply_to": reply})})


def wait_exits(r, reply, n, last):
    """Waits for n exit frames on `reply` after entry `last`, each "ok";
    returns the last entry read."""
    while n > 0:
        got = r.xread({reply: last}, block=10000, count=1000)
        if not got:
            raise SystemExit("no frame in 10 s")
        for _, entries in got:
            for eid, f in entries:
                last = eid
                fr = msgpack.unpackb(f[b"frame"])
                if fr["kind"] == "exit":
                    if fr["status"] != "ok":
                        raise SystemExit("a job ended %r" % fr)
                    n -= 1
    return last


def send_burst(r, plugin, code, n):
    """n jobs on the queue at once, as a throughput run sends them."""
    reply = "budget." + uuid.uuid4().hex[:8]
    pipe = r.pipeline()
    for i in range(n):
        add_job(pipe, reply, i, plugin, code)
    pipe.execute()
    wait_exits(r, reply, n, "0")
    r.delete(reply)


def send_one_at_a_time(r, plugin, code, n):
    """n jobs, each sent when the one before has ended."""
    reply, last = "budget." + uuid.uuid4().hex[:8], "0"
    for i in range(n):
        add_job(r, reply, i, plugin, code)
        last = wait_exits(r, reply, 1, last)
    r.delete(reply)


# the baselines, one program at a time: a warm python forks a child that
# runs the program (what evaluation harnesses do), and a bare spawn of
# `sh -c true` (what a shell job is without kiln)
FORK_ONE_AT_A_TIME = r"""
import os, sys
# what bench_eval.py's fork harness (and the public HumanEval harness's
# process) has loaded before it forks: its children copy those pages
import typing, contextlib, faulthandler, io, platform, signal, tempfile, multiprocessing
n, code = int(sys.argv[1]), sys.argv[2]
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        exec(compile(code, 'program', 'exec'), {'__name__': '__main__'})
        os._exit(0)
    os.waitpid(pid, 0)
"""
SPAWN_ONE_AT_A_TIME = r"""
import json, os, sys
argv = json.loads(sys.argv[2])
for _ in range(int(sys.argv[1])):
    os.waitpid(os.posix_spawn(argv[0], argv, os.environ), 0)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--freq", type=int, default=1999)
    ap.add_argument("--top", type=int, default=0, help="print each phase's N costliest system calls")
    a = ap.parse_args()
    if not shutil.which("perf"):
        raise SystemExit("bench_budget: needs perf (Debian's linux-perf)")
    build = os.path.abspath(a.build)
    os.environ["KILN_BUILD"] = build
    import kilntest
    kilntest.BIN = os.path.join(build, "bin")
    kv = read_env(os.path.join(build, "rootfs", "kiln.env"))
    cols, details, worker_ms = {}, {}, {}
    with Lab("kiln-budget-") as lab:
        tmp, redis_srv, w = lab.tmp, lab.redis, None
        ncpu = os.cpu_count() or 1
        w = lab.worker("budget", "--rootfs", kv["KILN_ROOTFS"], "--rootfs-digest",
                       kv["KILN_ROOTFS_DIGEST"], "--pool", str(2 * ncpu), "--slots", str(ncpu))
        time.sleep(2.0)
        for plugin, code in (("shell", "true"), ("python", "pass")):
            for mode, send in (("1x", send_one_at_a_time), ("burst", send_burst)):
                send(redis_srv.client, plugin, code, 30)  # warm up
                data = os.path.join(tmp, "%s.data" % plugin)
                record(a.freq, data, lambda: send(redis_srv.client, plugin, code, a.n))
                prog = {"shell": ("sh", "dash", "true"), "python": ("python3", "python3.11")}[plugin]
                pids = {"client": os.getpid(), "redis": redis_srv.proc.pid, "worker": w.proc.pid,
                        "program": lambda comm, prog=prog: "run" if comm.startswith(prog) else "other"}
                detail = collections.defaultdict(collections.Counter)
                col = "%s %s" % (plugin, mode)
                cols[col], worker_ms[col] = budget(perf_script(data), pids, a.n, a.freq, detail)
                details[col] = detail
        # the baselines: their harness is the client, the children the
        # program (bubblewrap's own process: its sandbox's creation)
        baselines = [("spawn sh 1x", SPAWN_ONE_AT_A_TIME, json.dumps(["/bin/sh", "-c", "true"])),
                     ("python-c 1x", SPAWN_ONE_AT_A_TIME, json.dumps([PY, "-c", "pass"])),
                     ("fork py 1x", FORK_ONE_AT_A_TIME, "pass")]
        if shutil.which("bwrap"):
            baselines.append(("bwrap py 1x", SPAWN_ONE_AT_A_TIME,
                              json.dumps([shutil.which("bwrap")] + BWRAP[1:] + [PY, "-c", "pass"])))
        for name, harness, arg in baselines:
            data = os.path.join(tmp, "base.data")
            holder = {}

            def run():
                p = subprocess.Popen([PY, "-c", harness, str(a.n), arg])
                holder["pid"] = p.pid
                p.wait()
            record(a.freq, data, run)
            pids = {"client": holder["pid"], "redis": -1, "worker": -1,
                    "program": lambda comm: ("run" if comm.startswith(("sh", "true", "python3")) else
                                             "create" if comm.startswith("bwrap") else "other")}
            cols[name], _ = budget(perf_script(data), pids, a.n, a.freq)

    names = list(cols)
    print("CPU per job by phase, ms (perf on every CPU, %d jobs, %d Hz; 1x: one at a time, burst: all on the "
          "queue at once, %d slots)" % (a.n, a.freq, os.cpu_count() or 1))
    print("%-46s" % "phase" + "".join("%13s" % c for c in names))
    for ph, label in PHASES:
        print("%-46s" % label + "".join("%13.2f" % cols[c][ph] for c in names))
    total = {c: sum(cols[c][ph] for ph, _ in PHASES) for c in names}
    print("%-46s" % "total" + "".join("%13.2f" % total[c] for c in names))
    print("%-46s" % "of which the kiln-worker process" + "".join("%13.2f" % worker_ms[c] if c in worker_ms else
                                                                  "%13s" % "" for c in names))
    print("%-46s" % "of which network namespaces (make, tear down)" + "".join("%13.2f" % cols[c]["netns"]
                                                                               for c in names))

    # what the totals allow: every CPU busy, nothing else running
    ncpu = os.cpu_count() or 1
    sandbox = ("create", "agent", "exec", "exit", "deferred")
    sh, py = cols["shell burst"], cols["python burst"]
    print("\ntargets (tests/bench/bench_eval.py measures them; here, what the CPU of a job allows on %d CPUs, "
          "from the burst columns):" % ncpu)
    ceiling = ncpu * 1000.0 / total["shell burst"]
    print("  shell `true` >= %d jobs/s needs <= %.1f ms of CPU a job; it takes %.1f (at most %.0f jobs/s): "
          "%.1f in the sandbox's own processes (creation %.1f, agent %.1f, exec %.1f, exit %.1f, deferred %.1f), "
          "redis %.1f; a bare spawn takes %.1f: %s"
          % (TARGET_TRUE_JOBS_S, ncpu * 1000.0 / TARGET_TRUE_JOBS_S, total["shell burst"], ceiling,
             sum(sh[p] for p in sandbox), *(sh[p] for p in sandbox), sh["redis"], total["spawn sh 1x"],
             "met" if ceiling >= TARGET_TRUE_JOBS_S else "MISSED"))
    w = worker_ms["shell burst"]
    print("  worker CPU <= %.1f ms a job: %.2f (queue %.2f, plan %.2f, frames %.2f, loop/log/lost %.2f, the rest "
          "in its sandbox rows): %s"
          % (TARGET_WORKER_MS, w, sh["queue"], sh["plan"], sh["frames"], sh["worker"],
             "met" if w <= TARGET_WORKER_MS else "MISSED"))
    ratio = total["fork py 1x"] / total["python burst"]
    print("  python >= %.1fx the fork harness: the CPU of an empty program allows %.2fx (%.1f ms beside %.1f: the "
          "program's own run %.1f beside %.1f, the sandbox %.1f; bench_eval.py measures the rate on real-shaped "
          "programs): %s"
          % (TARGET_FORK, ratio, total["python burst"], total["fork py 1x"], py["run"], cols["fork py 1x"]["run"],
             sum(py[p] for p in sandbox), "met" if ratio >= TARGET_FORK else "MISSED"))
    if "bwrap py 1x" in total:
        ratio = total["bwrap py 1x"] / total["python burst"]
        print("  >= %.1fx bubblewrap per program: the CPU of an empty program allows %.2fx (%.1f ms beside %.1f, "
              "whose sandbox costs %.1f): %s"
              % (TARGET_BWRAP, ratio, total["python burst"], total["bwrap py 1x"],
                 total["bwrap py 1x"] - total["python-c 1x"], "met" if ratio >= TARGET_BWRAP else "MISSED"))
    ratio = total["python 1x"] / total["python-c 1x"]
    print("  a warm python job in <= 0.5x a bare `python3 -c`'s time (bench_latency.py): its CPU is %.2fx a bare "
          "spawn's (%.1f ms beside %.1f), the program's run alone %.1f: %s"
          % (ratio, total["python 1x"], total["python-c 1x"], cols["python 1x"]["run"],
             "within reach" if ratio <= 0.5 else "MISSED"))
    for c, detail in details.items() if a.top else ():
        print("\n%s: the costliest system calls (or leaf functions) of each phase, ms per job" % c)
        for ph, label in PHASES:
            top = detail[ph].most_common(a.top)
            if top:
                print("  %s: %s" % (ph, ", ".join("%s %s %.2f" % (comm, call, k * 1000.0 / a.freq / a.n)
                                                  for (comm, call), k in top)))


if __name__ == "__main__":
    main()
