#!/usr/bin/env python3
"""Writes the golden vectors of the wire contract v1 (see ../job.v1.md and
../frame.v1.md) with Python's msgpack, an encoder independent of kiln's.

  job/valid/NAME.msgpack     a job the worker must accept
  job/valid/NAME.json        what it must decode to
  job/invalid/NAME.msgpack   a job the worker must reject
  job/invalid/NAME.reason    a phrase the rejection reason must contain
  frame/NAME.msgpack         bytes kiln's frame encoder must produce exactly
  frame/NAME.json            the frame's fields, to encode from
  agent/NAME.bin             one agent protocol message, framed (4-byte length
                             and the map), as kiln's builders must produce it
                             and its readers read it (../agent.v1.md)
  agent/NAME.json            its fields
  beside/NAME.bin            the prestart envelope and the session FIFO's
                             records, byte for byte (../agent.v1.md)

Run it after changing a vector; commit what it writes.
"""
import base64
import json
import os
import shutil

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


VALID = {
    "minimal": {"id": "j1", "plugin": "shell", "code": "echo hi"},
    "full": {
        "v": 1,
        "id": "batch-7.case:42",
        "plugin": "python",
        "code": "print(input())",
        "args": ["--fast", ""],
        "stdin": b"\x00\x01binary",
        "env": {"LANG": "C", "_X1": "y=z"},
        "files": {"data/in.txt": b"hello\n", "empty": b""},
        "limits": {"timeout_ms": 5000, "cpu_ms": 1000, "memory_mb": 256, "pids": 64,
                   "output_bytes": 0, "file_bytes": 1048576},
        "net": {"allow": ["pypi.org", "*.example.com:443"]},
        "reply_to": "results.team-a",
        "meta": {"trace": [1, "two", None]},
    },
    "stdin_str": {"id": "j2", "plugin": "shell", "code": "cat", "stdin": "text stdin"},
    "files_str": {"id": "j3", "plugin": "shell", "code": "cat f", "files": {"f": "as text"}},
    "net_no_allow": {"id": "j4", "plugin": "shell", "code": "true", "net": {}},
    "runs": {"id": "j7", "plugin": "python", "code": "print(input())", "runs": [{"stdin": b"1\n"}, {"stdin": "2\n", "args": ["x"]}, {}]},
    "nil_optionals": {"id": "j5", "plugin": "shell", "code": "true", "args": None,
                      "stdin": None, "env": None, "limits": None, "net": None},
    "unknown_keys": {"id": "j6", "plugin": "shell", "code": "true", "future": {"x": 1},
                     "limits": {"gpu": 1}},
    "id_max": {"id": "a" * 128, "plugin": "shell", "code": "true"},
    "deadline": {"id": "j8", "plugin": "shell", "code": "true", "deadline": 1795459183208},
    "tests": {"id": "e1", "plugin": "c", "code": "int main(void){return 0;}",
              "tests": [{"stdin": "1 2\n", "expect": {"stdout": "3\n"}},
                        {"args": ["-v"], "expect": {"stdout": b"\x00", "exit": 3},
                         "limits": {"cpu_ms": 500, "memory_mb": 64, "timeout_ms": 9000}},
                        {}],
              "compare": {"float": 0.001}, "stop_on_fail": True, "tests_output": False},
    "session": {"id": "s1", "plugin": "python", "code": "x = 1", "session": {"id": "sess-1", "idle_ms": 60000, "close": True}},
    "session_bare": {"id": "s2", "plugin": "deno-eval", "code": "x", "session": {"id": "sess-1"}},
    "collect": {"id": "c1", "plugin": "python", "code": "pass", "collect": ["out/*.png", "**/*.json", "r.txt"],
                "limits": {"collect_bytes": 1048576}},
    "secrets": {"id": "s1", "plugin": "python", "code": "import os", "env": {"A": "1"},
                "secrets": {"API_KEY": "openai.prod", "TOKEN": "gh-token_2"}},
    "tests_compare_tokens": {"id": "e2", "plugin": "python", "code": "print(1)",
                             "tests": [{"expect": {"stdout": "1"}}], "compare": "tokens"},
    "expect_end": {"id": "e3", "plugin": "python", "code": "def f(): return 1\nassert f() == 1",
                   "expect_end": True},
}

