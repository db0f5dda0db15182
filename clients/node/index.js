// kiln-client: run code on kiln workers from Node, through Redis Streams
// (ioredis) or Kafka (kafkajs, an optional peer dependency loaded only
// when brokers are given), with @msgpack/msgpack for the wire contract
// (schemas/job.v1.md, schemas/frame.v1.md). README.md has the examples.
//
//   import { Client } from "kiln-client";
//   const kiln = new Client("redis://127.0.0.1:6379");
//   const r = await kiln.run("python", "print(6 * 7)");
//   console.log(r.status, r.stdoutText);   // ok 42
//
// run() resolves when the job has ended (whatever its status: a Result,
// not an exception, unless you call result.check()); stream() is an async
// iterator of its frames as they come; map() runs many with at most
// `concurrency` in flight and yields results as they end; cancel() stops
// one (or a session, by its id). An AbortSignal (`signal`) on run, stream
// and map stops the wait; with `cancelOnAbort` it cancels the job too.
import { randomBytes } from "node:crypto";
import { decode, encode } from "@msgpack/msgpack";
import { Redis } from "ioredis";

export const STATUSES = ["ok", "error", "timeout", "oom", "killed", "output_limit", "rejected",
  "internal", "cancelled", "expired", "session_lost"];

export class KilnError extends Error {
  constructor(message, options) { super(message, options); this.name = "KilnError"; }
}
/** The queue could not be reached, or the connection broke. */
export class KilnConnectionError extends KilnError {
  constructor(message, options) { super(message, options); this.name = "KilnConnectionError"; }
}
/** No result within the time given; names the job. */
export class TimeoutError extends KilnError {
  constructor(jobId, ms) {
    super(`no result for job ${jobId} within ${ms} ms (is a worker running?)`);
    this.name = "TimeoutError";
    this.jobId = jobId;
  }
}
/** result.check() on a job that did not end ok. */
export class JobError extends KilnError {
  constructor(result) {
    const code = result.code != null ? ` (code ${result.code})` : "";
    super(`job ${result.id} ended ${result.status}${code}${result.reason ? ": " + result.reason : ""}`);
    this.name = "JobError";
    this.result = result;
  }
}

/** A random id: 16 bytes of entropy, valid as a job or session id. */
export function newId(prefix = "job") {
  return `${prefix}-${randomBytes(16).toString("hex")}`;
}

const bytes = (v, what) => {
  if (v == null || v instanceof Uint8Array) return v;
  if (typeof v === "string") return new TextEncoder().encode(v);
  throw new TypeError(`${what} must be a Uint8Array or a string`);
};

/** The job map (schemas/job.v1.md) for run()'s arguments. */
export function buildJob(plugin, code, o = {}) {
  if (typeof plugin !== "string" || !plugin) throw new TypeError("plugin must be a non-empty string");
  if (typeof code !== "string") throw new TypeError("code must be a string");
  const job = { v: 1, id: o.id ?? newId(), plugin, code };
  if (o.stdin != null) job.stdin = bytes(o.stdin, "stdin");
  if (o.args != null) job.args = o.args.map(String);
  if (o.env) job.env = Object.fromEntries(Object.entries(o.env).map(([k, v]) => [k, String(v)]));
  if (o.files) job.files = Object.fromEntries(Object.entries(o.files).map(([k, v]) => [k, bytes(v, `files[${k}]`)]));
  if (o.limits) job.limits = { ...o.limits };
  if (o.net != null) job.net = Array.isArray(o.net) ? { allow: [...o.net] } : { ...o.net };
  if (o.secrets) job.secrets = { ...o.secrets };
  if (o.tests != null) job.tests = [...o.tests];
  if (o.runs != null) job.runs = [...o.runs];
  if (o.session != null) job.session = typeof o.session === "string" ? { id: o.session } : { ...o.session };
  if (o.collect != null) job.collect = typeof o.collect === "string" ? [o.collect] : [...o.collect];
  if (o.meta !== undefined) job.meta = o.meta;
  if (o.deadline != null) job.deadline = o.deadline;
  if (o.replyTo != null) job.reply_to = o.replyTo;
  if (o.extra) Object.assign(job, o.extra);
  return job;
}

const text = (b) => new TextDecoder().decode(b);
const concat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};

