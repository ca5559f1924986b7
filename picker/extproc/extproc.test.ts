// Plays Envoy's side of the ext_proc protocol against the real server, in process, with gRPC
// clients built from the Envoy protos: the packaged @grpc/grpc-js-xds copy for BUFFERED mode
// (proving the server speaks the unmodified API), the overlay for FULL_DUPLEX_STREAMED.

import * as grpc from "@grpc/grpc-js";
import { FlowControlConfig } from "../core/flow";
import { OverloadGuard } from "../core/overload";
import { PrefixIndex, defaultPrefixConfig } from "../core/prefix";
import { seededRng } from "../core/rng";
import { RequestRouter, defaultObjectiveHeaders } from "../core/router";
import { Scheduler, defaultSaturationConfig } from "../core/scheduler";
import { defaultSchedulerConfig, defaultScoreWeights } from "../core/scheduler-config";
import { TrafficSplitter } from "../core/split";
import { Datastore } from "../datastore";
import { inferenceModelFromObject, podRecordFromObject, poolSpecFromObject } from "../pool-records";
import { BodyMode, defaultExtProcConfig } from "./config";
import { ProcessingRequest, headersToMap } from "./messages";
import { GrpcServerHandle, addExtProcService, addHealthService, startGrpcServer } from "./server";
import { ExtProcDeps } from "./stream";
import { PickerMetrics } from "../metrics";
import {
  loadExtProcDefinition,
  loadHealthDefinition,
  loadPackagedExtProcDefinition,
} from "../protos";

type Json = Record<string, unknown>;
let clock = 1_000_000;
const now = () => clock;

function makeDatastore(pods: number, waiting = 0): Datastore {
  const ds = new Datastore("pool-a");
  const pool = poolSpecFromObject({
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    metadata: { name: "pool-a", namespace: "ns" },
    spec: { selector: { app: "vllm" }, targetPortNumber: 8000 },
  });
  if (pool instanceof Error) throw pool;
  ds.setPool(pool);
  for (let i = 1; i <= pods; i++) {
    ds.upsertPod(
      podRecordFromObject({
        metadata: { name: `pod-${i}`, labels: { app: "vllm" } },
        status: { podIP: `10.0.0.${i}`, conditions: [{ type: "Ready", status: "True" }] },
      })!,
    );
    ds.setMetrics(`10.0.0.${i}:8000`, {
      waiting,
      running: 0,
      kvCacheUsage: 0.1,
      scrapedAtMs: clock,
    });
  }
  ds.upsertModel(
    inferenceModelFromObject({
      metadata: { name: "lora", creationTimestamp: "2025-01-01T00:00:00Z" },
      spec: {
        modelName: "travel-helper",
        poolRef: { name: "pool-a" },
        targetModels: [
          { name: "travel-helper-v1", weight: 90 },
          { name: "travel-helper-v2", weight: 10 },
        ],
      },
    })!,
  );
  ds.upsertModel(
    inferenceModelFromObject({
      metadata: { name: "even", creationTimestamp: "2025-01-01T00:00:00Z" },
      spec: {
        modelName: "even-helper",
        poolRef: { name: "pool-a" },
        targetModels: [{ name: "even-v1" }, { name: "even-v2" }],
      },
    })!,
  );
  ds.upsertModel(
    inferenceModelFromObject({
      metadata: { name: "base", creationTimestamp: "2025-01-01T00:00:00Z" },
      spec: { modelName: "base", poolRef: { name: "pool-a" } },
    })!,
  );
  ds.upsertModel(
    inferenceModelFromObject({
      metadata: { name: "batch", creationTimestamp: "2025-01-01T00:00:00Z" },
      spec: { modelName: "batch", criticality: "Sheddable", poolRef: { name: "pool-a" } },
    })!,
  );
  return ds;
}

interface Harness {
  router: RequestRouter;
  handle: GrpcServerHandle;
  client: grpc.Client;
  metrics: PickerMetrics;
  ds: Datastore;
  serving: { value: boolean };
}

