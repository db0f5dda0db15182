// kiln-client against a real redis-server and kiln workers, started by
// tests/integration/test_client_node.py, which passes where they are:
// KILN_REDIS (URL), KILN_BROKERS (the Kafka dev broker, optional),
// KILN_DIE_JOB (a job id whose worker it kills mid-job), KILN_VECTORS.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { decode } from "@msgpack/msgpack";
import { Redis } from "ioredis";
import { buildJob, Client, Collector, JobError, KilnConnectionError, TimeoutError } from "../index.js";

const REDIS = process.env.KILN_REDIS;
const vector = (name) => decode(readFileSync(join(process.env.KILN_VECTORS, "job", "valid", name + ".msgpack")));
const frame = (name) => decode(readFileSync(join(process.env.KILN_VECTORS, "frame", name + ".msgpack")));
const id = (p) => `${p}-${Math.random().toString(16).slice(2, 14)}`;

test("jobs it builds are the golden vectors; frames it reads are", () => {
  const strip = ({ v, ...rest }) => rest;
  assert.deepEqual(strip(buildJob("python", "x = 1", { id: "s1", session: { id: "sess-1", idle_ms: 60000, close: true } })),
    vector("session"));
  assert.deepEqual(strip(buildJob("deno-eval", "x", { id: "s2", session: "sess-1" })), vector("session_bare"));
  assert.deepEqual(strip(buildJob("python", "pass", { id: "c1", collect: ["out/*.png", "**/*.json", "r.txt"],
    limits: { collect_bytes: 1048576 } })), vector("collect"));
  const col = new Collector("j1");
  for (const f of [frame("stdout"), frame("exit_ok"), frame("stdout")]) col.add(f);
  const r = col.result();
  assert.equal(col.done, true);
  assert.deepEqual([r.status, r.code, r.stdoutText, r.wallMs, r.worker], ["ok", 0, "hello\n", 12, "w-1"]);
  assert.equal(r.frames.length, 2);
});

test("a broken connection is the client's own error", async () => {
  const kiln = new Client({ redis: "redis://127.0.0.1:1" });
  await assert.rejects(kiln.run("shell", "true", { timeoutMs: 5000 }), KilnConnectionError);
  kiln.close();
});

test("every status", { timeout: 120000 }, async () => {
  const kiln = new Client({ redis: REDIS });
  const cases = [
    [await kiln.run("shell", "echo hi"), "ok"],
    [await kiln.run("shell", "exit 3"), "error"],
    [await kiln.run("shell", "sleep 5", { limits: { timeout_ms: 500 } }), "timeout"],
    [await kiln.run("shell", "kill -9 $$"), "killed"],
    [await kiln.run("shell", "yes", { limits: { output_bytes: 1000 } }), "output_limit"],
    [await kiln.run("python", "b = bytearray(200 << 20)", { limits: { memory_mb: 64 } }), "oom"],
    [await kiln.run("no-such-plugin", "x"), "rejected"],
    [await kiln.run("shell", "true", { deadline: 1000 }), "expired"],
  ];
  for (const [r, status] of cases) assert.equal(r.status, status, JSON.stringify(r.exit));
  assert.equal(cases[0][0].stdoutText, "hi\n");
  assert.equal(cases[1][0].code, 3);
  assert.throws(() => cases[1][0].check(), JobError);
  const jid = id("c");
  setTimeout(() => kiln.cancel(jid), 1000);
  assert.equal((await kiln.run("shell", "sleep 30", { id: jid })).status, "cancelled");
  const sid = id("s");
  assert.equal((await kiln.run("python", "a = 40", { session: sid })).status, "ok");
  const r = await kiln.run("python", "a + 2", { session: { id: sid, close: true } });
  assert.deepEqual([r.results, r.session], [["42"], { id: sid, seq: 2 }]);
  assert.equal((await kiln.run("python", "a", { session: sid })).status, "session_lost");
  await kiln.close();
});

test("stream yields output in order as it comes", { timeout: 60000 }, async () => {
  const kiln = new Client({ redis: REDIS });
  const got = [];
  const t0 = Date.now();
  for await (const f of kiln.stream("python", "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.7)\n"))
    got.push([Date.now() - t0, f]);
  assert.equal(got.at(-1)[1].kind, "exit");
  assert.equal(Buffer.concat(got.filter(([, f]) => f.kind === "stdout").map(([, f]) => f.data)).toString(), "0\n1\n2\n");
  const seqs = got.map(([, f]) => f.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.ok(got[0][0] < got.at(-1)[0] - 1000, "the first line came while the job ran");
  await kiln.close();
});

test("the last attempt's frames, once, after a worker died mid-job", { timeout: 90000 }, async () => {
  const kiln = new Client({ redis: REDIS });
  const code = "import os, time\nprint('attempt', os.environ['KILN_ATTEMPT'], flush=True)\n" +
    "time.sleep(4 if os.environ['KILN_ATTEMPT'] == '1' else 0)\nprint('done')\n";
  const seen = [];
  const col = new Collector(process.env.KILN_DIE_JOB);
  for await (const f of kiln.stream("python", code, { id: process.env.KILN_DIE_JOB, timeoutMs: 80000 })) {
    seen.push([f.attempt, f.kind]);
    col.add(f);
  }
  const r = col.result();
  assert.deepEqual([r.status, r.attempt, r.stdoutText], ["ok", 2, "attempt 2\ndone\n"]);
  assert.deepEqual(seen[0], [1, "stdout"]);
  await kiln.close();
});

test("map: 500 jobs, never more than the bound in flight", { timeout: 300000 }, async () => {
  const kiln = new Client({ redis: REDIS });
  let enqueued = 0, yielded = 0, most = 0;
  const real = kiln.t.enqueue.bind(kiln.t);
  kiln.t.enqueue = (job, key) => { enqueued++; most = Math.max(most, enqueued - yielded); return real(job, key); };
  const jobs = Array.from({ length: 500 }, (_, i) => ({ plugin: "shell", code: `echo $((${i} * 2))` }));
  const outs = [];
  for await (const r of kiln.map(jobs, { concurrency: 8, timeoutMs: 120000 })) {
    yielded++;
    assert.equal(r.status, "ok");
    outs.push(Number(r.stdoutText));
  }
  assert.deepEqual(outs.sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => 2 * i));
  assert.equal(most, 8);
  await kiln.close();
});

