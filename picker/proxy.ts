// The standalone front door: an OpenAI-compatible HTTP proxy on undici, deciding with the same
// core as ext_proc. Bodies are buffered (needed to read and rewrite `model`), responses stream
// back untouched chunk by chunk (SSE included). A request whose connection to the chosen
// endpoint fails before any response byte arrived is retried on the next ranked endpoint.

import http from "node:http";
import { AddressInfo } from "node:net";
import { Agent, Dispatcher } from "undici";
import { CancellationFlag, RequestRouter, RouteDecision, RouteSuccess } from "./core/router";
import { PickerError, PoolView, errorBody, pickerError } from "./core/types";
import { ResponseUsage } from "./core/usage";
import { PickerMetrics } from "./metrics";

export interface ProxyConfig {
  maxBodyBytes: number;
  /** Further endpoints tried when connecting fails (0: no retry). */
  maxRetries: number;
  connectTimeoutMs: number;
  /** Until the model server's response headers (a non-streamed generation can take long). */
  headersTimeoutMs: number;
  /** Longest silence between two response chunks. */
  bodyTimeoutMs: number;
  /** Until the client's whole request has arrived. */
  requestReadTimeoutMs: number;
  /** Non-streamed responses are kept up to this size to read `usage`. */
  maxResponseBufferBytes: number;
  destinationHeader: string;
}

export const defaultProxyConfig: ProxyConfig = {
  maxBodyBytes: 10 << 20,
  maxRetries: 2,
  connectTimeoutMs: 2000,
  headersTimeoutMs: 300_000,
  bodyTimeoutMs: 300_000,
  requestReadTimeoutMs: 60_000,
  maxResponseBufferBytes: 4 << 20,
  destinationHeader: "x-gateway-destination-endpoint",
};

export interface ProxyDeps {
  router: RequestRouter;
  pool: PoolView;
  metrics: PickerMetrics;
  config: ProxyConfig;
  now: () => number;
  log?: (message: string) => void;
}

type Route = { methods: string[]; kind: "inference" | "bodyless" };

const routes: Record<string, Route> = {
  "/v1/chat/completions": { methods: ["POST"], kind: "inference" },
  "/v1/completions": { methods: ["POST"], kind: "inference" },
  "/v1/models": { methods: ["GET"], kind: "bodyless" },
};

/** Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1). */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** Not forwarded either: the proxy sets its own Host, length (the body may change) and Expect. */
const hopByHop = new Set([...HOP_BY_HOP_HEADERS, "host", "content-length", "expect"]);

/** Errors that prove no request reached a model server's application: safe to retry. */
const connectErrors = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

function errorCode(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 3 && e; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return "";
}

function sendError(
  res: http.ServerResponse,
  err: PickerError,
  extra: http.OutgoingHttpHeaders = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(err);
  res.writeHead(err.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...extra,
  });
  res.end(body);
}

function forwardHeaders(req: http.IncomingMessage, destinationHeader: string, bodyLength: number) {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value === undefined || hopByHop.has(key) || key.startsWith(destinationHeader)) continue;
    out[key] = value;
  }
  if (bodyLength > 0) out["content-length"] = String(bodyLength);
  return out;
}

function responseHeaders(headers: Record<string, string | string[] | undefined>) {
  const out: http.OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) {
    if (value !== undefined && !hopByHop.has(key)) out[key] = value;
  }
  const length = headers["content-length"];
  if (typeof length === "string") out["content-length"] = length;
  return out;
}

function readBody(
  req: http.IncomingMessage,
  limit: number,
): Promise<{ ok: true; body: Buffer } | { ok: false; error: PickerError }> {
  return new Promise(resolve => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      resolve({
        ok: false,
        error: pickerError(
          "PayloadTooLarge",
          `request body of ${declared} bytes exceeds the limit of ${limit}`,
        ),
      });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        resolve({
          ok: false,
          error: pickerError("PayloadTooLarge", `request body exceeds the limit of ${limit} bytes`),
        });
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (done) return;
      done = true;
      resolve({ ok: true, body: Buffer.concat(chunks, size) });
    });
    req.on("error", () => {
      if (done) return;
      done = true;
      resolve({
        ok: false,
        error: pickerError("BadRequest", "the request body could not be read"),
      });
    });
  });
}

export class InferenceProxy {
  readonly agent: Agent;

