// The standalone front door: an OpenAI-compatible HTTP proxy on undici, deciding with the same
// core as ext_proc. Bodies are buffered (needed to read and rewrite `model`), responses stream
// back untouched chunk by chunk (SSE included). A request whose connection to the chosen
// endpoint fails before any response byte arrived is retried on the next ranked endpoint.

import http from "node:http";
import { AddressInfo } from "node:net";
import { Agent, Dispatcher, request as undiciRequest } from "undici";
import { RequestRouter, RouteDecision, RouteSuccess } from "./core/router";
import { PickerError, PoolView, errorBody, pickerError } from "./core/types";
import { SseUsageScanner, TokenUsage, usageFromJson } from "./core/usage";
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
    const clientGone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) clientGone.abort();
    });
    let decision: RouteDecision;
    if (route.kind === "bodyless") {
      decision = this.timed(() => this.deps.router.decideBodyless(this.deps.now()));
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
      const t0 = performance.now();
      const now = this.deps.now();
      const decided = this.deps.router.decideOrHold(
        { body: read.body, header, nowMs: now },
        clientGone.signal,
      );
      this.deps.metrics.observeDecision((performance.now() - t0) / 1000);
      // Held by flow control until a pod has a free slot (the wait is not decision time).
      decision = decided instanceof Promise ? await decided : decided;
      if (clientGone.signal.aborted) {
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

  private timed(decide: () => RouteDecision): RouteDecision {
    const t0 = performance.now();
    const d = decide();
    this.deps.metrics.observeDecision((performance.now() - t0) / 1000);
    return d;
  }

  private async forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    decision: RouteSuccess,
    counted: boolean,
    startMs: number,
    abort: AbortController,
  ): Promise<void> {
    const { config, metrics, pool } = this.deps;
    const attempts = Math.min(decision.endpoints.length, 1 + config.maxRetries);
    const headers = forwardHeaders(req, config.destinationHeader, decision.body.length);
    let upstream: Dispatcher.ResponseData | undefined;
    let address = decision.endpoints[0].address;
    for (let attempt = 0; attempt < attempts; attempt++) {
      address = decision.endpoints[attempt].address;
      if (attempt > 0) pool.noteDispatched(address, decision.adapter);
      metrics.recordPick(address);
      try {
        upstream = await undiciRequest(`http://${address}${req.url ?? "/"}`, {
          method: req.method as Dispatcher.HttpMethod,
          headers,
          body: decision.body.length > 0 ? decision.body : undefined,
          dispatcher: this.agent,
          signal: abort.signal,
        });
        break;
      } catch (err) {
        pool.noteCompleted(address, decision.adapter);
        const code = errorCode(err);
        if (abort.signal.aborted) return; // the client went away
        if (connectErrors.has(code) && attempt + 1 < attempts) {
          this.deps.log?.(`proxy: ${address} failed before responding (${code}); retrying`);
          continue;
        }
        if (counted) metrics.recordError(decision.model, decision.targetModel, "ModelServerError");
        const timeout = code === "UND_ERR_HEADERS_TIMEOUT";
        sendError(res, {
          code: "ModelServerError",
          status: timeout ? 504 : 502,
          message: timeout
            ? `model server ${address} did not answer in time`
            : `model server unreachable (${code || "error"})`,
        });
        return;
      }
    }
    if (!upstream) return;
    await this.relay(res, upstream, decision, counted, startMs, address, abort.signal);
  }

  private async relay(
    res: http.ServerResponse,
    upstream: Dispatcher.ResponseData,
    d: RouteSuccess,
    counted: boolean,
    startMs: number,
    address: string,
    clientGone: AbortSignal,
  ): Promise<void> {
    const { metrics, pool, config, now } = this.deps;
    const contentType = String(upstream.headers["content-type"] ?? "");
    const sse = contentType.includes("text/event-stream") ? new SseUsageScanner() : undefined;
    const kept: Buffer[] = [];
    let keptBytes = 0;
    let first = true;
    let failed = false;
    let held: Buffer | undefined;
    res.writeHead(upstream.statusCode, responseHeaders(upstream.headers));
    // An event stream's headers go out at once (the client learns the stream is open); other
    // headers leave with the first body bytes, in the same write.
    if (sse) res.flushHeaders();
    try {
      for await (const chunk of upstream.body as AsyncIterable<Buffer>) {
        if (first) {
          first = false;
          if (counted) metrics.observeTtft(d.model, d.targetModel, (now() - startMs) / 1000);
        }
        if (sse) sse.push(chunk);
        else if (keptBytes <= config.maxResponseBufferBytes) {
          keptBytes += chunk.length;
          kept.push(chunk);
        }
        if (sse) {
          if (!res.write(chunk)) await waitDrain(res);
          continue;
        }
        // Other answers are written one chunk late, so the last goes out with end(): the usual
        // one-chunk answer leaves in one write with its headers, not in two system calls.
        if (held && !res.write(held)) await waitDrain(res);
        held = chunk;
      }
      if (held) res.end(held);
      else res.end();
    } catch {
      // A client that left is not the model server's failure.
      failed = !clientGone.aborted;
      res.destroy();
    } finally {
      pool.noteCompleted(address, d.adapter);
    }
    if (!counted) return;
    metrics.observeDuration(d.model, d.targetModel, (now() - startMs) / 1000);
    if (failed || upstream.statusCode >= 400) {
      metrics.recordError(d.model, d.targetModel, "ModelServerError");
    }
    let usage: TokenUsage | undefined;
    if (sse) usage = sse.finish();
    else if (keptBytes <= config.maxResponseBufferBytes)
      usage = usageFromJson(Buffer.concat(kept).toString("utf8"));
    if (usage)
      metrics.observeTokens(d.model, d.targetModel, usage.promptTokens, usage.completionTokens);
  }
}

function waitDrain(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      res.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      res.off("drain", onDrain);
      reject(new Error("client closed"));
    };
    res.once("drain", onDrain);
    res.once("close", onClose);
  });
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
