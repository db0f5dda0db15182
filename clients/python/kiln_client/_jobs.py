"""Jobs and results as the wire contract has them (schemas/job.v1.md,
schemas/frame.v1.md): building a job map, and putting a job's frames
together into one Result, de-duplicated and from its last attempt."""
import os
import secrets as _secrets

import msgpack

from ._errors import JobError

# Statuses a job can end with (schemas/frame.v1.md).
STATUSES = ("ok", "error", "timeout", "oom", "killed", "output_limit", "rejected",
            "internal", "cancelled", "expired", "session_lost")


def new_id(prefix="job"):
    """A random job id: 16 bytes of entropy, valid as a job or session id."""
    return "%s-%s" % (prefix, _secrets.token_hex(16))


def _bytes(v, what):
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    raise TypeError("%s must be bytes or str, not %s" % (what, type(v).__name__))


def build_job(plugin, code, *, id=None, stdin=None, args=None, env=None, files=None, limits=None,
              net=None, secrets=None, tests=None, runs=None, session=None, collect=None, meta=None,
              deadline=None, reply_to=None, extra=None):
    """The job map. `net`: a list of host patterns (net.allow) or the map
    itself; `session`: an id, or {id, idle_ms, close}; `files`: {path:
    bytes or str}; `extra`: more keys, as they are."""
    if not isinstance(plugin, str) or not plugin:
        raise TypeError("plugin must be a non-empty str")
    if isinstance(code, bytes):
        code = code.decode()
    if not isinstance(code, str):
        raise TypeError("code must be str")
    job = {"v": 1, "id": id or new_id(), "plugin": plugin, "code": code}
    if stdin is not None:
        job["stdin"] = _bytes(stdin, "stdin")
    if args is not None:
        job["args"] = [str(a) for a in args]
    if env:
        job["env"] = {str(k): str(v) for k, v in env.items()}
    if files:
        job["files"] = {str(k): _bytes(v, "files[%r]" % k) for k, v in files.items()}
    if limits:
        job["limits"] = dict(limits)
    if net is not None:
        job["net"] = dict(net) if isinstance(net, dict) else {"allow": list(net)}
    if secrets:
        job["secrets"] = dict(secrets)
    if tests is not None:
        job["tests"] = list(tests)
    if runs is not None:
        job["runs"] = list(runs)
    if session is not None:
        job["session"] = {"id": session} if isinstance(session, str) else dict(session)
    if collect is not None:
        job["collect"] = [collect] if isinstance(collect, str) else list(collect)
    if meta is not None:
        job["meta"] = meta
    if deadline is not None:
        job["deadline"] = int(deadline)
    if reply_to is not None:
        job["reply_to"] = reply_to
    if extra:
        job.update(extra)
    return job


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Result:
    """How a job ended, with everything it sent back.

    status      "ok", "error", "timeout", ... (STATUSES); a job that did not
                end well is a Result with that status, not an exception:
                check() raises JobError for it
    code        the exit code, or None; signal: the signal, or None
    stdout, stderr   bytes; stdout_text, stderr_text: as text
    results     a session job's values (result frames), as text
    files       {path: bytes} of its `collect` files
    verdict     with `tests`: accepted, wrong_answer, ...; cases: case frames
    wall_ms, cpu_ms, max_rss_kb, attempt, worker, reason, session, meta
    exit        the exit frame; frames: every frame of the last attempt
    """

    def __init__(self, job_id, frames):
        self.id = job_id
        self.frames = frames
        ex = [f for f in frames if f.get("kind") == "exit" and "run" not in f]
        self.exit = ex[-1] if ex else {}
        e = self.exit
        self.status = e.get("status")
        self.code = e.get("code")
        self.signal = e.get("signal")
        self.reason = e.get("reason")
        self.wall_ms = e.get("wall_ms")
        self.cpu_ms = e.get("cpu_ms")
        self.max_rss_kb = e.get("max_rss_kb")
        self.attempt = e.get("attempt")
        self.worker = e.get("worker")
        self.verdict = e.get("verdict")
        self.session = e.get("session")
        self.meta = e.get("meta")
        self.stdout = b"".join(f["data"] for f in frames if f.get("kind") == "stdout")
        self.stderr = b"".join(f["data"] for f in frames if f.get("kind") == "stderr")
        self.results = [bytes(f["data"]).decode("utf-8", "replace") for f in frames if f.get("kind") == "result"]
        self.cases = [f for f in frames if f.get("kind") == "case"]
        self.files = {}
        for f in frames:
            if f.get("kind") == "file":
                self.files[f["path"]] = self.files.get(f["path"], b"") + bytes(f["data"])

    @property
    def stdout_text(self):
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self):
        return self.stderr.decode("utf-8", "replace")

    @property
    def ok(self):
        return self.status == "ok"

    def check(self):
        """This result, or JobError when the job did not end ok."""
        if self.status != "ok":
            raise JobError(self)
        return self

    def __repr__(self):
        return "Result(id=%r, status=%r, code=%r%s)" % (
            self.id, self.status, self.code, ", reason=%r" % self.reason if self.reason else "")


class Collector:
    """A job's frames as they come, in any order and any number of times:
    each (attempt, seq) once; a later attempt's frames replace an earlier
    one's (that attempt was cut short)."""

    def __init__(self, job_id):
        self.id = job_id
        self.attempt = 0
        self.seen = {}

    def add(self, frame):
        """Take a frame: the new ones it makes visible, in seq order (for
        streaming), or [] for a repeat or a stale attempt's frame."""
        attempt = frame.get("attempt") or 1
        if attempt < self.attempt:
            return []
        if attempt > self.attempt:
            self.attempt = attempt
            self.seen = {}
        key = frame.get("seq")
        if key in self.seen:
            return []
        self.seen[key] = frame
        return [frame]

    @property
    def done(self):
        # the job's last exit frame (an input of `runs` has one with `run`)
        return any(f.get("kind") == "exit" and "run" not in f for f in self.seen.values())

    def result(self):
        frames = sorted(self.seen.values(), key=lambda f: f.get("seq", 0))
        return Result(self.id, frames)


def cancel_message(job_id):
    return pack({"cancel": job_id})


def env_default(name, default):
    return os.environ.get(name, default)