INVALID = {
    "not_msgpack": (b"\xc1", "not valid msgpack"),
    "truncated": (pack({"id": "x", "plugin": "shell", "code": "echo"})[:-2], "truncated"),
    "not_map": (pack(["id", "x"]), "must be a msgpack map"),
    "trailing": (pack({"id": "x", "plugin": "shell", "code": "t"}) + b"\x00", "trailing"),
    "no_id": (pack({"plugin": "shell", "code": "true"}), "missing required field 'id'"),
    "id_int": (pack({"id": 7, "plugin": "shell", "code": "true"}), "field 'id' must be a string"),
    "id_bad_chars": (pack({"id": "a b", "plugin": "shell", "code": "true"}), "field 'id' must be 1-128"),
    "id_too_long": (pack({"id": "a" * 129, "plugin": "shell", "code": "true"}), "field 'id' must be 1-128"),
    "id_empty": (pack({"id": "", "plugin": "shell", "code": "true"}), "field 'id' must be 1-128"),
    "no_plugin": (pack({"id": "x", "code": "true"}), "missing required field 'plugin'"),
    "plugin_bin": (pack({"id": "x", "plugin": b"shell", "code": "true"}), "field 'plugin' must be a string"),
    "no_code": (pack({"id": "x", "plugin": "shell"}), "missing required field 'code'"),
    "code_nul": (pack({"id": "x", "plugin": "shell", "code": "a\x00b"}), "must not contain a NUL"),
    "args_not_array": (pack({"id": "x", "plugin": "shell", "code": "t", "args": "a"}), "field 'args' must be an array"),
    "args_int": (pack({"id": "x", "plugin": "shell", "code": "t", "args": ["a", 1]}), "field 'args[1]' must be a string"),
    "stdin_int": (pack({"id": "x", "plugin": "shell", "code": "t", "stdin": 5}), "field 'stdin' must be bin or str"),
    "env_list": (pack({"id": "x", "plugin": "shell", "code": "t", "env": ["A=1"]}), "field 'env' must be a map"),
    "env_value_int": (pack({"id": "x", "plugin": "shell", "code": "t", "env": {"A": 1}}), "field 'env value' must be a string"),
    "env_bad_key": (pack({"id": "x", "plugin": "shell", "code": "t", "env": {"A=B": "1"}}), "env key 'A=B' must match"),
    "session_not_map": (pack({"id": "x", "plugin": "python", "code": "t", "session": "s"}), "field 'session' must be a map"),
    "session_bad_id": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"id": "a b"}}), "field 'session.id'"),
    "session_no_id": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"close": True}}), "field 'session.id'"),
    "session_idle": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"id": "s", "idle_ms": 10}}), "session.idle_ms"),
    "session_close_int": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"id": "s", "close": 1}}), "field 'close'"),
    "session_runs": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"id": "s"}, "runs": [{}]}), "no 'runs' or 'tests'"),
    "session_stdin": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"id": "s"}, "stdin": b"x"}), "no 'stdin' or 'args'"),
    "session_net": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"id": "s"}, "net": {"allow": ["a"]}}), "no 'net' or 'secrets'"),
    "collect_absolute": (pack({"id": "x", "plugin": "shell", "code": "t", "collect": ["/etc/passwd"]}), "collect[0] must be a relative path pattern"),
    "collect_dotdot": (pack({"id": "x", "plugin": "shell", "code": "t", "collect": ["a/../b"]}), "no empty or '..' parts"),
    "collect_empty": (pack({"id": "x", "plugin": "shell", "code": "t", "collect": []}), "field 'collect' must hold 1-100 patterns"),
    "collect_stars": (pack({"id": "x", "plugin": "shell", "code": "t", "collect": ["**/**/**"]}), "at most two '**' parts"),
    "collect_str": (pack({"id": "x", "plugin": "shell", "code": "t", "collect": "*.txt"}), "field 'collect' must be an array"),
    "secrets_list": (pack({"id": "x", "plugin": "shell", "code": "t", "secrets": ["A"]}), "field 'secrets' must be a map"),
    "secrets_bad_env": (pack({"id": "x", "plugin": "shell", "code": "t", "secrets": {"1A": "S"}}), "secrets key '1A' must match"),
    "secrets_bad_name": (pack({"id": "x", "plugin": "shell", "code": "t", "secrets": {"A": "a b"}}), "secrets.A: 'a b' is not a secret's name"),
    "secrets_name_int": (pack({"id": "x", "plugin": "shell", "code": "t", "secrets": {"A": 1}}), "field 'secrets value' must be a string"),
    "secrets_and_env": (pack({"id": "x", "plugin": "shell", "code": "t", "env": {"A": "1"}, "secrets": {"A": "S"}}), "'A' is in both env and secrets"),
    "secrets_too_many": (pack({"id": "x", "plugin": "shell", "code": "t", "secrets": {"A%d" % i: "S" for i in range(33)}}), "field 'secrets' has 33 entries: at most 32"),
    "files_abs": (pack({"id": "x", "plugin": "shell", "code": "t", "files": {"/etc/x": b""}}), "must be relative"),
    "files_dotdot": (pack({"id": "x", "plugin": "shell", "code": "t", "files": {"a/../../x": b""}}), "must be relative"),
    "files_empty_part": (pack({"id": "x", "plugin": "shell", "code": "t", "files": {"a//b": b""}}), "must be relative"),
    "files_int": (pack({"id": "x", "plugin": "shell", "code": "t", "files": {"a": 3}}), "field 'files value' must be bin or str"),
    "limits_negative": (pack({"id": "x", "plugin": "shell", "code": "t", "limits": {"timeout_ms": -1}}), "limits.timeout_ms"),
    "limits_string": (pack({"id": "x", "plugin": "shell", "code": "t", "limits": {"memory_mb": "1"}}), "limits.memory_mb"),
    "limits_not_map": (pack({"id": "x", "plugin": "shell", "code": "t", "limits": [1]}), "field 'limits' must be a map"),
    "net_allow_int": (pack({"id": "x", "plugin": "shell", "code": "t", "net": {"allow": [1]}}), "net.allow[0]"),
    "reply_to_bad": (pack({"id": "x", "plugin": "shell", "code": "t", "reply_to": "a b"}), "field 'reply_to'"),
    "version_2": (pack({"v": 2, "id": "x", "plugin": "shell", "code": "t"}), "unsupported schema version"),
    "deadline_string": (pack({"id": "x", "plugin": "shell", "code": "t", "deadline": "soon"}), "field 'deadline'"),
    "runs_not_array": (pack({"id": "x", "plugin": "shell", "code": "t", "runs": {}}), "field 'runs' must be an array"),
    "runs_empty": (pack({"id": "x", "plugin": "shell", "code": "t", "runs": []}), "must hold 1 to 1000"),
    "runs_item_not_map": (pack({"id": "x", "plugin": "shell", "code": "t", "runs": [1]}), "field 'runs[0]' must be a map"),
    "runs_bad_args": (pack({"id": "x", "plugin": "shell", "code": "t", "runs": [{"args": [1]}]}), "runs[0].args[0]"),
    "tests_and_runs": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": [{}], "runs": [{}]}), "not both"),
    "tests_empty": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": []}), "must hold 1 to 1000 cases"),
    "tests_expect_exit": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": [{"expect": {"exit": 256}}]}), "tests[0].expect.exit"),
    "tests_expect_stdout": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": [{}, {"expect": {"stdout": 1}}]}), "tests[1].expect.stdout"),
    "tests_limits": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": [{"limits": {"cpu_ms": -5}}]}), "tests[0].limits.cpu_ms"),
    "compare_unknown": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": [{}], "compare": "fuzzy"}), "field 'compare'"),
    "compare_float_negative": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": [{}], "compare": {"float": -0.1}}), "field 'compare'"),
    "expect_end_int": (pack({"id": "x", "plugin": "python", "code": "t", "expect_end": 1}), "field 'expect_end'"),
    "session_expect_end": (pack({"id": "x", "plugin": "python", "code": "t", "session": {"id": "s"}, "expect_end": True}), "no 'expect_end'"),
    "stop_on_fail_int": (pack({"id": "x", "plugin": "shell", "code": "t", "tests": [{}], "stop_on_fail": 1}), "field 'stop_on_fail'"),
    "deep": (b"\x91" * 200 + b"\xc0", "not valid msgpack"),
    "huge_array": (b"\xdd\xff\xff\xff\xf0\x01", "a container larger than the job"),
    "huge_map_in_str": (b"\x81\xa2id\xdb\xff\xff\xff\xff", "not valid msgpack"),
}