/** How a job ended, with everything it sent back (the last attempt's). */
export class Result {
  constructor(id, frames) {
    this.id = id;
    this.frames = frames;
    const exits = frames.filter((f) => f.kind === "exit" && !("run" in f));
    const e = (this.exit = exits[exits.length - 1] ?? {});
    for (const [k, v] of [["status", "status"], ["code", "code"], ["signal", "signal"], ["reason", "reason"],
      ["wallMs", "wall_ms"], ["cpuMs", "cpu_ms"], ["maxRssKb", "max_rss_kb"], ["attempt", "attempt"],
      ["worker", "worker"], ["verdict", "verdict"], ["session", "session"], ["meta", "meta"]])
      this[k] = e[v] ?? null;
    this.stdout = concat(frames.filter((f) => f.kind === "stdout").map((f) => f.data));
    this.stderr = concat(frames.filter((f) => f.kind === "stderr").map((f) => f.data));
    this.results = frames.filter((f) => f.kind === "result").map((f) => text(f.data));
    this.exposed = Object.fromEntries(frames.filter((f) => f.kind === "exposed").map((f) => [f.port, f.url]));
    this.cases = frames.filter((f) => f.kind === "case");
    this.files = {};
    for (const f of frames.filter((f) => f.kind === "file"))
      this.files[f.path] = concat([this.files[f.path] ?? new Uint8Array(), f.data]);
  }
  get stdoutText() { return text(this.stdout); }
  get stderrText() { return text(this.stderr); }
  get ok() { return this.status === "ok"; }
  /** This result, or a JobError when the job did not end ok. */
  check() { if (this.status !== "ok") throw new JobError(this); return this; }
}

/** A job's frames as they come, any number of times: each (attempt, seq)
 *  once; a later attempt's frames replace an earlier one's. */
export class Collector {
  constructor(id) { this.id = id; this.attempt = 0; this.seen = new Map(); }
  /** The frame if it is new (for streaming), else null. */
  add(f) {
    const attempt = f.attempt ?? 1;
    if (attempt < this.attempt) return null;
    if (attempt > this.attempt) { this.attempt = attempt; this.seen = new Map(); }
    if (this.seen.has(f.seq)) return null;
    this.seen.set(f.seq, f);
    return f;
  }
  get done() { return [...this.seen.values()].some((f) => f.kind === "exit" && !("run" in f)); }
  result() { return new Result(this.id, [...this.seen.values()].sort((a, b) => a.seq - b.seq)); }
}

const unpack = (buf) => { try { return decode(buf); } catch { return null; } };
const READ_SLICE_MS = 1000;

/** Races promises against `signal`: race(p) rejects with the signal's
 *  reason once it aborts. Without a signal, race(p) is p. */
function abortable(signal) {
  if (signal == null) return { race: (p) => p, off() {} };
  if (!(signal instanceof AbortSignal)) throw new TypeError("signal must be an AbortSignal");
  let off = () => {};
  const aborted = new Promise((_, fail) => {
    const on = () => fail(signal.reason);
    if (signal.aborted) return on();
    signal.addEventListener("abort", on, { once: true });
    off = () => signal.removeEventListener("abort", on);
  });
  aborted.catch(() => {}); // observed by the races
  return {
    race(p) { p.catch(() => {}); return Promise.race([p, aborted]); },
    off() { off(); },
  };
}

// ---- transports ------------------------------------------------------------

