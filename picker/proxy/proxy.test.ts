import http from "node:http";
import { AddressInfo } from "node:net";
import { request } from "undici";
import { OverloadGuard } from "../core/overload";
import { PrefixIndex, defaultPrefixConfig } from "../core/prefix";
import { seededRng } from "../core/rng";
import { RequestRouter, defaultObjectiveHeaders } from "../core/router";
import { Scheduler, defaultSaturationConfig } from "../core/scheduler";
import { defaultSchedulerConfig, defaultScoreWeights } from "../core/scheduler-config";
import { TrafficSplitter } from "../core/split";
import { EndpointView, ModelResolution, PoolView } from "../core/types";
import { PickerMetrics } from "../metrics";
import { ProxyConfig, defaultProxyConfig } from "./config";
import { ProxyServer, startProxy } from "./server";

const clock = 1000;
const now = () => clock;

class StaticPool implements PoolView {
  constructor(
    public endpoints: EndpointView[],
    private readonly models: Map<string, ModelResolution>,
  ) {}
  poolName() {
    return "pool-a";
  }
  readyEndpoints() {
    return this.endpoints;
  }
  resolveModel(m: string) {
    return this.models.get(m);
  }
  objectivePriority() {
    return undefined;
  }
  noteDispatched(a: string) {
    const e = this.endpoints.find(x => x.address === a);
    if (e) e.inflight++;
  }
  noteCompleted(a: string) {
    const e = this.endpoints.find(x => x.address === a);
    if (e) e.inflight--;
  }
}

function endpoint(address: string, running: number): EndpointView {
  return {
    name: address,
    podName: address,
    address,
    metrics: { waiting: 0, running, kvCacheUsage: 0, scrapedAtMs: clock },
    dispatchedSinceScrape: 0,
    inflight: 0,
  };
}

interface Seen {
  model: string;
  headers: http.IncomingHttpHeaders;
  url: string;
}

/** A tiny model server: JSON answers with usage, or SSE released step by step by the test. */
class FakeModelServer {
  server: http.Server;
  seen: Seen[] = [];
  releaseSse: (() => void) | undefined;
  hang = false;

