"""AsyncClient: the same calls as Client, for asyncio.

On Redis it uses redis-py's asyncio API, with one reader per call (map's
jobs share one reply stream, as Client.map's do). On Kafka it runs
Client's calls in a thread and hands each frame or result over as it
comes, so stream() and map() yield while the jobs run.
"""
import asyncio
import threading
from typing import (Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Tuple, TypeVar, Union)

from ._errors import KilnConnectionError
from ._jobs import Batch, Follow, Frame, Result, build_job, new_id, pack
from ._transport import entries
from .client import Client

_READ_SLICE = 1.0
T = TypeVar("T")


class _Reader:
    """Frames of one reply stream, read with redis-py's asyncio API: a
    private stream from its start (deleted at close), or a shared one
    through a consumer group of this client."""

    def __init__(self, client: "AsyncClient", stream: str, shared: bool) -> None:
        self.c, self.stream, self.shared = client, stream, shared
        self.last: Union[bytes, str] = "0"

    async def open(self) -> "_Reader":
        if self.shared:
            try:
                await self.c._call(self.c.r.xgroup_create(self.stream, self.c.group, id="$", mkstream=True))
            except self.c._errors.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        return self

    async def read(self, timeout: float) -> List[Frame]:
        """Frames that came (maybe none), waiting up to `timeout` s."""
        ms = max(1, int(timeout * 1000))
        r = self.c.r
        if self.shared:
            got = await self.c._call(r.xreadgroup(self.c.group, "c", {self.stream: ">"}, count=500, block=ms))
        else:
            got = await self.c._call(r.xread({self.stream: self.last}, count=500, block=ms))
        frames, ids, newest = entries(got)
        self.last = newest or self.last
        if self.shared and ids:
            await self.c._call(r.xack(self.stream, self.c.group, *ids))
        return frames

    async def close(self) -> None:
        if not self.shared:
            try:
                await self.c.r.delete(self.stream)
            except Exception:
                pass


async def _from_thread(produce: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Run a blocking iterator in a thread; yield its items here as they
    come (its exception, if it raises). Stopping early stops it at its next
    item."""
    loop = asyncio.get_running_loop()
    q: "asyncio.Queue[Tuple[int, Any]]" = asyncio.Queue()
    stop = threading.Event()

    def put(what: int, item: Any) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, (what, item))
        except RuntimeError:
            stop.set()  # the loop is closed: nobody is waiting

    def run() -> None:
        try:
            for item in produce():
                put(0, item)
                if stop.is_set():
                    return
            put(1, None)
        except BaseException as e:
            put(2, e)

    loop.run_in_executor(None, run)
    try:
        while True:
            what, item = await q.get()
            if what == 1:
                return
            if what == 2:
                raise item
            yield item
    finally:
        stop.set()  # the thread ends at its next item, closing what it iterates


class AsyncClient:
    """Client's calls as coroutines and async iterators: the same
    arguments, the same results and errors.

        async with AsyncClient("redis://127.0.0.1:6379") as kiln:
            r = await kiln.run("python", "print(6 * 7)")
            async for r in kiln.map(jobs, concurrency=16): ...
    """

    def __init__(self, redis_url: Optional[str] = None, *, brokers: Optional[str] = None,
                 jobs: str = "kiln.jobs", results: str = "kiln.results", control: str = "kiln.control",
                 reply_to: Optional[str] = None, group: Optional[str] = None,
                 kafka_conf: Optional[Dict[str, Any]] = None) -> None:
        if (redis_url is None) == (brokers is None):
            raise ValueError("give redis_url or brokers=, one of them")
        self.reply_to, self.jobs, self.control = reply_to, jobs, control
        self.group = group or "kiln-client-" + new_id("g")[2:14]
        self.sync: Optional[Client] = None
        if brokers is not None:
            self.sync = Client(brokers=brokers, jobs=jobs, results=results, control=control,
                               reply_to=reply_to, kafka_conf=kafka_conf)
            return
        import redis.asyncio
        import redis.exceptions
        self._errors: Any = redis.exceptions
        self.r: Any = redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=5)

    async def _call(self, coro: Awaitable[T]) -> T:
        try:
            return await coro
        except (self._errors.ConnectionError, self._errors.TimeoutError) as e:
            raise KilnConnectionError("redis: %s" % e) from e

    async def submit(self, plugin: str, code: str, **job: Any) -> str:
        """Enqueue a job; its id (Client.submit)."""
        if self.sync:
            return await asyncio.to_thread(self.sync.submit, plugin, code, **job)
        j = build_job(plugin, code, **job)
        await self._call(self.r.xadd(self.jobs, {"job": pack(j)}))
        return str(j["id"])

    async def run(self, plugin: str, code: str, *, timeout: Optional[float] = None, **job: Any) -> Result:
        """Run a job to its end: its Result (Client.run)."""
        if self.sync:
            return await asyncio.to_thread(self.sync.run, plugin, code, timeout=timeout, **job)
        w = self._follow_of(plugin, code, timeout, job)
        async for _ in self._follow(w):
            pass
        return w.result()

    async def stream(self, plugin: str, code: str, *, timeout: Optional[float] = None,
                     **job: Any) -> AsyncIterator[Frame]:
        """Each frame of a job, once, in order, as it comes (Client.stream)."""
        if self.sync:
            sync = self.sync
            async for f in _from_thread(lambda: sync.stream(plugin, code, timeout=timeout, **job)):
                yield f
            return
        async for f in self._follow(self._follow_of(plugin, code, timeout, job)):
            yield f

    async def map(self, jobs: Iterable[Mapping[str, Any]], *, concurrency: int = 16,
                  timeout: Optional[float] = None) -> AsyncIterator[Result]:
        """Run many jobs, at most `concurrency` at once; yield each Result as
        its job ends (Client.map): all of them on one reply stream."""
        if self.sync:
            sync = self.sync
            async for r in _from_thread(lambda: sync.map(jobs, concurrency=concurrency, timeout=timeout)):
                yield r
            return
        stream = self.reply_to or "kiln.reply.map-" + new_id("m")[2:18]
        batch = Batch(jobs, concurrency, timeout, stream)
        reader = await _Reader(self, stream, self.reply_to is not None).open()
        try:
            while batch.busy:
                j = batch.next_job()
                while j is not None:
                    await self._call(self.r.xadd(self.jobs, {"job": pack(j)}))
                    j = batch.next_job()
                for r in batch.take(await reader.read(_READ_SLICE)):
                    yield r
                batch.check_deadlines()
        finally:
            await reader.close()

    async def cancel(self, job_id: str) -> None:
        """Cancel a job (or a session, by its id) wherever it runs."""
        if self.sync:
            await asyncio.to_thread(self.sync.cancel, job_id)
            return
        await self._call(self.r.xadd(self.control, {"cancel": job_id}))

    async def close(self) -> None:
        """Close the connections (the client is done)."""
        if self.sync:
            self.sync.close()
        else:
            await self.r.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _follow_of(self, plugin: str, code: str, timeout: Optional[float], job: Dict[str, Any]) -> Follow:
        return Follow(plugin, code, job, timeout, self.reply_to, lambda job_id: "kiln.reply." + job_id)

    async def _follow(self, w: Follow) -> AsyncIterator[Frame]:
        reader = await _Reader(self, str(w.stream), w.shared).open()
        try:
            await self._call(self.r.xadd(self.jobs, {"job": pack(w.job)}))
            while not w.done:
                for f in w.take(await reader.read(w.left(_READ_SLICE))):
                    yield f
        finally:
            await reader.close()
