// The standalone front door: an OpenAI-compatible HTTP proxy on undici, deciding with the same
// core as ext_proc. Bodies are buffered (needed to read and rewrite `model`), responses stream
// back untouched chunk by chunk (SSE included). A request whose connection to the chosen
// endpoint fails before any response byte arrived is retried on the next ranked endpoint.
import http from "node:http";
import { AddressInfo } from "node:net";
import { rejection } from "../core/admission";
import type { Agent } from "../http-client";
import { CancellationFlag } from "../core/cancellation";
import { RouteDecision, RouteSuccess } from "../core/router";
import { pickerError } from "../core/types";
import { ProxyDeps } from "./config";
import { Exchange } from "./exchange";
import { connectErrors, forwardHeaders, readBody, sendError } from "./http";

type Route = { methods: string[]; kind: "inference" | "bodyless" };

const routes: Record<string, Route> = {
  "/v1/chat/completions": { methods: ["POST"], kind: "inference" },
  "/v1/completions": { methods: ["POST"], kind: "inference" },
  "/v1/models": { methods: ["GET"], kind: "bodyless" },
};

export class InferenceProxy {
  private upstream: Agent | undefined;

  constructor(private readonly deps: ProxyDeps) {}

  /** Created, and undici loaded, at the first request forwarded (http-client.ts says why). */
  get agent(): Agent {
    if (this.upstream) return this.upstream;
    const { config } = this.deps;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Agent: AgentClass } = require("../http-client") as typeof import("../http-client");
    return (this.upstream = new AgentClass({
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.headersTimeoutMs,
      bodyTimeout: config.bodyTimeoutMs,
      keepAliveTimeout: 30_000,
    }));
  }

  /** The node:http request listener. */
  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    this.serve(req, res).catch(err => {
      this.deps.log?.(`proxy: internal error: ${err instanceof Error ? err.stack : String(err)}`);
      sendError(res, pickerError("Internal", "internal error in the endpoint picker"));
    });
  };

  async close(): Promise<void> {
    await this.upstream?.close();
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
      const decided = await this.decideInference(req, res, clientGone);
      if (!decided) return;
      decision = decided;
    }
    await this.forward(req, res, decision, route.kind === "inference", startMs, clientGone);
  }

  /**
   * Reads the body and decides (flow control may hold it); answers errors itself and returns
   * undefined then, or when the client left. An overloaded process answers 429 before reading.
   */
  private async decideInference(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    clientGone: CancellationFlag,
  ): Promise<RouteSuccess | undefined> {
    const { guard, metrics, router, pool } = this.deps;
    if (guard && !guard.admit()) {
      req.resume(); // the body is not needed: drain it so the connection stays usable
      const refused = rejection("picker-overloaded");
      metrics.recordRequest("", "");
      metrics.recordError("", "", refused.error.code);
      sendError(res, refused.error);
      return undefined;
    }
    let decision: RouteDecision;
    try {
      const read = await readBody(req, this.deps.config.maxBodyBytes);
      if (!read.ok) {
        metrics.recordRequest("", "");
        metrics.recordError("", "", read.error.code);
        sendError(res, read.error, read.error.status === 413 ? { connection: "close" } : {});
        return undefined;
      }
      const header = (name: string) => {
        const v = req.headers[name];
        return Array.isArray(v) ? v.join(",") : v;
      };
      const decided = metrics.timedDecision(() =>
        router.decideOrHold({ body: read.body, header, nowMs: this.deps.now() }, clientGone),
      );
      // Held by flow control until a pod has a free slot.
      decision = decided instanceof Promise ? await decided : decided;
    } finally {
      guard?.release();
    }
    if (clientGone.aborted) {
      if (decision.ok) pool.noteCompleted(decision.endpoints[0].address, decision.adapter);
      return undefined;
    }
    metrics.recordRequest(decision.model, decision.targetModel);
    if (!decision.ok) {
      metrics.recordError(decision.model, decision.targetModel, decision.error.code);
      sendError(res, decision.error);
      return undefined;
    }
    return decision;
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
