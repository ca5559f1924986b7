// The demo's local gateway: `npx tsx hack/demo/gateway.ts --namespace NS --backend POOL=URL ...`.
//
// In a cluster, the Gateway (with the Inference Extension) does this job: it reads the HTTPRoutes,
// picks a backendRef of the matching rule by weight, and asks that InferencePool's endpoint picker
// (the pool's extensionRef) which pod serves the request. The local environment has no such
// gateway, so this process stands in for it: it follows the HTTPRoutes attached to one Gateway,
// copies the body's `model` into the X-Gateway-Model-Name header (as the Body-Based Routing
// extension does), chooses the rule and the weighted InferencePool, and forwards the request to
// that pool's picker (its HTTP proxy front door, given by --backend POOL=URL).
//
// GET /_gateway/stats returns what it saw (requests per route, pool and status); /_gateway/healthz
// is 200 once the routes were read.
import * as http from "node:http";
import { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { K8s } from "kubernetes-fluent-client";
import { HTTPRoute } from "../../capabilities/api/kinds";
import { onWire } from "../../capabilities/api/wire";
import { HOP_BY_HOP_HEADERS } from "../../picker/proxy/http";
import {
  attachedTo,
  chooseBackend,
  describeWeights,
  isInferencePool,
  modelOfBody,
  MODEL_NAME_HEADER,
  Route,
  selectRule,
} from "./gateway-core";

const usage = `usage: tsx hack/demo/gateway.ts --namespace NS [--gateway NAME] [--host ADDR] [--port N]
                     --backend POOL=http://HOST:PORT [--backend ...] [--poll-ms N]`;

const MAX_BODY_BYTES = 10 << 20;
const HOP_BY_HOP = new Set(HOP_BY_HOP_HEADERS);
const log = (message: string) => console.log(`${new Date().toISOString()} ${message}`);

interface Stats {
  requests: number;
  byRoute: Record<string, number>;
  byPool: Record<string, number>;
  byModelAndPool: Record<string, Record<string, number>>;
  byStatus: Record<string, number>;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function openAiError(res: http.ServerResponse, status: number, message: string): void {
  json(res, status, { error: { message, type: "GatewayError", code: status } });
}

function readBody(req: http.IncomingMessage): Promise<Buffer | "too-large"> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("end", () => resolve(size > MAX_BODY_BYTES ? "too-large" : Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      namespace: { type: "string" },
      gateway: { type: "string", default: "inference-gateway" },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      backend: { type: "string", multiple: true, default: [] },
      "poll-ms": { type: "string", default: "200" },
    },
  });
  if (!values.namespace) throw new Error(`--namespace is required\n${usage}`);
  const namespace = values.namespace;
  const backends = new Map<string, URL>();
  for (const b of values.backend) {
    const eq = b.indexOf("=");
    if (eq <= 0) throw new Error(`--backend ${b}: expected POOL=http://HOST:PORT\n${usage}`);
    backends.set(b.slice(0, eq), new URL(b.slice(eq + 1)));
  }

  let routes: Route[] = [];
  let loaded = false;
  let lastDescription = "";
  const refresh = async () => {
    const list = await K8s(HTTPRoute).InNamespace(namespace).Get();
    routes = attachedTo(list.items.map(onWire) as Route[], values.gateway);
    loaded = true;
    const description = routes
      .flatMap(r =>
        (r.spec?.rules ?? []).map((rule, i) => `${r.metadata.name}[${i}] ${describeWeights(rule)}`),
      )
      .join("; ");
    if (description !== lastDescription) {
      log(`routes: ${description || "(none)"}`);
      lastDescription = description;
    }
  };
  const pollMs = Number(values["poll-ms"]);
  let refreshFailing = false;
  const poll = async () => {
    try {
      await refresh();
      if (refreshFailing) log("reading HTTPRoutes works again");
      refreshFailing = false;
    } catch (err) {
      if (!refreshFailing) log(`reading HTTPRoutes failed (keeping the last ones): ${err}`);
      refreshFailing = true;
    }
    timer = setTimeout(() => void poll(), pollMs);
  };
  let timer: NodeJS.Timeout | undefined;
  await poll();

  const stats: Stats = { requests: 0, byRoute: {}, byPool: {}, byModelAndPool: {}, byStatus: {} };
  const count = (bucket: Record<string, number>, key: string) => {
    bucket[key] = (bucket[key] ?? 0) + 1;
  };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://gateway");
    if (url.pathname === "/_gateway/healthz") return json(res, loaded ? 200 : 503, { loaded });
    if (url.pathname === "/_gateway/stats") return json(res, 200, { routes, ...stats });
    stats.requests++;
    res.on("finish", () => count(stats.byStatus, String(res.statusCode)));

    const body = await readBody(req).catch(() => undefined);
    if (body === undefined) return;
    if (body === "too-large") return openAiError(res, 413, "request body too large");
    const model = modelOfBody(body);
    const headers: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(req.headers))
      headers[k] = Array.isArray(v) ? v.join(",") : v;
    // Body-Based Routing: the model name becomes a header routes can match; a client's own value
    // is never trusted.
    headers[MODEL_NAME_HEADER] = model;

    const choice = selectRule(routes, {
      method: req.method ?? "GET",
      path: url.pathname,
      headers,
      query: url.searchParams,
    });
    if (!choice) return openAiError(res, 404, `no HTTPRoute rule matches ${url.pathname}`);
    count(stats.byRoute, `${choice.route.metadata.name}[${choice.ruleIndex}]`);
    const ref = chooseBackend(choice.rule.backendRefs ?? [], Math.random);
    if (!ref) return openAiError(res, 500, "every backendRef of the matching rule has weight 0");
    const target = isInferencePool(ref) ? backends.get(ref.name) : undefined;
    if (!target) {
      return openAiError(
        res,
        500,
        `no endpoint picker known for ${ref.kind ?? "Service"} ${ref.name} (this local gateway forwards only to InferencePools given with --backend)`,
      );
    }
    count(stats.byPool, ref.name);
    if (model) count((stats.byModelAndPool[model] ??= {}), ref.name);

    const forwardHeaders: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(headers))
      if (v !== undefined && !HOP_BY_HOP.has(k)) forwardHeaders[k] = v;
    delete forwardHeaders.host;
    forwardHeaders["content-length"] = String(body.length);
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: `${url.pathname}${url.search}`,
        headers: forwardHeaders,
        agent,
      },
      up => {
        const back: http.OutgoingHttpHeaders = { "x-gateway-backend": ref.name };
        for (const [k, v] of Object.entries(up.headers))
          if (v !== undefined && !HOP_BY_HOP.has(k)) back[k] = v;
        res.writeHead(up.statusCode ?? 502, back);
        up.pipe(res);
      },
    );
    upstream.on("error", err => {
      if (!res.headersSent) openAiError(res, 502, `InferencePool ${ref.name}: ${err.message}`);
      else res.destroy();
    });
    req.on("close", () => {
      if (!res.writableEnded) upstream.destroy();
    });
    upstream.end(body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>(resolve => server.listen(Number(values.port), values.host, resolve));
  const port = (server.address() as AddressInfo).port;
  log(
    `gateway listening on http://${values.host}:${port} (HTTPRoutes of ${namespace} attached to Gateway ${values.gateway})`,
  );
  for (const [pool, u] of backends) log(`InferencePool ${pool} -> endpoint picker ${u.origin}`);

  const stop = () => {
    clearTimeout(timer);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch(err => {
  console.error(`gateway: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
});
