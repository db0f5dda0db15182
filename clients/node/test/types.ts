// Checked by the TypeScript compiler in the tests (tsc --noEmit --strict):
// the declarations of index.d.ts as a TypeScript user writes against them.
import { Client, JobError, KilnError, TimeoutError, type Frame, type Result, type Status } from "../index.js";

async function tour(): Promise<number> {
  const kiln = new Client("redis://127.0.0.1:6379", { jobs: "kiln.jobs" });
  const r: Result = await kiln.run("python", "print(6 * 7)", { timeoutMs: 30000 });
  const status: Status | null = r.status;
  const text: string = r.stdoutText;
  const graded = await kiln.run("python", "print(input())", {
    tests: [{ stdin: "1\n", expect: { stdout: "1\n" } }],
    signal: new AbortController().signal,
    cancelOnAbort: true,
  });
  for (const c of graded.cases) console.log(c.kind, c["verdict"]);
  for await (const f of kiln.stream("shell", "echo hi")) {
    const frame: Frame = f;
    if (frame.data) console.log(frame.kind, frame.data.length);
  }
  const ac = new AbortController();
  let n = 0;
  for await (const res of kiln.map([{ plugin: "shell", code: "true" }], { concurrency: 4, signal: ac.signal })) {
    if (res.ok) n++;
  }
  try {
    r.check();
  } catch (e) {
    if (e instanceof JobError) console.log(e.result.status);
    else if (e instanceof TimeoutError) console.log(e.jobId);
    else if (e instanceof KilnError) throw e;
  }
  await kiln.close();
  const k2 = new Client({ brokers: ["127.0.0.1:9092"], kafka: { ssl: false } });
  await k2.close();
  return n + text.length + (status === "ok" ? 1 : 0);
}

// what must not compile
// @ts-expect-error: a status is one of the contract's
const bad: Status = "fine";
// @ts-expect-error: the URL form takes no brokers
new Client("redis://x", { brokers: ["b:9092"] });

export { tour, bad };
