"""AsyncClient: the same calls as Client, for asyncio. On Redis it uses
redis-py's asyncio API; on Kafka, Client's calls in a thread each."""
import asyncio
import time

from ._errors import KilnConnectionError, TimeoutError
from ._jobs import Collector, build_job, new_id, pack
from ._transport import entries
from .client import Client

_READ_SLICE = 1.0


class AsyncClient:
    def __init__(self, redis_url=None, *, brokers=None, jobs="kiln.jobs", results="kiln.results",
                 control="kiln.control", reply_to=None, group=None, kafka_conf=None):
        if (redis_url is None) == (brokers is None):
            raise ValueError("give redis_url or brokers=, one of them")
        self.reply_to, self.jobs, self.control = reply_to, jobs, control
        self.group = group or "kiln-client-" + new_id("g")[2:14]
        self.sync = None
        if brokers is not None:
            self.sync = Client(brokers=brokers, jobs=jobs, results=results, control=control,
                               reply_to=reply_to, kafka_conf=kafka_conf)
            return
        import redis.asyncio
        import redis.exceptions
        self._errors = redis.exceptions
        self.r = redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=5)

    async def _call(self, coro):
        try:
            return await coro
        except (self._errors.ConnectionError, self._errors.TimeoutError) as e:
            raise KilnConnectionError("redis: %s" % e) from e

    async def submit(self, plugin, code, **job):
        if self.sync:
            return await asyncio.to_thread(self.sync.submit, plugin, code, **job)
        j = build_job(plugin, code, **job)
        await self._call(self.r.xadd(self.jobs, {"job": pack(j)}))
        return j["id"]

    async def run(self, plugin, code, *, timeout=None, **job):
        if self.sync:
            return await asyncio.to_thread(self.sync.run, plugin, code, timeout=timeout, **job)
        col = Collector(None)
        async for _ in self._follow(plugin, code, timeout, job, col):
            pass
        return col.result()

    async def stream(self, plugin, code, *, timeout=None, **job):
        if self.sync:
            frames = await asyncio.to_thread(lambda: list(self.sync.stream(plugin, code, timeout=timeout, **job)))
            for f in frames:
                yield f
            return
        async for f in self._follow(plugin, code, timeout, job, Collector(None)):
            yield f

    async def map(self, jobs, *, concurrency=16, timeout=None):
        """Yield each Result as its job ends; at most `concurrency` at once."""
        if self.sync:
            results = await asyncio.to_thread(lambda: list(self.sync.map(jobs, concurrency=concurrency,
                                                                         timeout=timeout)))
            for r in results:
                yield r
            return
        sem = asyncio.Semaphore(concurrency)
        done = asyncio.Queue()

        async def one(spec):
            async with sem:
                spec = dict(spec)
                try:
                    r = await self.run(spec.pop("plugin"), spec.pop("code"), timeout=timeout, **spec)
                    await done.put(r)
                except BaseException as e:
                    await done.put(e)
        tasks = [asyncio.create_task(one(s)) for s in jobs]
        try:
            for _ in tasks:
                r = await done.get()
                if isinstance(r, BaseException):
                    raise r
                yield r
        finally:
            for t in tasks:
                t.cancel()

    async def cancel(self, job_id):
        if self.sync:
            return await asyncio.to_thread(self.sync.cancel, job_id)
        await self._call(self.r.xadd(self.control, {"cancel": job_id}))

    async def close(self):
        if self.sync:
            self.sync.close()
        else:
            await self.r.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _follow(self, plugin, code, timeout, job, col):
        j = build_job(plugin, code, **job)
        col.id = j["id"]
        shared = self.reply_to is not None or "reply_to" in job
        stream = job.get("reply_to") or self.reply_to or "kiln.reply." + j["id"]
        j["reply_to"] = stream
        last = "0"
        if shared:
            try:
                await self._call(self.r.xgroup_create(stream, self.group, id="$", mkstream=True))
            except self._errors.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            await self._call(self.r.xadd(self.jobs, {"job": pack(j)}))
            while not col.done:
                left = _READ_SLICE if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(j["id"], timeout)
                ms = max(1, int(min(left, _READ_SLICE) * 1000))
                if shared:
                    got = await self._call(self.r.xreadgroup(self.group, "c", {stream: ">"}, count=500, block=ms))
                else:
                    got = await self._call(self.r.xread({stream: last}, count=500, block=ms))
                frames, ids, newest = entries(got)
                last = newest or last
                for f in frames:
                    if f.get("id") == j["id"]:
                        for g in col.add(f):
                            yield g
                if shared and ids:
                    await self._call(self.r.xack(stream, self.group, *ids))
        finally:
            if not shared:
                try:
                    await self.r.delete(stream)
                except Exception:
                    pass