  constructor(private readonly deps: ProxyDeps) {
    const { config } = deps;
    this.agent = new Agent({
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.headersTimeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  /** The node:http request listener. */
  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    this.serve(req, res).catch(err => {
      this.deps.log?.(`proxy: internal error: ${err instanceof Error ? err.stack : String(err)}`);
      sendError(res, pickerError("Internal", "internal error in the endpoint picker"));
    });
  };

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const startMs = this.deps.now();
    const path = (req.url ?? "/").split("?")[0];
    const route = routes[path];
    if (!route) {
      sendError(
        res,
        pickerError("NotFound", `no such path: ${path}; use ${Object.keys(routes).join(", ")}`),
      );
      return;
    }
    if (!route.methods.includes(req.method ?? "")) {
      sendError(
        res,
        pickerError("MethodNotAllowed", `method ${req.method} is not allowed on ${path}`),
        {
          allow: route.methods.join(", "),
        },
      );
      return;
    }
    const clientGone = new CancellationFlag();
    res.on("close", () => {
      if (!res.writableFinished) clientGone.abort();
    });
    let decision: RouteDecision;
    if (route.kind === "bodyless") {
      decision = this.deps.metrics.timedDecision(() =>
        this.deps.router.decideBodyless(this.deps.now()),
      );
      if (!decision.ok) {
        sendError(res, decision.error);
        return;
      }
    } else {
      const read = await readBody(req, this.deps.config.maxBodyBytes);
      if (!read.ok) {
        this.deps.metrics.recordRequest("", "");
        this.deps.metrics.recordError("", "", read.error.code);
        sendError(res, read.error, read.error.status === 413 ? { connection: "close" } : {});
        return;
      }
      const header = (name: string) => {
        const v = req.headers[name];
        return Array.isArray(v) ? v.join(",") : v;
      };
      const decided = this.deps.metrics.timedDecision(() =>
        this.deps.router.decideOrHold(
          { body: read.body, header, nowMs: this.deps.now() },
          clientGone,
        ),
      );
      // Held by flow control until a pod has a free slot.
      decision = decided instanceof Promise ? await decided : decided;
      if (clientGone.aborted) {
        if (decision.ok)
          this.deps.pool.noteCompleted(decision.endpoints[0].address, decision.adapter);
        return;
      }
      this.deps.metrics.recordRequest(decision.model, decision.targetModel);
      if (!decision.ok) {
        this.deps.metrics.recordError(decision.model, decision.targetModel, decision.error.code);
        sendError(res, decision.error);
        return;
      }
    }
    await this.forward(req, res, decision, route.kind === "inference", startMs, clientGone);
  }

  private async forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    decision: RouteSuccess,
    counted: boolean,
    startMs: number,
    clientGone: CancellationFlag,
  ): Promise<void> {
    const { config, metrics, pool } = this.deps;
    const attempts = Math.min(decision.endpoints.length, 1 + config.maxRetries);
    const headers = forwardHeaders(req, config.destinationHeader, decision.body.length);
    for (let attempt = 0; attempt < attempts; attempt++) {
      const address = decision.endpoints[attempt].address;
      if (attempt > 0) pool.noteDispatched(address, decision.adapter);
      metrics.recordPick(address);
      const exchange = new Exchange(res, decision, counted, startMs, this.deps);
      const outcome = await exchange.run(
        this.agent,
        address,
        req.method ?? "POST",
        req.url ?? "/",
        headers,
        clientGone,
      );
      pool.noteCompleted(address, decision.adapter);
      if (outcome.kind === "relayed") return;
      // Nothing reached the client yet.
      if (clientGone.aborted) return;
      if (connectErrors.has(outcome.code) && attempt + 1 < attempts) {
        this.deps.log?.(`proxy: ${address} failed before responding (${outcome.code}); retrying`);
        continue;
      }
      if (counted) metrics.recordError(decision.model, decision.targetModel, "ModelServerError");
      const timeout = outcome.code === "UND_ERR_HEADERS_TIMEOUT";
      sendError(res, {
        code: "ModelServerError",
        status: timeout ? 504 : 502,
        message: timeout
          ? `model server ${address} did not answer in time`
          : `model server unreachable (${outcome.code || "error"})`,
      });
      return;
    }
  }
}

type ExchangeOutcome = { kind: "relayed" } | { kind: "failed"; code: string };

/**
 * One request to one model server, its response relayed to the client as it arrives: undici's
 * dispatch handler, without a response stream object in between (a third less CPU per request
 * than `request()` and an async iterator). Resolves when the exchange is over; "failed" means
 * no response started, so the caller may retry elsewhere or answer with an error.
 */
