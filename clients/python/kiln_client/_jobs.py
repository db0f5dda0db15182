"""Jobs and results as the wire contract has them (schemas/job.v1.md,
schemas/frame.v1.md): building a job map, and putting a job's frames
together into one Result, de-duplicated and from its last attempt."""
import secrets as _secrets
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import msgpack

from ._errors import JobError, TimeoutError

# Statuses a job can end with (schemas/frame.v1.md).
STATUSES: "tuple[str, ...]" = ("ok", "error", "timeout", "oom", "killed", "output_limit", "rejected",
            "internal", "cancelled", "expired", "session_lost")

#: A frame as a worker wrote it (schemas/frame.v1.md): kind, id, seq,
#: attempt and the kind's own keys (data: bytes for output).
Frame = Dict[str, Any]
#: A job map as the contract has it (schemas/job.v1.md).
Job = Dict[str, Any]
#: Bytes, or text sent as its UTF-8.
Data = Union[bytes, bytearray, memoryview, str]


def new_id(prefix: str = "job") -> str:
    """A random job id: 16 bytes of entropy, valid as a job or session id."""
    return "%s-%s" % (prefix, _secrets.token_hex(16))


def _bytes(v: Optional[Data], what: str) -> Optional[bytes]:
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    raise TypeError("%s must be bytes or str, not %s" % (what, type(v).__name__))


def build_job(plugin: str, code: Union[str, bytes], *, id: Optional[str] = None, stdin: Optional[Data] = None,
              args: Optional[Iterable[object]] = None, env: Optional[Mapping[str, object]] = None,
              files: Optional[Mapping[str, Data]] = None, limits: Optional[Mapping[str, int]] = None,
              net: Union[Sequence[str], Mapping[str, Any], None] = None,
              secrets: Optional[Mapping[str, str]] = None, tests: Optional[Iterable[Mapping[str, Any]]] = None,
              runs: Optional[Iterable[Mapping[str, Any]]] = None,
              session: Union[str, Mapping[str, Any], None] = None,
              collect: Union[str, Iterable[str], None] = None, meta: Any = None,
              deadline: Optional[int] = None, reply_to: Optional[str] = None,
              extra: Optional[Mapping[str, Any]] = None) -> Job:
    """The job map (schemas/job.v1.md); every keyword of run(), stream()
    and submit() is one of these.

    id        the job's id (a random one by default; give one to make a
              submission idempotent)
    stdin, args, env, files   the program's input: files is {path: bytes or
              str} under /work
    limits    {timeout_ms, cpu_ms, memory_mb, pids, output_bytes,
              file_bytes, collect_bytes}
    net       host patterns the job may reach (net.allow), or the map
    secrets   {ENV_NAME: secret name}: values only the bound hosts see
    tests     [{stdin, args, expect: {stdout, exit}}]: graded cases
    runs      [{stdin, args}]: one build, many inputs
    session   an id, or {id, idle_ms, close, expose}: one sandbox across
              jobs; expose: ports of its servers to reach from outside
              (Result.exposed has their URLs)
    collect   glob(s) of files under /work to send back
    meta      anything: echoed on the exit frame
    deadline  Unix ms after which the job is not started (expired)
    reply_to  the stream its frames go to
    extra     more keys, as they are
    """
    if not isinstance(plugin, str) or not plugin:
        raise TypeError("plugin must be a non-empty str")
    if isinstance(code, bytes):
        code = code.decode()
    if not isinstance(code, str):
        raise TypeError("code must be str")
    job: Job = {"v": 1, "id": id or new_id(), "plugin": plugin, "code": code}
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