# Frames in the exact field order kiln writes them.
FRAMES = {
    "stdout": {"id": "j1", "seq": 0, "attempt": 1, "kind": "stdout", "data": b"hello\n"},
    "stderr_binary": {"id": "j1", "seq": 1, "attempt": 2, "kind": "stderr", "data": b"\xff\x00"},
    "exit_ok": {"id": "j1", "seq": 2, "kind": "exit", "status": "ok", "code": 0, "signal": None,
                "wall_ms": 12, "cpu_ms": 3, "max_rss_kb": 2048, "attempt": 1, "worker": "w-1"},
    "exit_killed": {"id": "j9", "seq": 70000, "kind": "exit", "status": "killed", "code": None,
                    "signal": 9, "wall_ms": 4294967296, "cpu_ms": 0, "max_rss_kb": 0,
                    "attempt": 3, "worker": "host.example"},
    "exit_rejected": {"id": None, "seq": 0, "kind": "exit", "status": "rejected", "code": None,
                      "signal": None, "wall_ms": 0, "cpu_ms": 0, "max_rss_kb": 0, "attempt": 1,
                      "worker": "w", "reason": "job must be a msgpack map"},
    "stdout_run": {"id": "j3", "seq": 4, "attempt": 1, "kind": "stdout", "data": b"x", "run": 2},
    "file": {"id": "f1", "seq": 3, "attempt": 1, "kind": "file", "path": "out/a.bin", "size": 300000,
             "mode": 0o644, "offset": 262144, "data": b"\x00tail", "last": True, "truncated": True, "run": 1},
    "file_first": {"id": "f1", "seq": 2, "attempt": 1, "kind": "file", "path": "r.json", "size": 2,
                   "mode": 0o600, "offset": 0, "data": b"{}", "last": True},
    "exit_collect": {"id": "f1", "seq": 4, "kind": "exit", "status": "timeout", "code": None, "signal": 9,
                     "wall_ms": 1500, "cpu_ms": 20, "max_rss_kb": 100, "attempt": 1, "worker": "w",
                     "collect": {"matched": 3, "sent": 1, "truncated": 1, "skipped": 2, "walk_cut": False,
                                 "skipped_files": [{"path": "out/l", "why": "symlink"},
                                                   {"path": "out/p", "why": "not a regular file"}]}},
    "result": {"id": "s1", "seq": 1, "attempt": 1, "kind": "result", "data": b"[1, 2]"},
    "exit_session": {"id": "s1", "seq": 2, "kind": "exit", "status": "ok", "code": 0, "signal": None,
                     "wall_ms": 2, "cpu_ms": 1, "max_rss_kb": 9000, "attempt": 1, "worker": "w",
                     "session": {"id": "sess-1", "seq": 3}},
    "exit_session_lost": {"id": "s2", "seq": 0, "kind": "exit", "status": "session_lost", "code": None,
                          "signal": None, "wall_ms": 0, "cpu_ms": 0, "max_rss_kb": 0, "attempt": 1, "worker": "w",
                          "reason": "the session was closed (a job with close: true)", "session": {"id": "sess-1"}},
    "exit_run": {"id": "j3", "seq": 5, "kind": "exit", "status": "ok", "code": 0, "signal": None,
                 "wall_ms": 3, "cpu_ms": 2, "max_rss_kb": 100, "attempt": 1, "worker": "w", "run": 2},
    "exit_summary": {"id": "j3", "seq": 6, "kind": "exit", "status": "error", "code": None, "signal": None,
                     "wall_ms": 9, "cpu_ms": 6, "max_rss_kb": 100, "attempt": 1, "worker": "w",
                     "runs": 3, "runs_ok": 2},
    "case_accepted": {"id": "e1", "seq": 0, "attempt": 1, "kind": "case", "case": 0, "verdict": "accepted",
                      "code": 0, "signal": None, "wall_ms": 4, "cpu_ms": 3, "max_rss_kb": 900},
    "case_wrong_answer": {"id": "e1", "seq": 1, "attempt": 1, "kind": "case", "case": 1,
                          "verdict": "wrong_answer", "code": 0, "signal": None, "wall_ms": 4, "cpu_ms": 3,
                          "max_rss_kb": 900, "line": 2, "expected": b"5", "got": b"4"},
    "case_time_limit": {"id": "e1", "seq": 2, "attempt": 2, "kind": "case", "case": 2, "verdict": "time_limit",
                        "code": None, "signal": 9, "wall_ms": 530, "cpu_ms": 512, "max_rss_kb": 900,
                        "reason": "CPU time 512 ms, over the limit of 500 ms", "stderr": b"partial\n"},
    "exit_tests": {"id": "e1", "seq": 3, "kind": "exit", "status": "error", "code": None, "signal": None,
                   "wall_ms": 538, "cpu_ms": 518, "max_rss_kb": 900, "attempt": 2, "worker": "w",
                   "verdict": "wrong_answer", "passed": 1, "total": 3,
                   "build": {"status": "ok", "wall_ms": 61, "cpu_ms": 48, "output": b"warning: x\n"}},
    "exit_meta": {"id": "j2", "seq": 5, "kind": "exit", "status": "error", "code": 1, "signal": None,
                  "wall_ms": 1, "cpu_ms": 1, "max_rss_kb": 1, "attempt": 1, "worker": "w",
                  "meta": {"trace": [1, "two", None], "b": b"\x01"}},
}


