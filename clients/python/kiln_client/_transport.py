"""Where jobs go and frames come from: Redis Streams (redis-py) or Kafka
(confluent_kafka). A transport enqueues a job and opens readers of a
reply stream or topic; the client (client.py) does the rest."""
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, TypeVar

from ._errors import KilnConnectionError
from ._jobs import Frame, Job, new_id, pack, unpack

T = TypeVar("T")


class Reader(Protocol):
    """Frames of one reply stream or topic."""

    def read(self, timeout: float) -> List[Frame]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Where jobs go (enqueue, cancel) and frames come from (reader)."""

    def private_reply(self, job_id: str) -> Optional[str]: ...

    def enqueue(self, job: Job, key: str) -> None: ...

    def cancel(self, job_id: str) -> None: ...

    def reader(self, stream: Optional[str], shared: bool) -> Reader: ...

    def close(self) -> None: ...


def entries(reply: Any) -> Tuple[List[Frame], List[bytes], Optional[bytes]]:
    """An XREAD/XREADGROUP reply as (frames, entry ids, the last id): the
    frames decoded, entries that hold none skipped."""
    frames: List[Frame] = []
    ids: List[bytes] = []
    last: Optional[bytes] = None
    for _, got in reply or []:
        for entry_id, fields in got:
            last = entry_id
            ids.append(entry_id)
            raw = fields.get(b"frame")
            if raw is not None:
                try:
                    frames.append(unpack(raw))
                except Exception:
                    pass  # not a frame of ours
    return frames, ids, last


class RedisTransport:
    def __init__(self, url: str, jobs: str, control: str, group: Optional[str] = None) -> None:
        import redis
        self._redis = redis
        self.r = redis.Redis.from_url(url, socket_connect_timeout=5, socket_keepalive=True)
        self.jobs, self.control = jobs, control
        self.group = group or "kiln-client-" + new_id("g")[2:14]

    def _call(self, fn: Callable[..., T], *a: Any, **kw: Any) -> T:
        try:
            return fn(*a, **kw)
        except self._redis.exceptions.ConnectionError as e:
            raise KilnConnectionError("redis: %s" % e) from e
        except self._redis.exceptions.TimeoutError as e:
            raise KilnConnectionError("redis: %s" % e) from e

    def private_reply(self, job_id: str) -> Optional[str]:
        return "kiln.reply." + job_id

    def enqueue(self, job: Job, key: str) -> None:
        self._call(self.r.xadd, self.jobs, {"job": pack(job)})

    def cancel(self, job_id: str) -> None:
        self._call(self.r.xadd, self.control, {"cancel": job_id})

    def reader(self, stream: Optional[str], shared: bool) -> Reader:
        assert stream is not None  # Redis always names a reply stream
        return RedisReader(self, stream, shared)

    def close(self) -> None:
        self.r.close()


class RedisReader:
    """Frames of one reply stream: a private one from its start (deleted
    at close), or a shared one through a consumer group of this client."""

    def __init__(self, t: RedisTransport, stream: str, shared: bool) -> None:
        self.t, self.stream, self.shared = t, stream, shared
        self.last: Any = "0"
        if shared:
            try:
                t._call(t.r.xgroup_create, stream, t.group, id="$", mkstream=True)
            except t._redis.exceptions.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def read(self, timeout: float) -> List[Frame]:
        """Frames that came (maybe none), waiting up to `timeout` s."""
        ms = max(1, int(timeout * 1000))
        t = self.t
        if self.shared:
            got = t._call(t.r.xreadgroup, t.group, "c", {self.stream: ">"}, count=500, block=ms)
        else:
            got = t._call(t.r.xread, {self.stream: self.last}, count=500, block=ms)
        out, ids, last = entries(got)
        self.last = last or self.last
        if self.shared and ids:
            t._call(t.r.xack, self.stream, t.group, *ids)
        return out

    def close(self) -> None:
        if not self.shared:
            try:
                self.t.r.delete(self.stream)
            except self.t._redis.exceptions.RedisError:
                pass


class KafkaTransport:
    def __init__(self, brokers: str, jobs: str, results: str, control: str,
                 conf: Optional[Dict[str, Any]] = None) -> None:
        import confluent_kafka
        self._ck = confluent_kafka
        self.conf = dict({"bootstrap.servers": brokers}, **(conf or {}))
        self.jobs, self.results, self.control = jobs, results, control
        self.producer = confluent_kafka.Producer(dict(self.conf, **{"linger.ms": 1, "enable.idempotence": True}))
        # consumers not in use, by topic: a call takes one (or makes one when
        # none is free) and gives it back, so a call costs no new consumer
        self._idle: Dict[str, List[Any]] = {}

    def private_reply(self, job_id: str) -> Optional[str]:
        return None  # topics are not made per job: the results topic, filtered by key

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        err: List[Any] = []
        self.producer.produce(topic, value, key=key, on_delivery=lambda e, m: err.append(e))
        left = 30.0
        while not err and left > 0:
            self.producer.poll(0.05)
            left -= 0.05
        if not err or err[0] is not None:
            raise KilnConnectionError("kafka: %s not delivered: %s" % (topic, err[0] if err else "timed out"))

    def enqueue(self, job: Job, key: str) -> None:
        self._produce(self.jobs, key, pack(job))

    def cancel(self, job_id: str) -> None:
        self._produce(self.control, job_id, pack({"cancel": job_id}))

    def reader(self, stream: Optional[str], shared: bool) -> Reader:
        topic = stream or self.results
        idle = self._idle.get(topic)
        return KafkaReader(self, topic, idle.pop() if idle else None)

    def _give_back(self, topic: str, consumer: Any) -> None:
        self._idle.setdefault(topic, []).append(consumer)

    def close(self) -> None:
        self.producer.flush(5)
        for consumers in self._idle.values():
            for c in consumers:
                c.close()
        self._idle = {}


class KafkaReader:
    """Frames of a results topic from its end as it was when opened
    (read_committed); every frame, whichever job: the client filters. Its
    consumer is one the transport kept from an earlier call, else new; it
    goes back to the transport at close."""

    def __init__(self, t: KafkaTransport, topic: str, consumer: Any = None) -> None:
        ck = t._ck
        self.t, self.topic = t, topic
        self.c = consumer or ck.Consumer(dict(t.conf, **{"group.id": "kiln-client-" + new_id("r")[2:14],
                                                         "enable.auto.commit": False,
                                                         "isolation.level": "read_committed",
                                                         "fetch.wait.max.ms": 50}))
        try:
            md = self.c.list_topics(topic, timeout=10)
            if topic not in md.topics or md.topics[topic].error is not None:
                raise KilnConnectionError("kafka: no topic %s" % topic)
            parts = []
            for p in md.topics[topic].partitions:
                lo, hi = self.c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)
                parts.append(ck.TopicPartition(topic, p, hi))
            self.c.assign(parts)  # (a kept consumer: from the end as it is now)
        except BaseException:
            self.c.close()
            raise

    def read(self, timeout: float) -> List[Frame]:
        out: List[Frame] = []
        end = time.monotonic() + timeout
        while True:
            m = self.c.poll(max(0.0, min(0.2, end - time.monotonic())))
            if m is not None and not m.error():
                try:
                    out.append(unpack(m.value()))
                except Exception:
                    pass
            if out or time.monotonic() >= end:
                return out

    def close(self) -> None:
        self.t._give_back(self.topic, self.c)
