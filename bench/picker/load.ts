// Load generation for the picker benchmark, on loopback only: an open loop (requests at given
// arrival times, latency counted from the intended start so a stalled system cannot hide its
// queue), a closed loop (fixed concurrency, for throughput), HTTP senders over kept-alive undici
// pools, and Envoy's side of ext_proc played with the real protos.

import * as grpc from "@grpc/grpc-js";
import { Agent, Dispatcher, request } from "undici";
import { loadExtProcDefinition } from "../../picker/protos";

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

// --- Envoy's side of ext_proc ----------------------------------------------------------------

type Json = Record<string, unknown>;
type ProcessCall = grpc.ClientDuplexStream<Json, Json>;

const headerMap = (headers: Record<string, string>) => ({
  headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })),
});

function destinationOf(response: Json): string | undefined {
  const common = (response.request_headers as { response?: Json } | undefined)?.response;
  const set = (
    common?.header_mutation as
      | { set_headers?: { header: { key: string; raw_value?: Buffer } }[] }
      | undefined
  )?.set_headers;
  const header = set?.find(h => h.header.key === "x-gateway-destination-endpoint");
  return header?.header.raw_value ? Buffer.from(header.header.raw_value).toString() : undefined;
}

function streamedBody(response: Json, phase: "request_body" | "response_body") {
  return (
    (response[phase] as { response?: Json } | undefined)?.response?.body_mutation as
      | { streamed_response?: { body?: Buffer; end_of_stream?: boolean } }
      | undefined
  )?.streamed_response;
}

/**
 * Plays Envoy with the picker as its ext_proc server in FULL_DUPLEX_STREAMED mode, request and
 * response phases (as the upstream gateway configuration does): request headers and body to the
 * picker, its decision and (rewritten) body back, the request to the chosen pod, the response
 * headers and body through the picker, which hands the body back. One gRPC stream per request
 * over one HTTP/2 connection.
 */
export class EnvoyEmulator {
  private readonly client: grpc.Client;
  private readonly process: (this: grpc.Client) => ProcessCall;

  constructor(
    port: number,
    private readonly upstream: Dispatcher,
  ) {
    const pkg = grpc.loadPackageDefinition(loadExtProcDefinition()) as unknown as {
      envoy: {
        service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } };
      };
    };
    this.client = new pkg.envoy.service.ext_proc.v3.ExternalProcessor(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    );
    this.process = (
      this.client as unknown as { Process: (this: grpc.Client) => ProcessCall }
    ).Process;
  }

  close(): void {
    this.client.close();
  }

  /**
   * `responsePhase: false` leaves the response out of ext_proc (Envoy configured with response
   * headers and body SKIP): the picker is then on the request path only.
   */
  async send(path: string, body: Buffer, responsePhase = true): Promise<SendResult> {
    const call = this.process.call(this.client);
    const inbox: Json[] = [];
    let waiter: (() => void) | undefined;
    let failure: Error | undefined;
    call.on("data", (m: Json) => {
      inbox.push(m);
      waiter?.();
    });
    call.on("error", (err: Error) => {
      failure = err;
      waiter?.();
    });
    const next = async (): Promise<Json> => {
      while (inbox.length === 0) {
        if (failure) throw failure;
        await new Promise<void>(resolve => (waiter = resolve));
        waiter = undefined;
      }
      return inbox.shift()!;
    };
    try {
      call.write({
        request_headers: {
          headers: headerMap({
            ":method": "POST",
            ":path": path,
            ":authority": "gateway",
            "content-type": "application/json",
            "content-length": String(body.length),
          }),
        },
        protocol_config: {
          request_body_mode: "FULL_DUPLEX_STREAMED",
          response_body_mode: responsePhase ? "FULL_DUPLEX_STREAMED" : "NONE",
        },
      });
      call.write({ request_body: { body, end_of_stream: true } });
      const decision = await next();
      if (decision.immediate_response) {
        const status = (decision.immediate_response as { status?: { code?: number } }).status;
        return { status: status?.code ?? 500, error: "immediate response" };
      }
      const destination = destinationOf(decision);
      if (!destination) return { status: 0, error: "no destination" };
      const parts: Buffer[] = [];
      for (;;) {
        const streamed = streamedBody(await next(), "request_body");
        if (!streamed) return { status: 0, error: "expected a streamed request body" };
        parts.push(Buffer.from(streamed.body ?? Buffer.alloc(0)));
        if (streamed.end_of_stream) break;
      }
      const answer = await post(
        this.upstream,
        `http://${destination}${path}`,
        Buffer.concat(parts),
      );
      if (!responsePhase) return answer;
      call.write({
        response_headers: {
          headers: headerMap({
            ":status": String(answer.status),
            "content-type": "application/json",
          }),
        },
      });
      await next();
      call.write({ response_body: { body: answer.body, end_of_stream: true } });
      const echoed = streamedBody(await next(), "response_body");
      // Envoy would pass the body on to the client only now: this is the client's first byte.
      const firstByteAt = performance.now();
      if (!echoed) return { status: 0, error: "expected the response body back" };
      return { status: answer.status, firstByteAt, error: answer.error };
    } catch (err) {
      return { status: 0, error: String(err) };
    } finally {
      call.end();
    }
  }
}