async function startHarness(opts: {
  bodyMode: BodyMode;
  packagedClient: boolean;
  ds?: Datastore;
  strict?: boolean;
  maxBodyBytes?: number;
  fallbackCount?: number;
  flowControl?: FlowControlConfig;
  guard?: OverloadGuard;
}): Promise<Harness> {
  const ds = opts.ds ?? makeDatastore(3);
  const metrics = new PickerMetrics("pool-a");
  const rng = seededRng(7);
  const router = new RequestRouter(
    ds,
    new Scheduler(defaultSchedulerConfig(defaultScoreWeights, new PrefixIndex(1000))),
    new TrafficSplitter({ rng, stickyCapacity: 1000 }),
    rng,
    {
      strict: opts.strict ?? true,
      sessionHeader: "x-session-id",
      objectiveHeaders: defaultObjectiveHeaders,
      maxBodyBytes: opts.maxBodyBytes ?? 1 << 20,
      prefix: defaultPrefixConfig,
      saturation: defaultSaturationConfig,
      flowControl: opts.flowControl,
    },
  );
  // As picker/main.ts wires it: a freed slot releases held requests.
  ds.onCapacity(() => router.drainHeld(now()));
  const deps: ExtProcDeps = {
    router,
    pool: ds,
    metrics,
    now,
    guard: opts.guard,
    config: {
      ...defaultExtProcConfig,
      bodyMode: opts.bodyMode,
      fallbackCount: opts.fallbackCount ?? 0,
    },
  };
  const serving = { value: true };
  const handle = await startGrpcServer(
    server => {
      addExtProcService(server, deps);
      addHealthService(server, () => serving.value);
    },
    0,
    "127.0.0.1",
  );
  const def = opts.packagedClient ? loadPackagedExtProcDefinition() : loadExtProcDefinition();
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } };
  };
  const Client = pkg.envoy.service.ext_proc.v3.ExternalProcessor;
  const client = new Client(`127.0.0.1:${handle.port}`, grpc.credentials.createInsecure());
  return { router, handle, client, metrics, ds, serving };
}

async function stopHarness(h: Harness) {
  h.client.close();
  await h.handle.close();
}

/** One ext_proc stream as Envoy sees it: send messages, read responses in order. */
class EnvoyStream {
  private readonly call: grpc.ClientDuplexStream<ProcessingRequest, Json>;
  private readonly received: Json[] = [];
  private waiters: (() => void)[] = [];
  ended = false;

  constructor(client: grpc.Client) {
    const process = (
      client as unknown as { Process: () => grpc.ClientDuplexStream<ProcessingRequest, Json> }
    ).Process;
    this.call = process.call(client);
    const wake = () => {
      const w = this.waiters;
      this.waiters = [];
      w.forEach(f => f());
    };
    this.call.on("data", (m: Json) => {
      this.received.push(m);
      wake();
    });
    this.call.on("end", () => {
      this.ended = true;
      wake();
    });
    this.call.on("error", () => {
      this.ended = true;
      wake();
    });
  }

  send(msg: ProcessingRequest): void {
    this.call.write(msg);
  }

