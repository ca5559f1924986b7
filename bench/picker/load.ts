// Load generation for the picker benchmark, on loopback only. Part (b) (latencies of hundreds of
// milliseconds, streamed answers) uses the open and closed loops here: an open loop (requests at
// given arrival times, latency counted from the intended start so a stalled system cannot hide
// its queue), a closed loop (fixed concurrency, for throughput), HTTP senders over kept-alive
// undici pools. Part (a) measures fractions of a millisecond and uses the Go load generator
// (bench/loadgen) through `goLoad`, which also plays Envoy's side of ext_proc.

import { spawn } from "node:child_process";
import { Agent, Dispatcher, request } from "undici";

export interface SendResult {
  status: number;
  /** performance.now() when the first response body byte arrived. */
  firstByteAt?: number;
  error?: string;
}

export type Send = (i: number) => Promise<SendResult>;

export interface Sample {
  index: number;
  status: number;
  error?: string;
  /** From the intended start. */
  latencyMs: number;
  ttftMs?: number;
  /** Intended start, ms after the run began. */
  offsetMs: number;
}

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

/**
 * Sends request i at `arrivalsMs[i]` after the start, whatever happened to the earlier ones.
 * At most `maxInflight` at once (further arrivals count as failed: the client gave up), and the
 * run ends `drainTimeoutMs` after the last arrival at the latest.
 */
export async function openLoop(
  arrivalsMs: readonly number[],
  send: Send,
  opts: { maxInflight: number; drainTimeoutMs: number },
): Promise<Sample[]> {
  const samples: Sample[] = [];
  const pending = new Set<Promise<void>>();
  const t0 = performance.now();
  for (let i = 0; i < arrivalsMs.length; i++) {
    const due = t0 + arrivalsMs[i];
    const wait = due - performance.now();
    if (wait >= 1) await sleep(wait);
    if (pending.size >= opts.maxInflight) {
      samples.push({
        index: i,
        status: 0,
        error: "client in-flight limit",
        latencyMs: NaN,
        offsetMs: arrivalsMs[i],
      });
      continue;
    }
    const index = i;
    const p: Promise<void> = send(index).then(
      r => {
        const end = performance.now();
        samples.push({
          index,
          status: r.status,
          error: r.error,
          latencyMs: end - due,
          ttftMs: r.firstByteAt !== undefined ? r.firstByteAt - due : undefined,
          offsetMs: arrivalsMs[index],
        });
        pending.delete(p);
      },
      err => {
        samples.push({
          index,
          status: 0,
          error: String(err),
          latencyMs: performance.now() - due,
          offsetMs: arrivalsMs[index],
        });
        pending.delete(p);
      },
    );
    pending.add(p);
  }
  const deadline = sleep(opts.drainTimeoutMs).then(() => "timeout" as const);
  while (pending.size > 0) {
    if ((await Promise.race([Promise.race(pending), deadline])) === "timeout") break;
  }
  return samples;
}

export interface ClosedLoopResult {
  completed: number;
  failed: number;
  seconds: number;
  latenciesMs: number[];
}

/** `concurrency` workers send back to back for `durationMs`. */
export async function closedLoop(
  send: Send,
  concurrency: number,
  durationMs: number,
): Promise<ClosedLoopResult> {
  const latenciesMs: number[] = [];
  let failed = 0;
  let index = 0;
  const t0 = performance.now();
  const end = t0 + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const start = performance.now();
        const r = await send(index++).catch(err => ({ status: 0, error: String(err) }));
        if (r.status === 200) latenciesMs.push(performance.now() - start);
        else failed++;
      }
    }),
  );
  return {
    completed: latenciesMs.length,
    failed,
    seconds: (performance.now() - t0) / 1000,
    latenciesMs,
  };
}

// --- HTTP -----------------------------------------------------------------------------------

export function keepAliveAgent(connections = 128): Agent {
  return new Agent({ connections, keepAliveTimeout: 60_000, pipelining: 1 });
}