# agent protocol messages, keys in the order kiln's builders pack them
AGENT = {
    "ready": {"t": "ready", "v": 1, "pid": 1, "warm": False},
    "started": {"t": "started"},
    "beat": {"t": "beat"},
    "kill": {"t": "kill"},
    "out": {"t": "out", "fd": 2, "data": b"oops\n"},
    "exit": {"t": "exit", "reached_end": True, "code": 0, "signal": None, "wall_ms": 12, "cpu_ms": 3,
             "max_rss_kb": 4096, "session": "alive", "peak_kb": 8192, "oom_kills": 0},
    "exit_killed": {"t": "exit", "code": None, "signal": 9, "wall_ms": 5, "cpu_ms": 0, "max_rss_kb": 100,
                    "cpu_limit": True},
    "collecting": {"t": "collecting", "code": 1, "signal": None, "wall_ms": 7, "cpu_ms": 2, "max_rss_kb": 10},
    "error_job": {"t": "error", "reason": "its files do not fit /work", "fault": "job"},
    "file": {"t": "file", "path": "prog", "mode": 0o755, "data": b"\x7fELF"},
    "file_error": {"t": "file", "path": "prog", "error": "no such file"},
    "collect": {"t": "collect", "path": "out/a.txt", "size": 3, "mode": 0o644, "offset": 0, "data": b"abc",
                "last": True, "truncated": False},
    "collected": {"t": "collected", "matched": 2, "sent": 1, "truncated": 0, "skipped": 1, "walk_cut": False,
                  "skipped_list": [["big.bin", "over the cap"]]},
    "result": {"t": "result", "data": b"42"},
    "hello": {"t": "hello", "now_ns": 1700000000000000000, "seed": bytes(range(32))},
    "prestart": {"t": "prestart", "argv": ["/usr/bin/python3", "-c", "x"], "env": ["A=1"], "cwd": "/work"},
    "run": {"t": "run", "end": True, "session": True, "cell": b"x = 1", "timeout_ms": 5000,
            "collect_globs": ["*.png"], "collect_bytes": 1000, "collect_files": 10, "collect_names": 100,
            "ca": b"-----BEGIN CERTIFICATE-----", "cpu_ms": 2000, "collect": "prog",
            "limits": {"memory_bytes": 268435456, "pids": 64}, "proxy": True,
            "rlimits": {"cpu": 3, "fsize": 1048576, "nofile": 256},
            "argv": ["/bin/sh", "-c", "echo $1", "sh", "a"], "env": ["K=V"], "cwd": "/work",
            "files": [["in.txt", b"hi\n", 0o644], ["bin/run", b"#!/bin/sh\n", 0o755]], "stdin": b"1 2\n"},
    "run_minimal": {"t": "run", "limits": {"memory_bytes": 0, "pids": 0}, "proxy": False,
                    "rlimits": {"cpu": 0, "fsize": 0, "nofile": 0}, "argv": ["/bin/true"], "env": [],
                    "cwd": "/work", "files": [], "stdin": None},
}