  constructor() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", c => chunks.push(c));
      req.on("end", () => {
        if (this.hang) return;
        if (req.url === "/v1/models") {
          res
            .writeHead(200, { "content-type": "application/json" })
            .end('{"data":[{"id":"base"}]}');
          return;
        }
        const body = JSON.parse(Buffer.concat(chunks).toString() || "{}");
        this.seen.push({ model: body.model, headers: req.headers, url: req.url ?? "" });
        if (body.stream) {
          res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
          res.write(`data: {"model":"${body.model}","choices":[{"delta":{"content":"Hel"}}]}\n\n`);
          this.releaseSse = () => {
            res.write('data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n');
            res.end("data: [DONE]\n\n");
          };
          return;
        }
        const status = body.model === "fail" ? 500 : 200;
        res.writeHead(status, { "content-type": "application/json", "x-upstream": "yes" });
        res.end(
          JSON.stringify({ model: body.model, usage: { prompt_tokens: 7, completion_tokens: 3 } }),
        );
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>(r => this.server.listen(0, "127.0.0.1", () => r()));
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise(r => this.server.close(() => r()));
  }
}

async function closedPortAddress(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>(r => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>(r => s.close(() => r()));
  return `127.0.0.1:${port}`;
}

async function start(pool: PoolView, config: Partial<ProxyConfig> = {}, guard?: OverloadGuard) {
  const metrics = new PickerMetrics("pool-a");
  const rng = seededRng(3);
  const router = new RequestRouter(
    pool,
    new Scheduler(defaultSchedulerConfig(defaultScoreWeights, new PrefixIndex(100))),
    new TrafficSplitter({ rng, stickyCapacity: 100 }),
    rng,
    {
      strict: false,
      sessionHeader: "x-session-id",
      objectiveHeaders: defaultObjectiveHeaders,
      maxBodyBytes: config.maxBodyBytes ?? defaultProxyConfig.maxBodyBytes,
      prefix: defaultPrefixConfig,
      saturation: defaultSaturationConfig,
    },
  );
  const server = await startProxy(
    { router, pool, metrics, now, guard, config: { ...defaultProxyConfig, ...config } },
    0,
    "127.0.0.1",
  );
  return { server, metrics, url: `http://127.0.0.1:${server.port}` };
}

const models = new Map<string, ModelResolution>([
  [
    "travel-helper",
    {
      source: "InferenceModel",
      targets: [{ name: "travel-helper-v2", weight: 1 }],
      adapters: true,
    },
  ],
]);

describe("HTTP proxy", () => {
  let upstream: FakeModelServer;
  let upstreamAddress: string;
  let deadAddress: string;
  let proxy: { server: ProxyServer; metrics: PickerMetrics; url: string };
  let pool: StaticPool;

  beforeAll(async () => {
    upstream = new FakeModelServer();
    upstreamAddress = await upstream.listen();
    deadAddress = await closedPortAddress();
    // The dead endpoint looks idle, so it is ranked first and the retry must kick in.
    pool = new StaticPool([endpoint(deadAddress, 0), endpoint(upstreamAddress, 6)], models);
    proxy = await start(pool);
  });
  afterAll(async () => {
    await proxy.server.close();
    await upstream.close();
  });

  it("rewrites the model, retries past a closed port and counts the request", async () => {
    const res = await request(`${proxy.url}/v1/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-gateway-destination-endpoint": "6.6.6.6:80",
      },
      body: JSON.stringify({ model: "travel-helper", prompt: "hello", max_tokens: 3 }),
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["x-upstream"]).toBe("yes");
    expect(await res.body.json()).toEqual({
      model: "travel-helper-v2",
      usage: { prompt_tokens: 7, completion_tokens: 3 },
    });
    const seen = upstream.seen.at(-1)!;
    expect(seen.model).toBe("travel-helper-v2");
    expect(seen.headers["x-gateway-destination-endpoint"]).toBeUndefined();
    expect(seen.headers["content-length"]).toBe(
      String(
        Buffer.byteLength(
          JSON.stringify({ model: "travel-helper-v2", prompt: "hello", max_tokens: 3 }),
        ),
      ),
    );
    const picks = await proxy.metrics.registry.getSingleMetricAsString(
      "modelrollout_picker_endpoint_picks_total",
    );
    expect(picks).toContain(`endpoint="${deadAddress}"} 1`);
    expect(picks).toContain(`endpoint="${upstreamAddress}"} 1`);
    const total = await proxy.metrics.registry.getSingleMetricAsString(
      "inference_objective_request_total",
    );
    expect(total).toContain(
      'model_name="travel-helper",target_model_name="travel-helper-v2",pool="pool-a"} 1',
    );
    const tokens = await proxy.metrics.registry.getSingleMetricAsString(
      "inference_objective_input_tokens",
    );
    expect(tokens).toContain("inference_objective_input_tokens_sum{");
    expect(pool.endpoints.every(e => e.inflight === 0)).toBe(true);
  });

  it("passes SSE through untouched and as it arrives", async () => {
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "travel-helper",
        stream: true,
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/event-stream");
    const iterator = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const first = await iterator.next();
    // The model server has not finished yet: the first event got through on its own.
    expect(Buffer.from(first.value).toString()).toBe(
      'data: {"model":"travel-helper-v2","choices":[{"delta":{"content":"Hel"}}]}\n\n',
    );
    upstream.releaseSse!();
    let rest = "";
    for (let r = await iterator.next(); !r.done; r = await iterator.next())
      rest += Buffer.from(r.value).toString();
    expect(rest).toBe(
      'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\ndata: [DONE]\n\n',
    );
    const out = await proxy.metrics.registry.getSingleMetricAsString(
      "inference_objective_output_tokens",
    );
    // 3 tokens from the JSON answer of the first test, 2 from this stream's final chunk.
    expect(out).toContain(
      'inference_objective_output_tokens_sum{model_name="travel-helper",target_model_name="travel-helper-v2",pool="pool-a"} 5',
    );
    const ttft = await proxy.metrics.registry.getSingleMetricAsString(
      "inference_objective_request_ttft_seconds",
    );
    expect(ttft).toContain("inference_objective_request_ttft_seconds_count{");
  });

  it("forwards GET /v1/models to a ready endpoint", async () => {
    const res = await request(`${proxy.url}/v1/models`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ data: [{ id: "base" }] });
  });

  it.each([
    ["GET", "/v1/completions", undefined, 405],
    ["DELETE", "/v1/chat/completions", undefined, 405],
    ["GET", "/v2/anything", undefined, 404],
    ["POST", "/v1/completions", "{broken", 400],
    ["POST", "/v1/completions", '{"prompt":"no model"}', 400],
    ["POST", "/v1/completions", '{"model":42}', 400],
  ])("%s %s %s → %i", async (method, path, body, status) => {
    const res = await request(`${proxy.url}${path}`, { method: method as "GET", body });
    expect(res.statusCode).toBe(status);
    const json = (await res.body.json()) as { error: { message: string } };
    expect(json.error.message.length).toBeGreaterThan(0);
    if (status === 405) expect(res.headers.allow).toBeDefined();
  });

  it("counts a model-server error status against the target model", async () => {
    const res = await request(`${proxy.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "fail", prompt: "x" }),
    });
    expect(res.statusCode).toBe(500);
    await res.body.dump();
    const errors = await proxy.metrics.registry.getSingleMetricAsString(
      "inference_objective_request_error_total",
    );
    expect(errors).toContain(
      'model_name="fail",target_model_name="fail",pool="pool-a",error_code="ModelServerError"} 1',
    );
  });
});