test("a timeout names the job", { timeout: 30000 }, async () => {
  const kiln = new Client({ redis: REDIS });
  const jid = id("t");
  await assert.rejects(kiln.run("shell", "sleep 10", { id: jid, timeoutMs: 500 }),
    (e) => e instanceof TimeoutError && e.message.includes(jid) && e.jobId === jid);
  await kiln.close();
});

test("a URL is enough; an AbortSignal stops the wait and, if asked, the job", { timeout: 60000 }, async () => {
  const kiln = new Client(REDIS);
  assert.equal((await kiln.run("shell", "echo url")).stdoutText, "url\n");
  assert.throws(() => new Client("http://127.0.0.1:6379"), TypeError);
  // aborted before: nothing is sent
  await assert.rejects(kiln.run("shell", "true", { signal: AbortSignal.abort(new Error("before")) }), /before/);
  // aborted while the job runs: the wait ends at once, and the job is cancelled
  const ac = new AbortController();
  const jid = id("abort");
  const t0 = Date.now();
  const reply = `kiln.abort.${jid}`; // a shared reply stream: it outlives the call
  const running = kiln.run("shell", "echo started; sleep 30; echo late",
    { id: jid, replyTo: reply, signal: ac.signal, cancelOnAbort: true });
  const r = new Redis(REDIS);
  const exitOf = async () => {
    for (const [, fields] of await r.xrangeBuffer(reply, "-", "+")) {
      const f = decode(fields[1]);
      if (f.kind === "exit") return f;
    }
    return null;
  };
  const stdoutSeen = async () => (await r.xrangeBuffer(reply, "-", "+")).length > 0;
  while (!(await stdoutSeen())) await new Promise((ok) => setTimeout(ok, 50));
  ac.abort(new Error("enough"));
  await assert.rejects(running, /enough/);
  assert.ok(Date.now() - t0 < 20000, "the wait ended before the job would have");
  let exit = null;
  for (let i = 0; i < 300 && !exit; i++) { exit = await exitOf(); if (!exit) await new Promise((ok) => setTimeout(ok, 100)); }
  assert.equal(exit?.status, "cancelled", "the job was cancelled");
  r.disconnect();
  await kiln.close();
});

test("a session's exposed port comes back as a URL that answers", { timeout: 90000 }, async () => {
  const kiln = new Client(REDIS);
  const sid = id("x");
  const code = "import http.server, threading\n" +
    "class H(http.server.BaseHTTPRequestHandler):\n" +
    "    def do_GET(self):\n" +
    "        self.send_response(200); self.send_header('Content-Length', '4'); self.end_headers()\n" +
    "        self.wfile.write(b'node')\n" +
    "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 8000), H)\n" +
    "threading.Thread(target=srv.serve_forever, daemon=True).start()";
  try {
    const r = await kiln.run("python", code, { session: { id: sid, expose: [8000] }, timeoutMs: 80000 });
    assert.equal(r.status, "ok", r.reason);
    assert.deepEqual(Object.keys(r.exposed), ["8000"]);
    assert.match(r.exposed[8000], /^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32}\/$/);
    const res = await fetch(r.exposed[8000] + "x");
    assert.deepEqual([res.status, await res.text()], [200, "node"]);
    await kiln.run("python", "1", { session: { id: sid, close: true }, timeoutMs: 80000 });
  } finally {
    await kiln.close();
  }
});

test("over Kafka", { timeout: 180000, skip: process.env.KILN_BROKERS ? false : "no KILN_BROKERS" }, async () => {
  const kiln = new Client({ brokers: process.env.KILN_BROKERS });
  try {
    const r = await kiln.run("shell", "echo kafka", { timeoutMs: 90000 });
    assert.deepEqual([r.status, r.stdoutText], ["ok", "kafka\n"]);
    const outs = [];
    for await (const x of kiln.map(Array.from({ length: 20 }, (_, i) => ({ plugin: "shell", code: `echo ${i}` })),
      { concurrency: 5, timeoutMs: 90000 })) outs.push(Number(x.stdoutText));
    assert.deepEqual(outs.sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
    const sid = id("s");
    await kiln.run("python", "v = 1", { session: sid, timeoutMs: 90000 });
    assert.deepEqual((await kiln.run("python", "v + 1", { session: sid, timeoutMs: 90000 })).results, ["2"]);
    // run, map, run, run: every call read through the one consumer the first made
    assert.equal(kiln.t.consumersMade, 1, "one Kafka consumer for every call");
  } finally {
    await kiln.close();
  }
});