def frame_msg(obj):
    body = pack(obj)
    return len(body).to_bytes(4, "big") + body


def envelope(argv, env, stdin):
    body = b"\0".join([str(len(argv)).encode()] + [a.encode() for a in argv] + [e.encode() for e in env])
    return len(body).to_bytes(4, "big") + body + stdin


# beside the channel: the prestart envelope; a session cell's head; the
# FIFO's records
BESIDE = {
    "envelope": envelope(["/usr/bin/python3", "/work/main.py", "a b", ""], ["HOME=/work", "K=v=w"], b"in\n"),
    "envelope_noenv": envelope(["/bin/true"], [], b""),
    "cell_head": b"11 2500\n",
    "ctl_result": b"R 5\nhello",
    "ctl_end": b"E 3\n",
    "ctl_end_wrapped": b"E 257\n",
}


def jsonable(v):
    if isinstance(v, bytes):
        return {"base64": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def write(path, data, mode="wb"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(data)


def main():
    for sub in ("job", "frame", "agent", "beside"):
        shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
    for name, job in VALID.items():
        write(os.path.join(HERE, "job/valid", name + ".msgpack"), pack(job))
        write(os.path.join(HERE, "job/valid", name + ".json"),
              json.dumps(jsonable(job), indent=1, sort_keys=True) + "\n", "w")
    for name, (data, reason) in INVALID.items():
        write(os.path.join(HERE, "job/invalid", name + ".msgpack"), data)
        write(os.path.join(HERE, "job/invalid", name + ".reason"), reason + "\n", "w")
    for name, frame in FRAMES.items():
        write(os.path.join(HERE, "frame", name + ".msgpack"), pack(frame))
        write(os.path.join(HERE, "frame", name + ".json"),
              json.dumps(jsonable(frame), indent=1) + "\n", "w")
    for name, msg in AGENT.items():
        write(os.path.join(HERE, "agent", name + ".bin"), frame_msg(msg))
        write(os.path.join(HERE, "agent", name + ".json"), json.dumps(jsonable(msg), indent=1) + "\n", "w")
    for name, data in BESIDE.items():
        write(os.path.join(HERE, "beside", name + ".bin"), data)


if __name__ == "__main__":
    main()
