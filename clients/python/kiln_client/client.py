"""kiln's client: run jobs on kiln workers through Redis Streams or Kafka.

    from kiln_client import Client
    with Client("redis://127.0.0.1:6379") as kiln:
        r = kiln.run("python", "print(6 * 7)")
        print(r.status, r.stdout_text)          # ok 42

run() returns when the job has ended; stream() yields its frames as they
come; map() runs many with at most `concurrency` in flight and yields their
results as they end; cancel() stops one. AsyncClient (aio.py) is the same
for asyncio.
"""
from typing import Any, Dict, Generator, Iterable, Iterator, Mapping, Optional

from ._errors import KilnConnectionError
from ._jobs import Batch, Follow, Frame, Job, Result, build_job, new_id
from ._transport import KafkaTransport, RedisTransport, Transport

_READ_SLICE = 1.0  # seconds one read may block


class Client:
    """`redis_url` (or `brokers=` for Kafka, with `kafka_conf`); the names
    of the job, results and control streams or topics as the workers have
    them. `reply_to`: a shared reply stream for this client's jobs, read
    with a consumer group of its own (`group`); by default each call reads
    a private stream (Redis), deleted afterwards, or the results topic
    (Kafka) from its end."""

    def __init__(self, redis_url: Optional[str] = None, *, brokers: Optional[str] = None,
                 jobs: str = "kiln.jobs", results: str = "kiln.results", control: str = "kiln.control",
                 reply_to: Optional[str] = None, group: Optional[str] = None,
                 kafka_conf: Optional[Dict[str, Any]] = None) -> None:
        if (redis_url is None) == (brokers is None):
            raise ValueError("give redis_url or brokers=, one of them")
        self.kafka = brokers is not None
        self.t: Transport
        if brokers is not None:
            self.t = KafkaTransport(brokers, jobs, results, control, kafka_conf)
        else:
            assert redis_url is not None
            self.t = RedisTransport(redis_url, jobs, control, group)
        self.reply_to = reply_to

    # ---- the calls --------------------------------------------------------

    def submit(self, plugin: str, code: str, **job: Any) -> str:
        """Enqueue a job; its id. Its frames go to `reply_to` (or the
        workers' results stream): read them yourself."""
        j = build_job(plugin, code, **job)
        self.t.enqueue(j, self._key(j))
        return str(j["id"])

    def run(self, plugin: str, code: str, *, timeout: Optional[float] = None, **job: Any) -> Result:
        """Run a job to its end: its Result (whatever its status). Raises
        TimeoutError when no result came within `timeout` seconds. The
        keywords are build_job's (stdin, args, env, files, limits, tests,
        session, collect, ...)."""
        gen = self._follow(plugin, code, timeout, job)
        while True:
            try:
                next(gen)
            except StopIteration as end:
                result: Result = end.value
                return result

    def stream(self, plugin: str, code: str, *, timeout: Optional[float] = None,
               **job: Any) -> Iterator[Frame]:
        """Run a job, yielding each of its frames (dicts: stdout, stderr,
        result, file, case, then exit) once, in order, as they come. After
        a worker died mid-job the next attempt's frames follow (each frame
        says its `attempt`)."""
        yield from self._follow(plugin, code, timeout, job)

    def map(self, jobs: Iterable[Mapping[str, Any]], *, concurrency: int = 16,
            timeout: Optional[float] = None) -> Iterator[Result]:
        """Run many jobs (an iterable of dicts of run()'s arguments: plugin,
        code, ...), at most `concurrency` at once; yield each Result as its
        job ends. `timeout`: for each job, from when it was enqueued."""
        stream = self.reply_to or (None if self.kafka else "kiln.reply.map-" + new_id("m")[2:18])
        batch = Batch(jobs, concurrency, timeout, stream)
        reader = self.t.reader(stream, self.reply_to is not None)
        try:
            while batch.busy:
                j = batch.next_job()
                while j is not None:
                    self.t.enqueue(j, self._key(j))
                    j = batch.next_job()
                yield from batch.take(reader.read(_READ_SLICE))
                batch.check_deadlines()
        finally:
            reader.close()

    def cancel(self, job_id: str) -> None:
        """Cancel a job (or a session, by its id) wherever it runs."""
        self.t.cancel(job_id)

    def close(self) -> None:
        """Close the connections (the client is done)."""
        self.t.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- inside -----------------------------------------------------------

    @staticmethod
    def _key(job: Job) -> str:
        """Kafka's key: a session's jobs go by the session id (one
        partition, one worker, in order), others by the job id."""
        s = job.get("session")
        return str(s["id"] if isinstance(s, dict) and "id" in s else job["id"])

    def _follow(self, plugin: str, code: str, timeout: Optional[float],
                job: Dict[str, Any]) -> Generator[Frame, None, Result]:
        w = Follow(plugin, code, job, timeout, self.reply_to, self.t.private_reply)
        reader = self.t.reader(w.stream, w.shared)
        try:
            self.t.enqueue(w.job, self._key(w.job))
            while not w.done:
                yield from w.take(reader.read(w.left(_READ_SLICE)))
        finally:
            reader.close()
        return w.result()


__all__ = ["Client", "KilnConnectionError"]