/** POSTs the body and reads the whole response (SSE included), noting the first body byte. */
export async function post(
  agent: Dispatcher,
  url: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<SendResult & { body: Buffer }> {
  try {
    const res = await request(url, {
      method: "POST",
      dispatcher: agent,
      headers: { "content-type": "application/json", ...headers },
      body,
    });
    const chunks: Buffer[] = [];
    let firstByteAt: number | undefined;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      firstByteAt ??= performance.now();
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks);
    return {
      status: res.statusCode,
      firstByteAt,
      body: text,
      error: res.statusCode === 200 ? undefined : text.toString("utf8").slice(0, 200),
    };
  } catch (err) {
    return { status: 0, error: String(err), body: Buffer.alloc(0) };
  }
}

// --- The Go load generator (part (a)) --------------------------------------------------------

/** What one phase sends; bench/loadgen/main.go's LoadSpec. */
export type GoLoadTarget =
  | { kind: "http"; url: string }
  | {
      kind: "extproc";
      addr: string;
      path: string;
      responsePhase: boolean;
      /** The exchange ends at the decision: nothing goes to the pods (the picker alone is measured). */
      decisionOnly?: boolean;
    };

export type GoLoadPhase =
  | { phase: "single"; count: number }
  | { phase: "open"; count: number; rate: number; maxInflight: number; drainMs: number }
  /** Request i sent at arrivalsMs[i] after the start (e.g. Poisson arrivals). */
  | {
      phase: "open";
      arrivalsMs: number[];
      maxInflight: number;
      drainMs: number;
      timeoutMs?: number;
    }
  | { phase: "closed"; concurrency: number; durationMs: number };

export interface GoLoadResult {
  /** Every request of the phase, lost ones included (status 0). */
  samples: Sample[];
  /** Of them, not sent (the in-flight limit) or not answered within the drain time. */
  lost: number;
  /** Of those, not sent. */
  unsent: number;
  errors: string[];
  seconds: number;
  /** How late the open loop started its requests: the load generator's own stalls. */
  sendLateP99Ms: number;
  sendLateMaxMs: number;
}

/**
 * Runs one phase in bench/loadgen (the binary from hack/build-binaries.sh): each request's
 * body is one of `bodies`, drawn with `weights` (without weights: request i gets bodies[i]);
 * `warmupRequests` go first with 16 in flight and are not recorded. `extra`: request headers for
 * every request, the per-request timeout (default 10 s).
 */
export function goLoad(
  binary: string,
  target: GoLoadTarget,
  bodies: { bodies: Buffer[]; weights?: number[] },
  phase: GoLoadPhase,
  warmupRequests = 200,
  extra: { headers?: Record<string, string>; timeoutMs?: number } = {},
  /** Runs the load generator on these CPUs only (Linux `taskset --cpu-list`), e.g. "0". */
  cpus?: string,
): Promise<GoLoadResult> {
  const spec = {
    ...target,
    ...phase,
    bodies: bodies.bodies.map(b => b.toString("utf8")),
    weights: bodies.weights ?? [],
    inOrder: bodies.weights === undefined,
    seed: 11,
    warmupRequests,
    ...extra,
  };
  return new Promise((resolve, reject) => {
    const [command, argv] = cpus ? ["taskset", ["--cpu-list", cpus, binary]] : [binary, []];
    const child = spawn(command, argv, { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", reject);
    child.on("close", code => {
      if (code !== 0) return reject(new Error(`loadgen exited with ${code}: ${err.trim()}`));
      const r = JSON.parse(out) as {
        samples: [number, number, number, number?, number?][] | null;
        unsent: number;
        unanswered: number;
        errors: string[] | null;
        seconds: number;
        sendLateP99Ms: number;
        sendLateMaxMs: number;
      };
      resolve({
        // In the order of their starts; a latency of -1: never sent, or never answered.
        samples: (r.samples ?? []).map(([offsetMs, latencyMs, status, index, ttft], k) => ({
          index: index ?? k,
          offsetMs,
          latencyMs: latencyMs < 0 ? NaN : latencyMs,
          ttftMs: ttft === undefined || ttft < 0 ? undefined : ttft,
          status,
          error: latencyMs < 0 ? "not sent or not answered" : undefined,
        })),
        lost: r.unsent + r.unanswered,
        unsent: r.unsent,
        errors: r.errors ?? [],
        seconds: r.seconds,
        sendLateP99Ms: r.sendLateP99Ms,
        sendLateMaxMs: r.sendLateMaxMs,
      });
    });
    child.stdin.end(JSON.stringify(spec));
  });
}