  /** Waits for the next response; fails the test if none comes within 5 s. */
  async next(): Promise<Json> {
    const deadline = Date.now() + 5000;
    while (this.received.length === 0) {
      if (this.ended) throw new Error("stream ended without the expected response");
      if (Date.now() > deadline) throw new Error("timed out waiting for a response");
      await new Promise<void>(resolve => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.received.shift()!;
  }

  /** Resolves once the server ended the stream. */
  async waitEnd(): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error("stream did not end");
      await new Promise<void>(resolve => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  pending(): number {
    return this.received.length;
  }

  close(): void {
    this.call.end();
  }
}

const headerList = (headers: Record<string, string>, raw: boolean) => ({
  headers: Object.entries(headers).map(([key, value]) =>
    raw ? { key, raw_value: Buffer.from(value) } : { key, value },
  ),
});

function requestHeaders(
  extra: Record<string, string> = {},
  raw = true,
  endOfStream = false,
): ProcessingRequest {
  return {
    request_headers: {
      headers: headerList(
        {
          ":method": "POST",
          ":path": "/v1/completions",
          "content-type": "application/json",
          "x-gateway-destination-endpoint": "6.6.6.6:80",
          ...extra,
        },
        raw,
      ),
      end_of_stream: endOfStream,
    },
  };
}

type SetHeader = { header: { key: string; raw_value?: Buffer; value?: string } };

function setHeaders(common: Json | undefined): Record<string, string> {
  const mutation = common?.header_mutation as { set_headers?: SetHeader[] } | undefined;
  const out: Record<string, string> = {};
  for (const h of mutation?.set_headers ?? []) {
    out[h.header.key] = h.header.raw_value
      ? Buffer.from(h.header.raw_value).toString()
      : (h.header.value ?? "");
  }
  return out;
}

function metadataDestination(resp: Json): string | undefined {
  const fields = (resp.dynamic_metadata as { fields?: Record<string, Json> } | undefined)?.fields;
  const lb = fields?.["envoy.lb"]?.structValue as
    | { fields?: Record<string, { stringValue?: string }> }
    | undefined;
  return lb?.fields?.["x-gateway-destination-endpoint"]?.stringValue;
}

const endpoints = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"];

async function metricText(m: PickerMetrics, name: string): Promise<string> {
  return m.registry.getSingleMetricAsString(name);
}

describe("ext_proc BUFFERED (client from the packaged Envoy protos)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ bodyMode: "buffered", packagedClient: true });
  });
  afterAll(async () => stopHarness(h));

  it("answers headers at once, decides on the body, rewrites model and Content-Length", async () => {
    const s = new EnvoyStream(h.client);
    s.send(requestHeaders());
    const headersResp = await s.next();
    expect(headersResp.request_headers).toBeDefined();
    expect(setHeaders((headersResp.request_headers as Json).response as Json)).toEqual({});

    const body = Buffer.from(
      JSON.stringify({ model: "travel-helper", prompt: "Plan a trip", max_tokens: 5 }),
    );
    s.send({ request_body: { body, end_of_stream: true } });
    const bodyResp = await s.next();
    const common = (bodyResp.request_body as Json).response as Json;
    const set = setHeaders(common);
    expect(endpoints).toContain(set["x-gateway-destination-endpoint"]);
    expect(metadataDestination(bodyResp)).toBe(set["x-gateway-destination-endpoint"]);
    expect(common.clear_route_cache).toBe(true);
    const newBody = (common.body_mutation as { body: Buffer }).body;
    const parsed = JSON.parse(Buffer.from(newBody).toString());
    expect(["travel-helper-v1", "travel-helper-v2"]).toContain(parsed.model);
    expect(parsed).toMatchObject({ prompt: "Plan a trip", max_tokens: 5 });
    expect(set["content-length"]).toBe(String(newBody.length));

    s.send({
      response_headers: {
        headers: headerList({ ":status": "200", "content-type": "application/json" }, true),
      },
    });
    expect((await s.next()).response_headers).toBeDefined();
    clock += 250;
    s.send({
      response_body: {
        body: Buffer.from(
          JSON.stringify({
            object: "text_completion",
            usage: { prompt_tokens: 11, completion_tokens: 5 },
          }),
        ),
        end_of_stream: true,
      },
    });
    const respBody = await s.next();
    expect(respBody.response_body).toBeDefined();
    expect(
      ((respBody.response_body as Json).response as Json | undefined)?.body_mutation,
    ).toBeUndefined();
    s.close();

    const total = await metricText(h.metrics, "inference_objective_request_total");
    expect(total).toMatch(
      new RegExp(`model_name="travel-helper",target_model_name="${parsed.model}",pool="pool-a"} 1`),
    );
    expect(await metricText(h.metrics, "inference_objective_input_tokens")).toContain(
      `inference_objective_input_tokens_sum{model_name="travel-helper",target_model_name="${parsed.model}",pool="pool-a"} 11`,
    );
    expect(await metricText(h.metrics, "inference_objective_request_duration_seconds")).toContain(
      `inference_objective_request_duration_seconds_sum{model_name="travel-helper",target_model_name="${parsed.model}",pool="pool-a"} 0.25`,
    );
    expect(await metricText(h.metrics, "modelrollout_picker_endpoint_picks_total")).toContain(
      `endpoint="${set["x-gateway-destination-endpoint"]}"`,
    );
  });

  it("reads header values from `value` too (older Envoy) and keeps sessions sticky", async () => {
    const targets = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const s = new EnvoyStream(h.client);
      s.send(requestHeaders({ "x-session-id": "conversation-1" }, i % 2 === 0));
      await s.next();
      s.send({
        request_body: {
          body: Buffer.from('{"model":"even-helper","prompt":"x"}'),
          end_of_stream: true,
        },
      });
      const r = await s.next();
      const newBody = ((r.request_body as Json).response as Json).body_mutation as { body: Buffer };
      targets.add(JSON.parse(Buffer.from(newBody.body).toString()).model);
      s.close();
    }
    // A 50/50 split without stickiness would show both versions in 20 draws (p ≈ 2e-6 not to).
    expect(targets.size).toBe(1);
    const unsticky = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const s = new EnvoyStream(h.client);
      s.send(requestHeaders());
      await s.next();
      s.send({
        request_body: { body: Buffer.from('{"model":"even-helper"}'), end_of_stream: true },
      });
      const r = await s.next();
      const newBody = ((r.request_body as Json).response as Json).body_mutation as { body: Buffer };
      unsticky.add(JSON.parse(Buffer.from(newBody.body).toString()).model);
      s.close();
    }
    expect(unsticky.size).toBe(2);
  });

  it("does not rewrite or set Content-Length when the model is unchanged", async () => {
    const s = new EnvoyStream(h.client);
    s.send(requestHeaders());
    await s.next();
    s.send({
      request_body: { body: Buffer.from('{"model":"base","prompt":"x"}'), end_of_stream: true },
    });
    const common = ((await s.next()).request_body as Json).response as Json;
    expect(common.body_mutation).toBeUndefined();
    expect(setHeaders(common)["content-length"]).toBeUndefined();
    expect(endpoints).toContain(setHeaders(common)["x-gateway-destination-endpoint"]);
    s.close();
  });

  it("answers 400 for a bad body and 404 for an unknown model, then ends the stream", async () => {
    for (const [body, status, code] of [
      ["{not json", 400, "BadRequest"],
      ['{"prompt":"no model"}', 400, "BadRequest"],
      ['{"model":"nope"}', 404, "BadConfiguration"],
    ] as const) {
      const s = new EnvoyStream(h.client);
      s.send(requestHeaders());
      await s.next();
      s.send({ request_body: { body: Buffer.from(body), end_of_stream: true } });
      const r = await s.next();
      const immediate = r.immediate_response as { status: { code: string | number }; body: Buffer };
      expect(immediate).toBeDefined();
      // enums decode as names: BadRequest / NotFound
      expect(immediate.status.code).toBe(status === 400 ? "BadRequest" : "NotFound");
      expect(JSON.parse(Buffer.from(immediate.body).toString()).error.code).toBe(code);
      await s.waitEnd();
    }
    expect(await metricText(h.metrics, "inference_objective_request_error_total")).toContain(
      'model_name="nope",target_model_name="",pool="pool-a",error_code="BadConfiguration"} 1',
    );
  });

  it("routes a bodyless request (GET /v1/models) at once", async () => {
    const s = new EnvoyStream(h.client);
    s.send(requestHeaders({ ":method": "GET", ":path": "/v1/models" }, true, true));
    const r = await s.next();
    const common = (r.request_headers as Json).response as Json;
    expect(endpoints).toContain(setHeaders(common)["x-gateway-destination-endpoint"]);
    expect(common.clear_route_cache).toBe(true);
    s.close();
  });

  it("health: SERVING when ready, NOT_SERVING otherwise", async () => {
    const pkg = grpc.loadPackageDefinition(loadHealthDefinition()) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const health = new pkg.grpc.health.v1.Health(
      `127.0.0.1:${h.handle.port}`,
      grpc.credentials.createInsecure(),
    );
    const check = () =>
      new Promise<string>((resolve, reject) =>
        (
          health as unknown as {
            Check: (r: Json, cb: (e: Error | null, r: { status: string }) => void) => void;
          }
        ).Check({ service: "" }, (e, r) => (e ? reject(e) : resolve(r.status))),
      );
    expect(await check()).toBe("SERVING");
    h.serving.value = false;
    expect(await check()).toBe("NOT_SERVING");
    h.serving.value = true;
    health.close();
  });
});