describe("HTTP proxy limits", () => {
  it("answers 413 for a body over the limit and keeps serving", async () => {
    const upstream = new FakeModelServer();
    const address = await upstream.listen();
    const p = await start(new StaticPool([endpoint(address, 0)], models), { maxBodyBytes: 1000 });
    const big = await request(`${p.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "m", prompt: "x".repeat(2000) }),
    });
    expect(big.statusCode).toBe(413);
    await big.body.dump();
    const ok = await request(`${p.url}/v1/completions`, {
      method: "POST",
      body: '{"model":"m","prompt":"x"}',
    });
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
    await p.server.close();
    await upstream.close();
  });

  it("answers 502 when every endpoint refuses and 503 without endpoints", async () => {
    const dead = [await closedPortAddress(), await closedPortAddress()];
    const p = await start(
      new StaticPool(
        dead.map(a => endpoint(a, 0)),
        models,
      ),
    );
    const res = await request(`${p.url}/v1/completions`, { method: "POST", body: '{"model":"m"}' });
    expect(res.statusCode).toBe(502);
    await res.body.dump();
    await p.server.close();
    const empty = await start(new StaticPool([], models));
    const none = await request(`${empty.url}/v1/completions`, {
      method: "POST",
      body: '{"model":"m"}',
    });
    expect(none.statusCode).toBe(503);
    await none.body.dump();
    await empty.server.close();
  });

  it("answers 429 before reading the body while the picker's event loop runs late", async () => {
    const upstream = new FakeModelServer();
    const address = await upstream.listen();
    const guard = new OverloadGuard({ maxLoopDelayMs: 50, maxPending: 0 });
    const p = await start(new StaticPool([endpoint(address, 0)], models), {}, guard);
    for (let i = 0; i < 8; i++) guard.noteLoopDelay(500);
    // Headers and part of a body, never the rest: the answer must not wait for it.
    const started = Date.now();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${p.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": "1000" },
      });
      req.on("response", res => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on("error", reject);
      req.write('{"model":"m","prompt":"');
    });
    expect(status).toBe(429);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(guard.rejected).toBe(1);
    expect(upstream.seen).toHaveLength(0);
    // The loop caught up: served again, and a decided request leaves the guard's count.
    for (let i = 0; i < 20; i++) guard.noteLoopDelay(0);
    const ok = await request(`${p.url}/v1/completions`, { method: "POST", body: '{"model":"m"}' });
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
    expect(guard.pending).toBe(0);
    await p.server.close();
    await upstream.close();
  });

  it("answers 504 when the model server does not answer in time", async () => {
    const upstream = new FakeModelServer();
    upstream.hang = true;
    const address = await upstream.listen();
    const p = await start(new StaticPool([endpoint(address, 0)], models), {
      headersTimeoutMs: 200,
    });
    const res = await request(`${p.url}/v1/completions`, { method: "POST", body: '{"model":"m"}' });
    expect(res.statusCode).toBe(504);
    await res.body.dump();
    await p.server.close();
    await upstream.close();
  });
});

describe("HTTP proxy with broken, abandoned and slow streams", () => {
  let serverSide: http.ServerResponse | undefined;
  let upstream: http.Server;
  let pool: StaticPool;
  let proxy: { server: ProxyServer; metrics: PickerMetrics; url: string };
  const big = Buffer.alloc(8 << 20, "x");

  beforeAll(async () => {
    upstream = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        serverSide = res;
        if (req.url === "/v1/completions") {
          // 8 MiB in one answer: more than any socket buffer, so the proxy must wait for drain.
          res.writeHead(200, { "content-type": "application/json" });
          res.end(big);
          return;
        }
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n');
        if (req.headers["x-break"]) setTimeout(() => res.socket?.destroy(), 20);
      });
    });
    await new Promise<void>(r => upstream.listen(0, "127.0.0.1", () => r()));
    const address = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    pool = new StaticPool([endpoint(address, 0)], models);
    proxy = await start(pool);
  });
  afterAll(async () => {
    await proxy.server.close();
    upstream.closeAllConnections();
    await new Promise(r => upstream.close(r));
  });

  const stream = (extra: Record<string, string> = {}) =>
    request(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...extra },
      body: JSON.stringify({ model: "travel-helper", stream: true, messages: [] }),
    });

  const errorsOf = async () =>
    (
      await proxy.metrics.registry.getSingleMetricAsString(
        "inference_objective_request_error_total",
      )
    )
      .split("\n")
      .filter(l => l.includes('error_code="ModelServerError"')).length;

  it("cancels the model server's request when the client leaves mid-stream, counting no error", async () => {
    const res = await stream();
    const iterator = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    await iterator.next();
    const upstreamClosed = new Promise(r => serverSide!.once("close", r));
    res.body.destroy();
    await upstreamClosed; // the proxy dropped its request to the model server
    await new Promise(r => setImmediate(r));
    expect(pool.endpoints[0].inflight).toBe(0);
    expect(await errorsOf()).toBe(0);
  });

  it("breaks the client's response and counts an error when the model server breaks mid-stream", async () => {
    const res = await stream({ "x-break": "1" });
    await expect(res.body.text()).rejects.toThrow();
    expect(await errorsOf()).toBe(1);
    expect(pool.endpoints[0].inflight).toBe(0);
  });

  it("delivers a large answer whole to a client that reads slowly", async () => {
    const received = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${proxy.url}/v1/completions`, { method: "POST" }, res => {
        res.pause(); // nothing read for a while: the proxy's writes back up
        setTimeout(() => {
          let n = 0;
          res.on("data", (c: Buffer) => (n += c.length));
          res.on("end", () => resolve(n));
          res.resume();
        }, 200);
      });
      req.on("error", reject);
      req.end(JSON.stringify({ model: "travel-helper", prompt: "x" }));
    });
    expect(received).toBe(big.length);
    expect(pool.endpoints[0].inflight).toBe(0);
  });
});
