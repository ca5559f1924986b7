// The demo's local gateway: `npx tsx hack/demo/gateway.ts --namespace NS [--backend POOL=URL ...]`.
//
// In a cluster, the Gateway (Envoy with the Inference Extension) does this job: it reads the
// HTTPRoutes, picks a backendRef of the matching rule by weight, asks that InferencePool's endpoint
// picker over ext_proc which pod serves the request, and sends it there. Envoy cannot run here, so
// this process stands in for it and follows Envoy's ext_proc behaviour: it follows the HTTPRoutes
// attached to one Gateway, copies the body's `model` into the X-Gateway-Model-Name header (as the
// Body-Based Routing extension does), chooses the rule and the weighted InferencePool, finds the
// pool's endpoint picker (v1 `spec.endpointPickerRef`, v1alpha2 `spec.extensionRef` -> Service ->
// port -> the Ready Pods its selector matches, as the EndpointSlice controller and kube-proxy would
// resolve the Service), runs the
// ext_proc exchange (./ext-proc-client.ts) and sends the request to the endpoint the picker named
// (`envoy.lb` metadata / `x-gateway-destination-endpoint`), with the response phase. Any
// conformant picker can serve a pool: ours, the upstream GIE EPP, llm-d's.
//
// `--backend POOL=URL` instead sends a pool's requests to a picker's HTTP proxy front door (no
// ext_proc).
//
// GET /_gateway/stats returns what it saw (requests per route, pool, endpoint and status);
// /_gateway/healthz is 200 once the routes were read.
import * as http from "node:http";
import { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { K8s, kind } from "kubernetes-fluent-client";
import { HTTPRoute, InferencePoolV1, InferencePoolV1alpha2 } from "../../capabilities/api/kinds";
import { onWire } from "../../capabilities/api/wire";
import { HOP_BY_HOP_HEADERS } from "../../picker/proxy/http";
import { ExtProcExchange, PickerProtocolError, extProcClient } from "./ext-proc-client";
import {
  DESTINATION_ENDPOINT,
  PodObject,
  PoolObject,
  ServiceObject,
  applyHeaderMutation,
  attachedTo,
  chooseBackend,
  describeWeights,
  isInferencePool,
  modelOfBody,
  MODEL_NAME_HEADER,
  pickerRefOf,
  Route,
  selectRule,
  serviceAddresses,
} from "./gateway-core";

const usage = `usage: tsx hack/demo/gateway.ts --namespace NS [--gateway NAME] [--host ADDR] [--port N]
                     [--backend POOL=http://HOST:PORT ...] [--poll-ms N] [--ext-proc-timeout-ms N]`;

const MAX_BODY_BYTES = 10 << 20;
const HOP_BY_HOP = new Set(HOP_BY_HOP_HEADERS);
const log = (message: string) => console.log(`${new Date().toISOString()} ${message}`);

interface Stats {
  requests: number;
  byRoute: Record<string, number>;
  byPool: Record<string, number>;
  byModelAndPool: Record<string, Record<string, number>>;
  byStatus: Record<string, number>;
  /** Requests per endpoint the picker named ("pool ip:port"), ext_proc pools only. */
  byEndpoint: Record<string, number>;
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

/** Headers a picker cannot set on the wire: hop-by-hop ones and the length the gateway computes. */
const PROTECTED: ReadonlySet<string> = new Set([...HOP_BY_HOP, "content-length", "host"]);

interface Outgoing {
  method: string;
  path: string;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

/**
 * Sends the request to the first endpoint that accepts a connection (the picker's fallbacks
 * after it, as Envoy's original-destination retries would) and the answer back to the client,
 * through the picker's response phase when there is an exchange.
 */
async function forward(
  res: http.ServerResponse,
  pool: string,
  endpoints: string[],
  out: Outgoing,
  exchange?: ExtProcExchange,
): Promise<void> {
  const headers: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(out.headers)) if (v !== undefined) headers[k] = v;
  headers["content-length"] = String(out.body.length);
  let lastError: Error | undefined;
  for (const endpoint of endpoints) {
    const i = endpoint.lastIndexOf(":");
    const host = endpoint.slice(0, i).replace(/^\[|\]$/g, "");
    const port = Number(endpoint.slice(i + 1));
    const upstream = await new Promise<http.IncomingMessage | Error>(resolve => {
      const r = http.request(
        { host, port, method: out.method, path: out.path, headers, agent },
        resolve,
      );
      r.on("error", resolve);
      res.on("close", () => {
        if (!res.writableEnded) r.destroy();
      });
      r.end(out.body);
    });
    if (upstream instanceof Error) {
      lastError = upstream;
      continue;
    }
    const pass = (name: string) => !HOP_BY_HOP.has(name.toLowerCase());
    const extra = { "x-gateway-backend": pool };
    if (exchange) return exchange.respond(upstream, res, extra, pass);
    const back: http.OutgoingHttpHeaders = { ...extra };
    for (const [k, v] of Object.entries(upstream.headers))
      if (v !== undefined && pass(k)) back[k] = v;
    res.writeHead(upstream.statusCode ?? 502, back);
    upstream.pipe(res);
    return new Promise(resolve => res.on("close", resolve));
  }
  openAiError(
    res,
    502,
    `InferencePool ${pool} endpoint ${endpoints.join(",")}: ${lastError?.message}`,
  );
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      namespace: { type: "string" },
      gateway: { type: "string", default: "inference-gateway" },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "0" },
      backend: { type: "string", multiple: true, default: [] },
      "poll-ms": { type: "string", default: "200" },
      "ext-proc-timeout-ms": { type: "string", default: "30000" },
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
  // What the pools' endpoint pickers are found through, read with the routes.
  let pools = new Map<string, PoolObject>();
  let services: ServiceObject[] = [];
  let pods: PodObject[] = [];
  let loaded = false;
  let lastDescription = "";
  const refresh = async () => {
    const [list, v1Pools, alphaPools, svcs, eps] = await Promise.all([
      K8s(HTTPRoute).InNamespace(namespace).Get(),
      K8s(InferencePoolV1).InNamespace(namespace).Get(),
      K8s(InferencePoolV1alpha2).InNamespace(namespace).Get(),
      K8s(kind.Service).InNamespace(namespace).Get(),
      K8s(kind.Pod).InNamespace(namespace).Get(),
    ]);
    routes = attachedTo(list.items.map(onWire) as Route[], values.gateway);
    // Keyed by the group each list came from (list items need not carry their apiVersion).
    const next = new Map<string, PoolObject>();
    for (const p of alphaPools.items as PoolObject[])
      next.set(`inference.networking.x-k8s.io/${p.metadata?.name}`, p);
    for (const p of v1Pools.items as PoolObject[])
      next.set(`inference.networking.k8s.io/${p.metadata?.name}`, p);
    pools = next;
    services = svcs.items as ServiceObject[];
    pods = eps.items as PodObject[];
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

  const stats: Stats = {
    requests: 0,
    byRoute: {},
    byPool: {},
    byModelAndPool: {},
    byStatus: {},
    byEndpoint: {},
  };
  const extProcTimeoutMs = Number(values["ext-proc-timeout-ms"]);
  // One gRPC channel per picker address, as Envoy keeps one cluster per picker.
  const clients = new Map<string, grpc.Client>();
  const clientFor = (address: string) => {
    let c = clients.get(address);
    if (!c) clients.set(address, (c = extProcClient(address)));
    return c;
  };
  /** The pool object a backendRef names (its group says which API version). */
  const poolOf = (group: string, name: string) => pools.get(`${group}/${name}`);
  /** The picker's addresses for a pool, or why there are none. */
  const pickerAddresses = (group: string, name: string): string[] | { error: string } => {
    const pool = poolOf(group, name);
    if (!pool) return { error: `InferencePool ${namespace}/${name} (${group}) does not exist` };
    const ref = pickerRefOf(pool);
    if ("error" in ref) return ref;
    return serviceAddresses(namespace, ref, services, pods);
  };
  const count = (bucket: Record<string, number>, key: string) => {
    bucket[key] = (bucket[key] ?? 0) + 1;
  };
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
    if (!isInferencePool(ref)) {
      return openAiError(
        res,
        500,
        `backendRef ${ref.kind ?? "Service"} ${ref.name} is not an InferencePool (this local gateway serves InferencePools only)`,
      );
    }
    count(stats.byPool, ref.name);
    if (model) count((stats.byModelAndPool[model] ??= {}), ref.name);

    const forwardHeaders: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(headers))
      if (v !== undefined && !HOP_BY_HOP.has(k)) forwardHeaders[k] = v;
    delete forwardHeaders.host;
    // Routing is the picker's: a client's own destination header is never passed on.
    delete forwardHeaders[DESTINATION_ENDPOINT];

    const httpFrontDoor = backends.get(ref.name);
    if (httpFrontDoor) {
      return forward(res, ref.name, [`${httpFrontDoor.hostname}:${httpFrontDoor.port}`], {
        method: req.method ?? "GET",
        path: `${url.pathname}${url.search}`,
        headers: forwardHeaders,
        body,
      });
    }

    const addresses = pickerAddresses(ref.group ?? "", ref.name);
    if ("error" in addresses) return openAiError(res, 503, addresses.error);
    const exchange = new ExtProcExchange(clientFor(addresses[0]), extProcTimeoutMs);
    // The client went away before its answer was complete.
    res.on("close", () => {
      if (!res.writableEnded) exchange.cancel();
    });
    try {
      const answer = await exchange.decide({
        method: req.method ?? "GET",
        path: `${url.pathname}${url.search}`,
        authority: req.headers.host ?? "gateway",
        headers: forwardHeaders,
        body,
      });
      if (answer.kind === "immediate") {
        res.writeHead(answer.status, {
          ...Object.fromEntries(answer.headers.filter(([k]) => !k.startsWith(":"))),
          "x-gateway-backend": ref.name,
        });
        res.end(answer.body);
        exchange.close();
        return;
      }
      if (answer.destinations.length === 0) {
        exchange.cancel();
        return openAiError(
          res,
          503,
          `the endpoint picker of InferencePool ${ref.name} (${addresses[0]}) named no endpoint`,
        );
      }
      count(stats.byEndpoint, `${ref.name} ${answer.destinations[0]}`);
      const mutated = applyHeaderMutation(
        forwardHeaders,
        { set: answer.setHeaders, remove: answer.removeHeaders },
        PROTECTED,
      );
      await forward(
        res,
        ref.name,
        answer.destinations,
        {
          method: req.method ?? "GET",
          path: `${url.pathname}${url.search}`,
          headers: mutated,
          body: answer.body,
        },
        exchange,
      );
      exchange.close();
    } catch (err) {
      exchange.cancel();
      const why = err instanceof PickerProtocolError ? err.message : String(err);
      log(`InferencePool ${ref.name}: endpoint picker ${addresses[0]}: ${why}`);
      if (!res.headersSent)
        openAiError(res, 503, `the endpoint picker of InferencePool ${ref.name} failed: ${why}`);
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>(resolve => server.listen(Number(values.port), values.host, resolve));
  const port = (server.address() as AddressInfo).port;
  log(
    `gateway listening on http://${values.host}:${port} (HTTPRoutes of ${namespace} attached to Gateway ${values.gateway})`,
  );
  for (const [pool, u] of backends)
    log(`InferencePool ${pool} -> the HTTP proxy front door ${u.origin} (--backend, no ext_proc)`);
  log(
    "other InferencePools: their endpoint picker over ext_proc (endpointPickerRef / extensionRef)",
  );

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