class RedisTransport {
  constructor(url, o) {
    const conn = { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000,
      retryStrategy: (n) => (n > 3 ? null : 200) };
    this.url = url;
    this.conn = conn;
    this.r = new Redis(url, conn);
    this.r.on("error", () => {}); // surfaced by the calls that fail
    this.jobs = o.jobs; this.control = o.control;
    this.group = o.group ?? `kiln-client-${randomBytes(6).toString("hex")}`;
  }
  async call(fn) {
    try {
      if (this.r.status === "wait") await this.r.connect();
      return await fn(this.r);
    } catch (e) {
      if (e instanceof KilnError) throw e;
      if (/ECONNREFUSED|ECONNRESET|closed|connect|ETIMEDOUT|Stream isn't writeable|max retries/i.test(String(e.message)))
        throw new KilnConnectionError(`redis: ${e.message}`, { cause: e });
      throw e;
    }
  }
  privateReply(id) { return `kiln.reply.${id}`; }
  enqueue(job) { return this.call((r) => r.xadd(this.jobs, "*", "job", Buffer.from(encode(job)))); }
  cancel(id) { return this.call((r) => r.xadd(this.control, "*", "cancel", id)); }
  async reader(stream, shared) {
    const rd = new RedisReader(this, stream, shared);
    await rd.open();
    return rd;
  }
  close() { this.r.disconnect(); }
}

class RedisReader {
  constructor(t, stream, shared) {
    this.t = t; this.stream = stream; this.shared = shared; this.last = "0";
    this.r = new Redis(t.url, t.conn); // its own: a blocking read holds its connection
    this.r.on("error", () => {});
  }
  async call(fn) {
    try {
      if (this.r.status === "wait") await this.r.connect();
      return await fn(this.r);
    } catch (e) {
      throw new KilnConnectionError(`redis: ${e.message}`, { cause: e });
    }
  }
  async open() {
    if (!this.shared) return;
    try {
      await this.call((r) => r.xgroup("CREATE", this.stream, this.t.group, "$", "MKSTREAM"));
    } catch (e) {
      if (!/BUSYGROUP/.test(String(e.message))) throw e;
    }
  }
  async read(ms) {
    const block = Math.max(1, Math.floor(ms));
    const got = await this.call((r) => this.shared
      ? r.xreadgroupBuffer("GROUP", this.t.group, "c", "COUNT", 500, "BLOCK", block, "STREAMS", this.stream, ">")
      : r.xreadBuffer("COUNT", 500, "BLOCK", block, "STREAMS", this.stream, this.last));
    const out = [], ids = [];
    for (const [, entries] of got ?? []) {
      for (const [idBuf, fields] of entries) {
        const id = idBuf.toString();
        this.last = id; ids.push(id);
        for (let i = 0; i + 1 < fields.length; i += 2)
          if (fields[i].toString() === "frame") { const f = unpack(fields[i + 1]); if (f) out.push(f); }
      }
    }
    if (this.shared && ids.length) await this.call((r) => r.xack(this.stream, this.t.group, ...ids));
    return out;
  }
  async close() {
    try { if (!this.shared && this.r.status === "ready") await this.r.del(this.stream); } catch { /* gone */ }
    this.r.disconnect();
  }
}

/** kafkajs, imported on first use: a Redis user need not install it. */
async function loadKafkajs() {
  try {
    return (await import("kafkajs")).default;
  } catch (e) {
    throw new KilnError("Kafka needs the kafkajs package (an optional peer dependency): npm install kafkajs",
      { cause: e });
  }
}

class KafkaTransport {
  constructor(brokers, o) {
    this.brokers = Array.isArray(brokers) ? brokers : brokers.split(",");
    this.options = o.kafka ?? {};
    this.jobs = o.jobs; this.results = o.results; this.control = o.control;
    this.loaded = null;
    this.connected = null;
    this.tails = new Map(); // topic -> KafkaTail
    this.consumersMade = 0;
  }
  /** kafkajs loaded, the client and producer made (once). */
  init() {
    this.loaded ??= loadKafkajs().then((kafkajs) => {
      this.kafka = new kafkajs.Kafka({ brokers: this.brokers, clientId: "kiln-client",
        logLevel: kafkajs.logLevel.NOTHING, ...this.options });
      this.producer = this.kafka.producer({ maxInFlightRequests: 1 }); // (acks: all; at-least-once)
    });
    return this.loaded;
  }
  async call(fn) {
    await this.init();
    try {
      this.connected ??= this.producer.connect();
      await this.connected;
      return await fn();
    } catch (e) {
      throw new KilnConnectionError(`kafka: ${e.message}`, { cause: e });
    }
  }
  privateReply() { return null; }
  enqueue(job, key) {
    return this.call(() => this.producer.send({ topic: this.jobs, messages: [{ key, value: Buffer.from(encode(job)) }] }));
  }
  cancel(id) {
    return this.call(() => this.producer.send({ topic: this.control, messages: [{ key: id, value: Buffer.from(encode({ cancel: id })) }] }));
  }
  /** A reader of a topic's frames from now on. The first reader of a
   *  topic starts one consumer for it that every later reader shares (a
   *  call costs no new consumer); it stops with the transport. */
  async reader(topic) {
    await this.init();
    topic ??= this.results;
    let tail = this.tails.get(topic);
    if (!tail) {
      tail = new KafkaTail(this, topic);
      this.tails.set(topic, tail);
      tail.started = tail.start().catch((e) => { this.tails.delete(topic); throw e; });
    }
    await tail.started;
    return tail.reader();
  }
  async close() {
    for (const tail of this.tails.values()) await tail.stop();
    this.tails.clear();
    if (this.connected) await this.producer.disconnect().catch(() => {});
  }
}

/** One consumer of a results topic, from its end as it was when started,
 *  every partition; each frame goes to every reader open at the time (the
 *  calls filter by job id). */
class KafkaTail {
  constructor(t, topic) { this.t = t; this.topic = topic; this.readers = new Set(); }
  async start() {
    const admin = this.t.kafka.admin();
    try {
      await admin.connect();
      const ends = await admin.fetchTopicOffsets(this.topic);
      this.c = this.t.kafka.consumer({ groupId: `kiln-client-${randomBytes(6).toString("hex")}`,
        readUncommitted: false, maxWaitTimeInMs: 50 });
      this.t.consumersMade++;
      // a consumer that gave up for good is not shared again: the next call starts another
      this.c.on(this.c.events.CRASH, ({ payload }) => {
        if (!payload.restart && this.t.tails.get(this.topic) === this) this.t.tails.delete(this.topic);
      });
      await this.c.connect();
      await this.c.subscribe({ topic: this.topic, fromBeginning: false });
      const ready = new Promise((ok) => this.c.on(this.c.events.GROUP_JOIN, ok));
      await this.c.run({ autoCommit: false, eachMessage: async ({ message }) => {
        const f = unpack(message.value);
        if (f) for (const rd of this.readers) rd.push(f);
      } });
      await ready;
      for (const p of ends) this.c.seek({ topic: this.topic, partition: p.partition, offset: p.offset });
    } catch (e) {
      await this.c?.disconnect().catch(() => {});
      throw new KilnConnectionError(`kafka: ${e.message}`, { cause: e });
    } finally {
      await admin.disconnect();
    }
  }
  reader() {
    const rd = new KafkaReader(this);
    this.readers.add(rd);
    return rd;
  }
  async stop() { this.readers.clear(); await this.c?.disconnect().catch(() => {}); }
}

/** One call's view of a tail: the frames that came since it opened. */
class KafkaReader {
  constructor(tail) { this.tail = tail; this.queue = []; this.wake = null; }
  push(f) { this.queue.push(f); if (this.wake) this.wake(); }
  async read(ms) {
    if (!this.queue.length)
      await new Promise((ok) => { this.wake = ok; setTimeout(ok, ms); });
    this.wake = null;
    return this.queue.splice(0);
  }
  async close() { this.tail.readers.delete(this); this.queue = []; }
}

// ---- the client --------------------------------------------------------------

export class Client {
  /** A Redis URL ("redis://…", "rediss://…"), or { redis: URL } or
   *  { brokers: [...], kafka?: kafkajs options }; jobs, results and control
   *  as the workers name them; replyTo: a shared reply stream for this
   *  client's jobs, read with a consumer group of its own (group). By
   *  default each call reads a private stream (Redis), deleted afterwards,
   *  or the results topic (Kafka) from its end. With a URL, the options
   *  come second: new Client("redis://…", { jobs: "…" }). */
  constructor(o = {}, more = {}) {
    if (typeof o === "string") {
      if (!/^rediss?:\/\//.test(o)) throw new TypeError(`not a redis:// or rediss:// URL: ${o}`);
      o = { ...more, redis: o };
    }
    if ((o.redis == null) === (o.brokers == null)) throw new TypeError("give redis or brokers, one of them");
    const names = { jobs: o.jobs ?? "kiln.jobs", results: o.results ?? "kiln.results",
      control: o.control ?? "kiln.control", group: o.group, kafka: o.kafka };
    this.kafka = o.brokers != null;
    this.t = this.kafka ? new KafkaTransport(o.brokers, names) : new RedisTransport(o.redis, names);
    this.replyTo = o.replyTo ?? null;
  }

  static key(job) {
    return job.session && job.session.id ? job.session.id : job.id; // Kafka: a session's jobs by its id
  }

  /** Enqueue a job; its id. */
  async submit(plugin, code, o = {}) {
    const job = buildJob(plugin, code, o);
    await this.t.enqueue(job, Client.key(job));
    return job.id;
  }

  /** Run a job to its end: its Result (any status). Rejects with
   *  TimeoutError when none came within o.timeoutMs, with o.signal's
   *  reason when it aborts (the job cancelled too if o.cancelOnAbort). */
  async run(plugin, code, o = {}) {
    const col = new Collector(null);
    for await (const _ of this.#follow(plugin, code, o, col)) { /* frames */ }
    return col.result();
  }

  /** Each frame of the job, once, in order, as it comes. */
  async *stream(plugin, code, o = {}) {
    yield* this.#follow(plugin, code, o, new Collector(null));
  }

  /** Run many (an iterable of {plugin, code, ...run options}), at most
   *  `concurrency` at once; yield each Result as its job ends. */
  async *map(jobs, { concurrency = 16, timeoutMs, signal, cancelOnAbort = false } = {}) {
    if (concurrency < 1) throw new RangeError("concurrency must be at least 1");
    const ab = abortable(signal);
    signal?.throwIfAborted();
    const it = (jobs[Symbol.asyncIterator] ?? jobs[Symbol.iterator]).call(jobs);
    const stream = this.replyTo ?? (this.kafka ? null : `kiln.reply.map-${randomBytes(8).toString("hex")}`);
    const rd = await this.t.reader(stream, this.replyTo != null);
    const live = new Map();
    let more = true;
    try {
      while (more || live.size) {
        while (more && live.size < concurrency) {
          const n = await it.next();
          if (n.done) { more = false; break; }
          const { plugin, code, ...rest } = n.value;
          const job = buildJob(plugin, code, rest);
          if (stream) job.reply_to = stream;
          live.set(job.id, { col: new Collector(job.id), deadline: timeoutMs == null ? null : Date.now() + timeoutMs });
          await this.t.enqueue(job, Client.key(job));
        }
        let fs;
        try {
          fs = await ab.race(rd.read(READ_SLICE_MS));
        } catch (e) {
          if (signal?.aborted && cancelOnAbort)
            await Promise.all([...live.keys()].map((id) => this.t.cancel(id).catch(() => {})));
          throw e;
        }
        for (const f of fs) {
          const l = live.get(f.id);
          if (!l) continue;
          l.col.add(f);
          if (l.col.done) { live.delete(f.id); yield l.col.result(); }
        }
        const now = Date.now();
        for (const [id, l] of live) if (l.deadline != null && now > l.deadline) throw new TimeoutError(id, timeoutMs);
      }
    } finally {
      ab.off();
      await rd.close();
    }
  }

  /** Cancel a job, or a session by its id, wherever it runs. */
  cancel(id) { return this.t.cancel(id); }

  close() { return this.t.close(); }

  async *#follow(plugin, code, o, col) {
    const ab = abortable(o.signal);
    o.signal?.throwIfAborted();
    const job = buildJob(plugin, code, o);
    col.id = job.id;
    const shared = this.replyTo != null || o.replyTo != null;
    const stream = o.replyTo ?? this.replyTo ?? this.t.privateReply(job.id);
    if (stream) job.reply_to = stream;
    const rd = await this.t.reader(stream, shared);
    const deadline = o.timeoutMs == null ? null : Date.now() + o.timeoutMs;
    try {
      await this.t.enqueue(job, Client.key(job));
      while (!col.done) {
        const left = deadline == null ? READ_SLICE_MS : deadline - Date.now();
        if (left <= 0) throw new TimeoutError(job.id, o.timeoutMs);
        let fs;
        try {
          fs = await ab.race(rd.read(Math.min(left, READ_SLICE_MS)));
        } catch (e) {
          if (o.signal?.aborted && o.cancelOnAbort) await this.t.cancel(job.id).catch(() => {});
          throw e;
        }
        for (const f of fs)
          if (f.id === job.id && col.add(f)) yield f;
      }
    } finally {
      ab.off();
      await rd.close();
    }
  }
}