class Exchange implements Dispatcher.DispatchHandler {
  private controller?: Dispatcher.DispatchController;
  private first = true;
  private failed = false;
  private usage?: ResponseUsage;
  private held?: Buffer;
  /** 0 until the response started. */
  private statusCode = 0;
  private clientLeft = false;
  private finish!: (outcome: ExchangeOutcome) => void;
  private onClientGone = () => {
    this.clientLeft = true;
    this.controller?.abort(new Error("client closed the request"));
  };

  constructor(
    private readonly res: http.ServerResponse,
    private readonly d: RouteSuccess,
    private readonly counted: boolean,
    private readonly startMs: number,
    private readonly deps: ProxyDeps,
  ) {}

  run(
    agent: Agent,
    address: string,
    method: string,
    path: string,
    headers: Record<string, string | string[]>,
    clientGone: CancellationFlag,
  ): Promise<ExchangeOutcome> {
    return new Promise(resolve => {
      this.finish = outcome => {
        clientGone.removeEventListener("abort", this.onClientGone);
        resolve(outcome);
      };
      if (clientGone.aborted) return this.finish({ kind: "failed", code: "ABORTED" });
      clientGone.addEventListener("abort", this.onClientGone);
      agent.dispatch(
        {
          origin: `http://${address}`,
          path,
          method: method as Dispatcher.HttpMethod,
          headers,
          body: this.d.body.length > 0 ? this.d.body : undefined,
        },
        this,
      );
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientLeft) controller.abort(new Error("client closed the request"));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) return; // 1xx: the real answer follows
    this.statusCode = statusCode;
    this.usage = new ResponseUsage(
      String(headers["content-type"] ?? ""),
      this.deps.config.maxResponseBufferBytes,
    );
    this.res.writeHead(statusCode, responseHeaders(headers));
    // An event stream's headers go out at once (the client learns the stream is open); other
    // headers leave with the first body bytes, in the same write.
    if (this.usage.streaming) this.res.flushHeaders();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const { metrics, now } = this.deps;
    if (this.first) {
      this.first = false;
      if (this.counted) {
        metrics.observeTtft(this.d.model, this.d.targetModel, (now() - this.startMs) / 1000);
      }
    }
    this.usage!.push(chunk);
    let writable = true;
    if (this.usage!.streaming) writable = this.res.write(chunk);
    else {
      // Other answers are written one chunk late, so the last goes out with end(): the usual
      // one-chunk answer leaves in one write with its headers, not in two system calls.
      if (this.held) writable = this.res.write(this.held);
      this.held = chunk;
    }
    if (!writable) {
      controller.pause();
      this.res.once("drain", () => controller.resume());
    }
  }

  onResponseEnd(): void {
    if (this.held) this.res.end(this.held);
    else this.res.end();
    this.done();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.statusCode === 0) {
      this.finish({ kind: "failed", code: errorCode(err) });
      return;
    }
    // Broken after the response began. A client that left is not the model server's failure.
    this.failed = !this.clientLeft;
    this.res.destroy();
    this.done();
  }

  /** The response is over (complete or broken): metrics, then the caller goes on. */
  private done(): void {
    const { metrics, now } = this.deps;
    const d = this.d;
    if (this.counted) {
      metrics.observeDuration(d.model, d.targetModel, (now() - this.startMs) / 1000);
      if (this.failed || this.statusCode >= 400) {
        metrics.recordError(d.model, d.targetModel, "ModelServerError");
      }
      const usage = this.usage?.finish();
      if (usage) {
        metrics.observeTokens(d.model, d.targetModel, usage.promptTokens, usage.completionTokens);
      }
    }
    this.finish({ kind: "relayed" });
  }
}

export interface ProxyServer {
  server: http.Server;
  proxy: InferenceProxy;
  port: number;
  close(): Promise<void>;
}

export async function startProxy(
  deps: ProxyDeps,
  port: number,
  host = "0.0.0.0",
): Promise<ProxyServer> {
  const proxy = new InferenceProxy(deps);
  const server = http.createServer(proxy.handle);
  server.requestTimeout = deps.config.requestReadTimeoutMs;
  server.headersTimeout = Math.min(deps.config.requestReadTimeoutMs, 60_000);
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    proxy,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      await new Promise<void>(resolve => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await proxy.close();
    },
  };
}