describe("ext_proc FULL_DUPLEX_STREAMED (client from the overlay protos)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ bodyMode: "full-duplex", packagedClient: false, fallbackCount: 1 });
  });
  afterAll(async () => stopHarness(h));

  it("buffers a >62,000-byte body, sends one headers response, then the body in chunks", async () => {
    const s = new EnvoyStream(h.client);
    s.send(requestHeaders({ "x-gateway-destination-endpoint-fallback": "7.7.7.7:80" }));
    const prompt = "The quick brown fox jumps over the lazy dog. ".repeat(4000); // ~180 KB
    const body = Buffer.from(JSON.stringify({ model: "travel-helper", prompt, stream: true }));
    const cuts = [0, 50_000, 120_000, body.length];
    for (let i = 0; i < 3; i++) {
      s.send({
        request_body: { body: body.subarray(cuts[i], cuts[i + 1]), end_of_stream: i === 2 },
      });
    }
    const first = await s.next();
    const common = (first.request_headers as Json).response as Json;
    expect(common).toBeDefined(); // nothing was sent before the body was complete
    const set = setHeaders(common);
    const [primary, fallback, ...rest] = set["x-gateway-destination-endpoint"].split(",");
    expect(endpoints).toContain(primary);
    expect(endpoints).toContain(fallback);
    expect(fallback).not.toBe(primary);
    expect(rest).toEqual([]);
    expect(set["x-gateway-destination-endpoint"]).not.toContain("6.6.6.6");
    expect(metadataDestination(first)).toBe(set["x-gateway-destination-endpoint"]);
    expect((common.header_mutation as { remove_headers: string[] }).remove_headers).toContain(
      "x-gateway-destination-endpoint-fallback",
    );
    expect(common.clear_route_cache).toBe(true);

    const parts: Buffer[] = [];
    for (;;) {
      const r = await s.next();
      const streamed = (((r.request_body as Json).response as Json).body_mutation as Json)
        .streamed_response as {
        body: Buffer;
        end_of_stream?: boolean;
      };
      expect(streamed.body.length).toBeLessThanOrEqual(62_000);
      parts.push(Buffer.from(streamed.body));
      if (streamed.end_of_stream) break;
    }
    expect(parts.length).toBe(Math.ceil(Number(set["content-length"]) / 62_000));
    const rewritten = Buffer.concat(parts);
    expect(set["content-length"]).toBe(String(rewritten.length));
    const parsed = JSON.parse(rewritten.toString());
    expect(parsed.prompt).toBe(prompt);
    expect(["travel-helper-v1", "travel-helper-v2"]).toContain(parsed.model);

    // Response: SSE passes back untouched chunk by chunk; TTFT and usage are recorded.
    s.send({
      response_headers: {
        headers: headerList({ ":status": "200", "content-type": "text/event-stream" }, true),
      },
    });
    expect((await s.next()).response_headers).toBeDefined();
    clock += 40;
    const sse = [
      'data: {"choices":[{"text":"Hi"}]}\n\n',
      'data: {"choices":[],"usage":{"prompt_tokens":9000,"completion_tokens":3}}\n\ndata: [DONE]\n\n',
    ];
    for (let i = 0; i < sse.length; i++) {
      s.send({ response_body: { body: Buffer.from(sse[i]), end_of_stream: i === sse.length - 1 } });
      const echoed = (((await s.next()).response_body as Json).response as Json)
        .body_mutation as Json;
      const sr = echoed.streamed_response as { body: Buffer; end_of_stream?: boolean };
      expect(Buffer.from(sr.body).toString()).toBe(sse[i]);
      expect(sr.end_of_stream === true).toBe(i === sse.length - 1);
    }
    s.close();
    const ttft = await metricText(h.metrics, "inference_objective_request_ttft_seconds");
    expect(ttft).toContain(`target_model_name="${parsed.model}",pool="pool-a"} 0.04`);
    expect(await metricText(h.metrics, "inference_objective_output_tokens")).toContain(
      `inference_objective_output_tokens_sum{model_name="travel-helper",target_model_name="${parsed.model}",pool="pool-a"} 3`,
    );
  });

  it("counts a model-server error status against the target model", async () => {
    const s = new EnvoyStream(h.client);
    s.send(requestHeaders());
    s.send({
      request_body: { body: Buffer.from('{"model":"base","prompt":"x"}'), end_of_stream: true },
    });
    await s.next();
    await s.next();
    s.send({ response_headers: { headers: headerList({ ":status": "500" }, false) } });
    await s.next();
    s.send({ response_body: { body: Buffer.from("{}"), end_of_stream: true } });
    await s.next();
    s.close();
    expect(await metricText(h.metrics, "inference_objective_request_error_total")).toContain(
      'model_name="base",target_model_name="base",pool="pool-a",error_code="ModelServerError"} 1',
    );
  });

  it("follows protocol_config when Envoy announces BUFFERED", async () => {
    const s = new EnvoyStream(h.client);
    s.send({
      ...requestHeaders(),
      protocol_config: { request_body_mode: "BUFFERED", response_body_mode: "NONE" },
    });
    expect((await s.next()).request_headers).toBeDefined();
    s.send({ request_body: { body: Buffer.from('{"model":"base"}'), end_of_stream: true } });
    const r = await s.next();
    expect(endpoints).toContain(
      setHeaders((r.request_body as Json).response as Json)["x-gateway-destination-endpoint"].split(
        ",",
      )[0],
    );
    s.close();
  });

  it("answers 413 as soon as the body passes the limit", async () => {
    const small = await startHarness({
      bodyMode: "full-duplex",
      packagedClient: false,
      maxBodyBytes: 1000,
    });
    const s = new EnvoyStream(small.client);
    s.send(requestHeaders());
    s.send({ request_body: { body: Buffer.alloc(800, 0x20), end_of_stream: false } });
    s.send({ request_body: { body: Buffer.alloc(800, 0x20), end_of_stream: false } });
    const r = await s.next();
    expect((r.immediate_response as { status: { code: string } }).status.code).toBe(
      "PayloadTooLarge",
    );
    await s.waitEnd();
    await stopHarness(small);
  });

  it("answers 429 for sheddable requests on a saturated pool and 503 without endpoints", async () => {
    const saturated = await startHarness({
      bodyMode: "full-duplex",
      packagedClient: false,
      ds: makeDatastore(2, 50),
    });
    const empty = await startHarness({
      bodyMode: "full-duplex",
      packagedClient: false,
      ds: makeDatastore(0),
    });
    const cases: [Harness, string, string][] = [
      [saturated, '{"model":"batch"}', "TooManyRequests"],
      [empty, '{"model":"travel-helper"}', "ServiceUnavailable"],
    ];
    for (const [harness, body, code] of cases) {
      const s = new EnvoyStream(harness.client);
      s.send(requestHeaders());
      s.send({ request_body: { body: Buffer.from(body), end_of_stream: true } });
      const r = await s.next();
      expect((r.immediate_response as { status: { code: string } }).status.code).toBe(code);
      await s.waitEnd();
    }
    // A critical request on the saturated pool is still served.
    const s = new EnvoyStream(saturated.client);
    s.send(requestHeaders());
    s.send({
      request_body: { body: Buffer.from('{"model":"travel-helper"}'), end_of_stream: true },
    });
    expect((await s.next()).request_headers).toBeDefined();
    s.close();
    await stopHarness(saturated);
    await stopHarness(empty);
  });
});

