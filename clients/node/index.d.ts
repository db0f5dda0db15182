// Types of kiln-client (index.js). The wire contract: schemas/job.v1.md
// and schemas/frame.v1.md in the kiln repository.

export type Status = "ok" | "error" | "timeout" | "oom" | "killed" | "output_limit" | "rejected"
  | "internal" | "cancelled" | "expired" | "session_lost";
export const STATUSES: readonly Status[];

export interface Limits {
  timeout_ms?: number; cpu_ms?: number; memory_mb?: number; pids?: number;
  output_bytes?: number; file_bytes?: number; collect_bytes?: number;
}

export interface TestCase {
  stdin?: string | Uint8Array;
  args?: string[];
  expect?: { stdout?: string | Uint8Array; exit?: number };
  limits?: Limits;
}

export interface JobOptions {
  /** the job id; a random one by default (give one for idempotent submissions) */
  id?: string;
  stdin?: string | Uint8Array;
  args?: string[];
  env?: Record<string, string>;
  files?: Record<string, string | Uint8Array>;
  limits?: Limits;
  /** host patterns (net.allow), or the `net` map itself */
  net?: string[] | { allow: string[] };
  secrets?: Record<string, string>;
  tests?: TestCase[];
  runs?: { stdin?: string | Uint8Array; args?: string[] }[];
  /** a session id, or { id, idle_ms, close, expose }; expose: ports of its
   *  servers to reach from outside (Result.exposed has their URLs) */
  session?: string | { id: string; idle_ms?: number; close?: boolean; expose?: number[] };
  collect?: string | string[];
  meta?: unknown;
  deadline?: number;
  replyTo?: string;
  /** more job keys, as they are */
  extra?: Record<string, unknown>;
}

export interface WaitOptions {
  /** stop waiting when it aborts: the call rejects with its reason */
  signal?: AbortSignal;
  /** when `signal` aborts, cancel the job (map: every job in flight) too */
  cancelOnAbort?: boolean;
}

export interface RunOptions extends JobOptions, WaitOptions {
  /** give up waiting (TimeoutError) after this many ms */
  timeoutMs?: number;
}

export interface MapOptions extends WaitOptions {
  /** jobs in flight at once (default 16) */
  concurrency?: number;
  /** give up on a job (TimeoutError) this many ms after it was sent */
  timeoutMs?: number;
}

export interface JobSpec extends JobOptions { plugin: string; code: string; }

/** One frame as the worker wrote it: stdout, stderr, result, file, case, exit. */
export interface Frame {
  id: string | null;
  seq: number;
  attempt: number;
  kind: "stdout" | "stderr" | "result" | "file" | "case" | "exit";
  data?: Uint8Array;
  [key: string]: unknown;
}

export class Result {
  readonly id: string;
  readonly status: Status | null;
  readonly code: number | null;
  readonly signal: number | null;
  readonly reason: string | null;
  readonly wallMs: number | null;
  readonly cpuMs: number | null;
  readonly maxRssKb: number | null;
  readonly attempt: number | null;
  readonly worker: string | null;
  readonly verdict: string | null;
  readonly session: { id: string; seq?: number } | null;
  readonly meta: unknown;
  readonly stdout: Uint8Array;
  readonly stderr: Uint8Array;
  readonly stdoutText: string;
  readonly stderrText: string;
  /** a session job's values, as text */
  readonly results: string[];
  /** a session's exposed ports (`session.expose`): port -> URL */
  readonly exposed: Record<number, string>;
  readonly cases: Frame[];
  /** `collect` files: path -> bytes */
  readonly files: Record<string, Uint8Array>;
  readonly exit: Frame | Record<string, never>;
  /** every frame of the last attempt, in order */
  readonly frames: Frame[];
  readonly ok: boolean;
  /** this result, or throws JobError when the job did not end ok */
  check(): this;
}

export class Collector {
  constructor(id: string | null);
  add(frame: Frame): Frame | null;
  readonly done: boolean;
  result(): Result;
}

export interface ClientOptions {
  /** redis://[[user]:password@]host[:port][/db], or rediss:// */
  redis?: string;
  /** Kafka bootstrap servers (needs the kafkajs package) */
  brokers?: string | string[];
  /** more kafkajs client options */
  kafka?: Record<string, unknown>;
  jobs?: string;
  results?: string;
  control?: string;
  replyTo?: string;
  group?: string;
}

export class Client {
  constructor(options: ClientOptions);
  /** a redis:// or rediss:// URL, and the other options */
  constructor(url: string, options?: Omit<ClientOptions, "redis" | "brokers" | "kafka">);
  submit(plugin: string, code: string, options?: JobOptions): Promise<string>;
  run(plugin: string, code: string, options?: RunOptions): Promise<Result>;
  stream(plugin: string, code: string, options?: RunOptions): AsyncGenerator<Frame>;
  map(jobs: Iterable<JobSpec> | AsyncIterable<JobSpec>, options?: MapOptions): AsyncGenerator<Result>;
  cancel(id: string): Promise<unknown>;
  close(): Promise<void> | void;
}

export function buildJob(plugin: string, code: string, options?: JobOptions): Record<string, unknown>;
export function newId(prefix?: string): string;

export class KilnError extends Error {}
export class KilnConnectionError extends KilnError {}
export class TimeoutError extends KilnError { readonly jobId: string; }
export class JobError extends KilnError { readonly result: Result; }