def pack(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Result:
    """How a job ended, with everything it sent back.

    status      "ok", "error", "timeout", ... (STATUSES); a job that did not
                end well is a Result with that status, not an exception:
                check() raises JobError for it
    code        the exit code, or None; signal: the signal, or None
    stdout, stderr   bytes; stdout_text, stderr_text: as text
    results     a session job's values (result frames), as text
    exposed     {port: url} of a session's exposed ports (`session.expose`)
    files       {path: bytes} of its `collect` files
    verdict     with `tests`: accepted, wrong_answer, ...; cases: case frames
    wall_ms, cpu_ms, max_rss_kb, attempt, worker, reason, session, meta
    exit        the exit frame; frames: every frame of the last attempt
    """

    def __init__(self, job_id: Optional[str], frames: List[Frame]) -> None:
        self.id: Optional[str] = job_id
        self.frames: List[Frame] = frames
        ex = [f for f in frames if f.get("kind") == "exit" and "run" not in f]
        self.exit: Frame = ex[-1] if ex else {}
        e = self.exit
        self.status: Optional[str] = e.get("status")
        self.code: Optional[int] = e.get("code")
        self.signal: Optional[int] = e.get("signal")
        self.reason: Optional[str] = e.get("reason")
        self.wall_ms: Optional[int] = e.get("wall_ms")
        self.cpu_ms: Optional[int] = e.get("cpu_ms")
        self.max_rss_kb: Optional[int] = e.get("max_rss_kb")
        self.attempt: Optional[int] = e.get("attempt")
        self.worker: Optional[str] = e.get("worker")
        self.verdict: Optional[str] = e.get("verdict")
        self.session: Optional[Dict[str, Any]] = e.get("session")
        self.meta: Any = e.get("meta")
        self.stdout: bytes = b"".join(f["data"] for f in frames if f.get("kind") == "stdout")
        self.stderr: bytes = b"".join(f["data"] for f in frames if f.get("kind") == "stderr")
        self.results: List[str] = [bytes(f["data"]).decode("utf-8", "replace")
                                   for f in frames if f.get("kind") == "result"]
        self.cases: List[Frame] = [f for f in frames if f.get("kind") == "case"]
        self.exposed: Dict[int, str] = {f["port"]: f["url"] for f in frames if f.get("kind") == "exposed"}
        self.files: Dict[str, bytes] = {}
        for f in frames:
            if f.get("kind") == "file":
                self.files[f["path"]] = self.files.get(f["path"], b"") + bytes(f["data"])

    @property
    def stdout_text(self) -> str:
        """stdout as text (UTF-8, invalid bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        """stderr as text (UTF-8, invalid bytes replaced)."""
        return self.stderr.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """The job ended ok."""
        return self.status == "ok"

    def check(self) -> "Result":
        """This result, or JobError when the job did not end ok."""
        if self.status != "ok":
            raise JobError(self)
        return self

    def __repr__(self) -> str:
        return "Result(id=%r, status=%r, code=%r%s)" % (
            self.id, self.status, self.code, ", reason=%r" % self.reason if self.reason else "")


class Collector:
    """A job's frames as they come, in any order and any number of times:
    each (attempt, seq) once; a later attempt's frames replace an earlier
    one's (that attempt was cut short)."""

    def __init__(self, job_id: Optional[str]) -> None:
        self.id: Optional[str] = job_id
        self.attempt = 0
        self.seen: Dict[Any, Frame] = {}

    def add(self, frame: Frame) -> List[Frame]:
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
    def done(self) -> bool:
        """The job's last exit frame is in."""
        # the job's last exit frame (an input of `runs` has one with `run`)
        return any(f.get("kind") == "exit" and "run" not in f for f in self.seen.values())

    def result(self) -> Result:
        """The Result of the frames so far (the last attempt's)."""
        frames = sorted(self.seen.values(), key=lambda f: f.get("seq", 0))
        return Result(self.id, frames)


class Follow:
    """One job's wait, for run() and stream() of Client and AsyncClient
    alike: the job (its reply stream chosen), its frames, its deadline.
    The caller does the I/O: it opens a reader on `stream` (`shared`: a
    stream other jobs reply to too), sends `job`, and until `done` hands
    take() what a read of at most left() seconds returned, yielding the
    frames take() returns."""

    def __init__(self, plugin: str, code: Union[str, bytes], job: Mapping[str, Any], timeout: Optional[float],
                 reply_to: Optional[str], private: Callable[[str], Optional[str]]) -> None:
        self.job = build_job(plugin, code, **job)
        self.shared = reply_to is not None or "reply_to" in job
        self.stream: Optional[str] = job.get("reply_to") or reply_to or private(self.job["id"])
        if self.stream is not None:
            self.job["reply_to"] = self.stream
        self.col = Collector(self.job["id"])
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    @property
    def done(self) -> bool:
        """The job's last exit frame is in."""
        return self.col.done

    def left(self, most: float) -> float:
        """How long the next read may wait (at most `most` s); TimeoutError
        naming the job once its time is up."""
        if self.deadline is None:
            return most
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(self.job["id"], self.timeout or 0)
        return min(left, most)

    def take(self, frames: Iterable[Frame]) -> List[Frame]:
        """This job's new frames among those read, in order."""
        out: List[Frame] = []
        for f in frames:
            if f.get("id") == self.job["id"]:
                out.extend(self.col.add(f))
        return out

    def result(self) -> Result:
        """The Result of the frames so far."""
        return self.col.result()


class Batch:
    """map()'s bookkeeping, for Client and AsyncClient alike: which jobs
    are in flight, their frames, their deadlines. The caller does the I/O:
    it sends what next_job() returns while room() says so, hands take()
    every frame it reads and yields the Results take() returns, and calls
    check_deadlines() after each read."""

    def __init__(self, specs: Iterable[Mapping[str, Any]], concurrency: int, timeout: Optional[float],
                 reply_to: Optional[str]) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.specs: Iterator[Mapping[str, Any]] = iter(specs)
        self.concurrency, self.timeout, self.reply_to = concurrency, timeout, reply_to
        self.live: Dict[str, Tuple[Collector, Optional[float]]] = {}
        self.more = True

    @property
    def busy(self) -> bool:
        """Jobs are left to send or to hear from."""
        return self.more or bool(self.live)

    def next_job(self) -> Optional[Job]:
        """The next job to send (now counted in flight), or None when
        `concurrency` are in flight or there are no more."""
        if not self.more or len(self.live) >= self.concurrency:
            return None
        spec = next(self.specs, None)
        if spec is None:
            self.more = False
            return None
        s = dict(spec)
        j = build_job(s.pop("plugin"), s.pop("code"), **s)
        if self.reply_to is not None:
            j["reply_to"] = self.reply_to
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        self.live[j["id"]] = (Collector(j["id"]), deadline)
        return j

    def take(self, frames: Iterable[Frame]) -> List[Result]:
        """The Results of the jobs these frames end."""
        out = []
        for f in frames:
            got = self.live.get(f.get("id", ""))
            if got is None:
                continue
            got[0].add(f)
            if got[0].done:
                del self.live[f["id"]]
                out.append(got[0].result())
        return out

    def check_deadlines(self) -> None:
        """TimeoutError naming a job past its deadline."""
        now = time.monotonic()
        for jid, (_, dl) in self.live.items():
            if dl is not None and now > dl:
                raise TimeoutError(jid, self.timeout or 0)