describe("headersToMap", () => {
  it("prefers raw_value, falls back to value, lower-cases keys and joins repeats", () => {
    const m = headersToMap({
      headers: [
        { key: "X-A", raw_value: Buffer.from("raw"), value: "ignored" },
        { key: "x-b", value: "plain" },
        { key: "x-c", raw_value: Buffer.alloc(0), value: "fallback" },
        { key: "x-b", value: "again" },
      ],
    });
    expect(Object.fromEntries(m)).toEqual({
      "x-a": "raw",
      "x-b": "plain,again",
      "x-c": "fallback",
    });
  });
});

/** Flow control over one running slot per pod: a second request is held. */
const oneSlot = {
  enabled: true,
  maxRunning: 1,
  maxWaitMs: 10_000,
  sheddableMaxWaitMs: 1000,
  maxQueue: 16,
  localityWaitMs: 200,
};

describe("ext_proc with flow control (every running slot busy)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      bodyMode: "full-duplex",
      packagedClient: false,
      ds: makeDatastore(1),
      flowControl: oneSlot,
    });
  });
  afterAll(async () => stopHarness(h));

  const body = Buffer.from(JSON.stringify({ model: "base", prompt: "hi" }));
  const sendRequest = (s: EnvoyStream) => {
    s.send(requestHeaders());
    s.send({ request_body: { body, end_of_stream: true } });
  };
  const untilHeld = async (n: number) => {
    const deadline = Date.now() + 5000;
    while (h.router.heldCount().now !== n) {
      if (Date.now() > deadline) throw new Error(`held ${h.router.heldCount().now}, expected ${n}`);
      await new Promise(resolve => setTimeout(resolve, 10));
    }
  };
  const destinationOf = (resp: Json) =>
    setHeaders((resp.request_headers as Json).response as Json)["x-gateway-destination-endpoint"];

  it("holds the decision while the pod's slot is taken and answers when it frees", async () => {
    const first = new EnvoyStream(h.client);
    sendRequest(first);
    expect(destinationOf(await first.next())).toBe("10.0.0.1:8000");
    await first.next(); // the body

    const second = new EnvoyStream(h.client);
    sendRequest(second);
    await untilHeld(1);
    expect(second.pending()).toBe(0); // no decision while held

    // The first request's response ends: its slot frees and the held one goes.
    first.send({
      response_headers: { headers: headerList({ ":status": "200" }, true), end_of_stream: true },
    });
    await first.next();
    expect(destinationOf(await second.next())).toBe("10.0.0.1:8000");
    expect(h.router.heldCount().now).toBe(0);
    first.close();
    second.close();
  });

  it("takes a held request out of the queue when Envoy ends its stream", async () => {
    const running = new EnvoyStream(h.client);
    sendRequest(running);
    await running.next();
    await running.next();
    const held = new EnvoyStream(h.client);
    sendRequest(held);
    await untilHeld(1);
    held.close(); // Envoy gives up (client went away)
    await untilHeld(0);
    running.close();
    await running.waitEnd();
  });
});

describe("ext_proc past capacity: fast 429s", () => {
  const body = Buffer.from(JSON.stringify({ model: "base", prompt: "hi" }));
  const statusOf = (r: Json) => (r.immediate_response as { status: { code: string } }).status.code;

  it("answers 429 at the request headers while the picker's event loop runs late, before any body", async () => {
    const guard = new OverloadGuard({ maxLoopDelayMs: 50, maxPending: 1 });
    const h = await startHarness({ bodyMode: "full-duplex", packagedClient: false, guard });
    // A request taken in and decided leaves the guard's count: the next one is taken too.
    for (let i = 0; i < 2; i++) {
      const s = new EnvoyStream(h.client);
      s.send(requestHeaders());
      s.send({ request_body: { body, end_of_stream: true } });
      expect((await s.next()).request_headers).toBeDefined();
      s.close();
    }
    expect(guard.pending).toBe(0);
    for (let i = 0; i < 8; i++) guard.noteLoopDelay(500);
    const s = new EnvoyStream(h.client);
    const started = Date.now();
    s.send(requestHeaders()); // no body follows: the answer must not wait for one
    const r = await s.next();
    expect(statusOf(r)).toBe("TooManyRequests");
    expect(Date.now() - started).toBeLessThan(1000);
    await s.waitEnd();
    expect(guard.rejected).toBe(1);
    const page = await h.metrics.registry.metrics();
    expect(page).toMatch(/error_code="InferencePoolResourceExhausted"[^\n]* 1/);
    await stopHarness(h);
  });

  it("answers 429 when flow control's queue is full instead of sending to a pod's queue", async () => {
    const h = await startHarness({
      bodyMode: "full-duplex",
      packagedClient: false,
      ds: makeDatastore(1),
      flowControl: { ...oneSlot, maxQueue: 1, localityWaitMs: 0 },
    });
    const streams = [0, 1, 2].map(() => new EnvoyStream(h.client));
    for (const s of streams.slice(0, 2)) {
      s.send(requestHeaders());
      s.send({ request_body: { body, end_of_stream: true } });
    }
    expect((await streams[0].next()).request_headers).toBeDefined(); // runs
    const deadline = Date.now() + 5000;
    while (h.router.heldCount().now !== 1 && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 10));
    }
    expect(h.router.heldCount().now).toBe(1); // the second waits
    streams[2].send(requestHeaders());
    streams[2].send({ request_body: { body, end_of_stream: true } });
    expect(statusOf(await streams[2].next())).toBe("TooManyRequests");
    expect(h.router.rejectedCount().get("queue-full")).toBe(1);
    streams.forEach(s => s.close());
    await stopHarness(h);
  });
});
