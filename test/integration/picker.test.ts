// The picker on the real control plane with simulated model-server pods: the picker runs as its
// own process (`picker/main.ts`, as `npm run picker` does), discovers the InferencePool, its pods
// and InferenceModels by watching the real kube-apiserver, scrapes the simulators' /metrics, and
// serves real traffic through its two front doors. Every test has its own namespace, pods and
// picker, and removes them again.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  ModelServer,
  ModelServerOptions,
  deployModelServer,
  removeModelServer,
  setPodReady,
} from "../../hack/env/model-servers";
import { ensureBinaries } from "../../hack/env/cluster";
import { ensureImage, imageKubeconfigPath, openImage } from "../../hack/images";
import { goLoad } from "../../bench/picker/load";
import { addScrapeTarget, removeScrapeTarget } from "../../hack/env/prometheus";
import { loadExtProcDefinition } from "../../picker/protos";
import { PickerProcessOptions, startPickerProcess } from "../support/picker-process";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";

const V1 = "travel-helper-v1";
const V2 = "travel-helper-v2";
const POOL = "travel-pool";
const PORT = 8000;

/** Measurements go to stderr, so a run shows them next to the verdicts. */
const report = (line: string) => process.stderr.write(`[picker] ${line}\n`);

// --- The picker as a child process -------------------------------------------------------------

interface RunningPicker {
  proxyUrl: string;
  grpcPort: number;
  metricsUrl: string;
  metricsPort: number;
  logFile: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts `picker/main.ts` (or `entrypoint`) on loopback with every port chosen by the OS (read
 * back from its log).
 */
async function startPicker(
  namespace: string,
  extraArgs: string[] = [],
  entrypoint?: PickerProcessOptions["entrypoint"],
): Promise<RunningPicker> {
  const { info } = env();
  const logFile = path.join(info.logDir, `picker-${namespace}.log`);
  const p = await startPickerProcess({
    pool: POOL,
    namespace,
    kubeconfig: info.kubeconfig,
    args: extraArgs,
    entrypoint,
    logFile,
  });
  return {
    proxyUrl: p.proxyUrl!,
    grpcPort: p.grpcPort!,
    metricsUrl: p.metricsBaseUrl,
    metricsPort: p.metricsPort,
    logFile,
    pid: p.pid,
    stop: p.stop,
  };
}

/** The sum of a metric's series on a /metrics page (labels matched as a substring); NaN if none. */
function seriesSum(page: string, name: string, labels = ""): number {
  let sum = 0;
  let found = false;
  for (const line of page.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    found = true;
  }
  return found ? sum : NaN;
}

/** The value of one series on the picker's /metrics (labels matched as a substring). */
async function pickerMetric(p: RunningPicker, name: string, labels = ""): Promise<number> {
  return seriesSum(await (await fetch(`${p.metricsUrl}/metrics`)).text(), name, labels);
}

/** What hack/envoy-side prints (its Result). */
interface EnvoySideResult {
  immediateStatus?: number;
  immediateBody?: string;
  setHeaders?: Record<string, string>;
  clearRouteCache: boolean;
  metadataDestination?: string;
  body?: string;
  bodyChunks: number;
  upstreamStatus?: number;
  responseBody?: string;
}

// --- A namespace with a pool, its pods and its picker ------------------------------------------

interface Fixture {
  ns: TestNamespace;
  servers: ModelServer[];
  picker: RunningPicker;
  kubectl: (args: string[], input?: string) => string;
  /** kubectl without blocking this process: traffic keeps flowing while it runs. */
  kubectlAsync: (args: string[]) => Promise<string>;
  cleanups: (() => void | Promise<void>)[];
}

type SimOptions = Partial<Omit<ModelServerOptions, "namespace" | "name" | "labels" | "port">>;

/**
 * Deploys emulated model-server pods one after the other. Each simulator gets POD_NAME as the
 * Downward API would set it (deployModelServer does), so every answer carries `x-inference-pod`
 * (llm-d-inference-sim's header) and the client sees which pod served it. Whatever started is in
 * `servers`, also when one failed.
 */
async function deployPods(
  namespace: string,
  names: string[],
  sim: SimOptions,
  servers: ModelServer[],
): Promise<void> {
  for (const name of names) {
    const server = await deployModelServer(env().info, {
      model: "Qwen/Qwen2.5-1.5B-Instruct",
      servedModelNames: ["mymodel"],
      loraAdapters: [V1, V2],
      maxLoras: 2,
      maxNumSeqs: 64,
      ...sim,
      namespace,
      name,
      labels: { app: "vllm-travel" },
      port: PORT,
    });
    servers.push(server);
    const probe = await complete(server.url, { model: "mymodel" });
    if (probe.pod !== name) {
      throw new Error(
        `pod ${name} answered without x-inference-pod: ${name} (got ${probe.pod}); the tests ` +
          `need the simulator to see POD_NAME`,
      );
    }
  }
}

const poolYaml = `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${POOL}}
spec:
  selector: {app: vllm-travel}
  targetPortNumber: ${PORT}
  extensionRef: {name: ${POOL}-epp}
`;

function modelYaml(weights: [number, number] | undefined): string {
  const targets = weights
    ? `[{name: ${V1}, weight: ${weights[0]}}, {name: ${V2}, weight: ${weights[1]}}]`
    : `[{name: ${V1}}, {name: ${V2}}]`;
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: travel-helper}
spec:
  modelName: travel-helper
  criticality: Critical
  poolRef: {name: ${POOL}}
  targetModels: ${targets}
`;
}

async function setUp(
  prefix: string,
  opts: {
    pods: number;
    sim?: SimOptions;
    weights?: [number, number];
    pickerArgs?: string[];
    entrypoint?: PickerProcessOptions["entrypoint"];
  },
): Promise<Fixture> {
  const t0 = performance.now();
  const ns = createTestNamespace(prefix);
  const kubectl = (args: string[], input?: string) =>
    env().kubectl(["-n", ns.name, ...args], input);
  const { info } = env();
  const kubectlAsync = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        info.kubectl,
        ["--kubeconfig", info.kubeconfig, "-n", ns.name, ...args],
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
      ),
    );
  const fixture: Fixture = {
    ns,
    servers: [],
    picker: undefined as unknown as RunningPicker,
    kubectl,
    kubectlAsync,
    cleanups: [],
  };
  try {
    kubectl(["apply", "-f", "-"], poolYaml + "---" + modelYaml(opts.weights));
    const names = Array.from({ length: opts.pods }, (_, i) => `vllm-travel-${i}`);
    // The picker starts while the pods are deployed; whatever did start is recorded for the
    // teardown even if something else failed.
    const [picker, pods] = await Promise.allSettled([
      startPicker(ns.name, opts.pickerArgs, opts.entrypoint),
      deployPods(ns.name, names, opts.sim ?? {}, fixture.servers),
    ]);
    if (picker.status === "fulfilled") fixture.picker = picker.value;
    if (picker.status === "rejected") throw picker.reason;
    if (pods.status === "rejected") throw pods.reason;
    await waitFor(
      `the picker to see ${opts.pods} ready pods`,
      async () =>
        (await pickerMetric(fixture.picker, "inference_pool_ready_pods", `name="${POOL}"`)) ===
        opts.pods,
      30000,
      `see ${fixture.picker.logFile}`,
    );
    // The InferenceModel is known once a request for the public name is split onto an adapter.
    await waitFor(
      "the picker to split travel-helper onto its adapters",
      async () => [V1, V2].includes((await complete(fixture.picker.proxyUrl)).model ?? ""),
      30000,
      `see ${fixture.picker.logFile}`,
    );
    report(`${ns.name}: set up in ${(performance.now() - t0).toFixed(0)} ms`);
    return fixture;
  } catch (err) {
    await tearDown(fixture);
    throw err;
  }
}

async function tearDown(f: Fixture): Promise<void> {
  const t0 = performance.now();
  for (const c of f.cleanups.reverse()) await c();
  await f.picker?.stop();
  await Promise.all(f.servers.map(s => removeModelServer(env().info, s.namespace, s.name)));
  await f.ns.cleanup();
  report(`${f.ns.name}: torn down in ${(performance.now() - t0).toFixed(0)} ms`);
}

// --- Traffic ----------------------------------------------------------------------------------

interface Outcome {
  status: number;
  /** `model` of the answer: the adapter that answered a LoRA request. */
  model?: string;
  /** `x-inference-pod` of the answer. */
  pod?: string;
  /** The `x-session-id` the request carried. */
  session?: string;
  error?: string;
  startMs: number;
  endMs: number;
}

async function complete(
  url: string,
  opts: {
    headers?: Record<string, string>;
    prompt?: string;
    maxTokens?: number;
    model?: string;
  } = {},
): Promise<Outcome> {
  const startMs = performance.now();
  try {
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...opts.headers },
      body: JSON.stringify({
        model: opts.model ?? "travel-helper",
        prompt: opts.prompt ?? "Plan a weekend in Lisbon",
        max_tokens: opts.maxTokens ?? 1,
      }),
    });
    const text = await res.text();
    let model: string | undefined;
    try {
      model = (JSON.parse(text) as { model?: string }).model;
    } catch {
      /* an error page */
    }
    return {
      status: res.status,
      session: opts.headers?.["x-session-id"],
      model,
      pod: res.headers.get("x-inference-pod") ?? undefined,
      error: res.ok ? undefined : text,
      startMs,
      endMs: performance.now(),
    };
  } catch (err) {
    return { status: 0, error: String(err), startMs, endMs: performance.now() };
  }
}

type RequestOptions = Parameters<typeof complete>[1];

/** `count` requests, `concurrency` at a time. */
async function drive(
  url: string,
  count: number,
  concurrency: number,
  options: (i: number) => RequestOptions = () => ({}),
): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      out.push(await complete(url, options(i)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

/** Traffic that flows until stopped. */
function flow(url: string, concurrency: number) {
  const outcomes: Outcome[] = [];
  let running = true;
  const workers = Array.from({ length: concurrency }, async () => {
    while (running) outcomes.push(await complete(url));
  });
  return {
    outcomes,
    async stop(): Promise<Outcome[]> {
      running = false;
      await Promise.all(workers);
      return outcomes;
    },
  };
}

/** Each named series summed over the pods' /metrics pages (every label set of it). */
async function podMetricSums(servers: ModelServer[], names: string[]): Promise<number[]> {
  const sums = names.map(() => 0);
  for (const s of servers) {
    const page = await (await fetch(`${s.url}/metrics`)).text();
    names.forEach((name, i) => (sums[i] += seriesSum(page, name) || 0)); // absent: none yet
  }
  return sums;
}

function countBy<T>(items: T[], key: (t: T) => string | undefined): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) {
    const k = key(item) ?? "(none)";
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

function failures(outcomes: Outcome[]): Outcome[] {
  return outcomes.filter(o => o.status !== 200);
}

/** Pearson's chi-square statistic of observed counts against expected shares. */
function chiSquare(observed: number[], shares: number[]): number {
  const n = observed.reduce((a, b) => a + b, 0);
  const total = shares.reduce((a, b) => a + b, 0);
  return observed.reduce((sum, o, i) => {
    const expected = (n * shares[i]) / total;
    return sum + (o - expected) ** 2 / expected;
  }, 0);
}

/** Chi-square critical value, 1 degree of freedom, p = 0.001: a false alarm once in 1,000 runs. */
const CHI2_CRITICAL_1DF = 10.828;

// --- Envoy's side of ext_proc ----------------------------------------------------------------

type Json = Record<string, unknown>;

interface HeaderMutationJson {
  set_headers?: { header: { key: string; raw_value?: Buffer; value?: string } }[];
  remove_headers?: string[];
}

/** One ext_proc stream, as Envoy opens it for one HTTP request (real protos, real gRPC). */
class EnvoyStream {
  private readonly call: grpc.ClientDuplexStream<Json, Json>;
  private readonly received: Json[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;

  constructor(client: grpc.Client) {
    const process = (client as unknown as { Process: () => grpc.ClientDuplexStream<Json, Json> })
      .Process;
    this.call = process.call(client);
    this.call.on("data", (m: Json) => {
      this.received.push(m);
      this.wake?.();
    });
    this.call.on("error", (err: Error) => {
      this.failure = err;
      this.wake?.();
    });
  }

  send(message: Json): void {
    this.call.write(message);
  }

  async next(): Promise<Json> {
    const deadline = Date.now() + 10000;
    while (this.received.length === 0) {
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) throw new Error("no ext_proc response within 10 s");
      await new Promise<void>(resolve => {
        this.wake = resolve;
        setTimeout(resolve, 200);
      });
    }
    return this.received.shift()!;
  }

  end(): void {
    this.call.end();
  }
}

const headerMap = (headers: Record<string, string>) => ({
  headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })),
});

function setHeaders(mutation: HeaderMutationJson | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { header } of mutation?.set_headers ?? []) {
    out[header.key] = header.raw_value
      ? Buffer.from(header.raw_value).toString("utf8")
      : (header.value ?? "");
  }
  return out;
}

function extProcClient(port: number): grpc.Client {
  const pkg = grpc.loadPackageDefinition(loadExtProcDefinition()) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } };
  };
  return new pkg.envoy.service.ext_proc.v3.ExternalProcessor(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  );
}

/**
 * One request through ext_proc in FULL_DUPLEX_STREAMED mode, with Envoy's part played here:
 * headers and body to the picker, its decision back, the (rewritten) body sent to the chosen
 * destination, and the answer passed back through the picker.
 */
async function viaExtProc(
  client: grpc.Client,
  requestBody: Json,
): Promise<{ destination: string; metadataDestination?: string; sentModel: string; answer: Json }> {
  const stream = new EnvoyStream(client);
  const body = Buffer.from(JSON.stringify(requestBody));
  stream.send({
    request_headers: {
      headers: headerMap({
        ":method": "POST",
        ":path": "/v1/completions",
        ":authority": "gateway",
        "content-type": "application/json",
        "content-length": String(body.length),
        // A client must not choose the pod: this header is overwritten, never trusted.
        "x-gateway-destination-endpoint": "6.6.6.6:80",
      }),
      end_of_stream: false,
    },
    protocol_config: {
      request_body_mode: "FULL_DUPLEX_STREAMED",
      response_body_mode: "FULL_DUPLEX_STREAMED",
    },
  });
  stream.send({ request_body: { body, end_of_stream: true } });

  const decision = await stream.next();
  const common = (decision.request_headers as { response?: Json } | undefined)?.response;
  if (!common)
    throw new Error(`expected a request_headers response, got ${JSON.stringify(decision)}`);
  const set = setHeaders(common.header_mutation as HeaderMutationJson);
  const destination = set["x-gateway-destination-endpoint"];
  const lb = (decision.dynamic_metadata as { fields?: Record<string, Json> } | undefined)?.fields?.[
    "envoy.lb"
  ]?.structValue as { fields?: Record<string, { stringValue?: string }> } | undefined;
  const chunks: Buffer[] = [];
  for (;;) {
    const part = await stream.next();
    const streamed = (
      (part.request_body as { response?: Json } | undefined)?.response?.body_mutation as
        | { streamed_response?: { body?: Buffer; end_of_stream?: boolean } }
        | undefined
    )?.streamed_response;
    if (!streamed) throw new Error(`expected a streamed body, got ${JSON.stringify(part)}`);
    chunks.push(Buffer.from(streamed.body ?? Buffer.alloc(0)));
    if (streamed.end_of_stream) break;
  }
  const forwarded = Buffer.concat(chunks);
  expect(set["content-length"]).toBe(String(forwarded.length));

  // Envoy sends the request to the destination the picker chose.
  const res = await fetch(`http://${destination}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: forwarded,
  });
  const answerBytes = Buffer.from(await res.arrayBuffer());
  stream.send({
    response_headers: {
      headers: headerMap({ ":status": String(res.status), "content-type": "application/json" }),
    },
  });
  await stream.next();
  stream.send({ response_body: { body: answerBytes, end_of_stream: true } });
  const echoed = await stream.next();
  const echoedBody = (
    (echoed.response_body as { response?: Json } | undefined)?.response?.body_mutation as
      | { streamed_response?: { body?: Buffer } }
      | undefined
  )?.streamed_response?.body;
  // Full duplex: Envoy forwards only what the picker hands back, so it must be every byte.
  expect(Buffer.from(echoedBody ?? Buffer.alloc(0)).equals(answerBytes)).toBe(true);
  stream.end();
  return {
    destination,
    metadataDestination: lb?.fields?.["x-gateway-destination-endpoint"]?.stringValue,
    sentModel: (JSON.parse(forwarded.toString("utf8")) as { model: string }).model,
    answer: JSON.parse(answerBytes.toString("utf8")) as Json,
  };
}

// --- Tests ------------------------------------------------------------------------------------

describe("picker on the real control plane with simulated model servers", () => {
  it("splits travel-helper 90/10 onto its adapters within statistical bounds (HTTP proxy)", async () => {
    const f = await setUp("picker-split", { pods: 2, weights: [90, 10] });
    try {
      const outcomes = await drive(f.picker.proxyUrl, 2000, 16);
      expect(failures(outcomes)).toEqual([]);
      const counts = countBy(outcomes, o => o.model);
      expect(Object.keys(counts).sort()).toEqual([V1, V2]);
      const chi2 = chiSquare([counts[V1], counts[V2]], [90, 10]);
      report(
        `90/10 split over 2,000 requests: ${JSON.stringify(counts)}, chi² = ${chi2.toFixed(2)}`,
      );
      expect(chi2).toBeLessThan(CHI2_CRITICAL_1DF);
      // Both pods served: the split is per request, the pod choice independent of it.
      expect(Object.keys(countBy(outcomes, o => o.pod)).sort()).toEqual(
        f.servers.map(s => s.name).sort(),
      );
    } finally {
      await tearDown(f);
    }
  });

  it("applies changed weights within a second while traffic flows, without a failed request", async () => {
    const f = await setUp("picker-weights", { pods: 2, weights: [90, 10] });
    try {
      const traffic = flow(f.picker.proxyUrl, 8);
      await waitFor("traffic to flow", () => traffic.outcomes.length >= 200, 30000);

      // 90/10 → v2 only: the cut-over is sharp, so its delay can be measured.
      await f.kubectlAsync([
        "patch",
        "inferencemodel",
        "travel-helper",
        "--type=merge",
        "-p",
        JSON.stringify({ spec: { targetModels: [{ name: V2, weight: 100 }] } }),
      ]);
      const patchedV2Only = performance.now();
      await waitFor(
        "150 requests started later than a second after the patch",
        () => traffic.outcomes.filter(o => o.startMs > patchedV2Only + 1000).length >= 150,
        30000,
      );

      // → 50/50: the new split must hold from one second after the patch on.
      const patchEven = performance.now();
      await f.kubectlAsync([
        "patch",
        "inferencemodel",
        "travel-helper",
        "--type=merge",
        "-p",
        JSON.stringify({
          spec: {
            targetModels: [
              { name: V1, weight: 50 },
              { name: V2, weight: 50 },
            ],
          },
        }),
      ]);
      const patchedEven = performance.now();
      await waitFor(
        "800 requests started later than a second after the second patch",
        () => traffic.outcomes.filter(o => o.startMs > patchedEven + 1000).length >= 800,
        30000,
      );
      const outcomes = await traffic.stop();

      expect(failures(outcomes)).toEqual([]);
      const lastV1 = Math.max(
        ...outcomes.filter(o => o.model === V1 && o.startMs < patchEven).map(o => o.startMs),
      );
      const firstV1Again = Math.min(
        ...outcomes.filter(o => o.model === V1 && o.startMs > patchEven).map(o => o.startMs),
      );
      // Relative to kubectl returning; negative: the picker applied it before kubectl returned.
      report(
        `weights → v2 only: last v1 request started ${(lastV1 - patchedV2Only).toFixed(0)} ms ` +
          `after kubectl patch returned; → 50/50: first v1 request ` +
          `${(firstV1Again - patchedEven).toFixed(0)} ms after`,
      );
      expect(lastV1 - patchedV2Only).toBeLessThan(1000);
      expect(firstV1Again - patchedEven).toBeLessThan(1000);
      const onlyV2 = outcomes.filter(
        o => o.startMs > patchedV2Only + 1000 && o.startMs < patchEven,
      );
      expect(onlyV2.length).toBeGreaterThanOrEqual(150);
      expect(countBy(onlyV2, o => o.model)).toEqual({ [V2]: onlyV2.length });

      const even = outcomes.filter(o => o.startMs > patchedEven + 1000);
      const counts = countBy(even, o => o.model);
      const chi2 = chiSquare([counts[V1] ?? 0, counts[V2] ?? 0], [50, 50]);
      report(`50/50 after the change: ${JSON.stringify(counts)}, chi² = ${chi2.toFixed(2)}`);
      expect(chi2).toBeLessThan(CHI2_CRITICAL_1DF);
    } finally {
      await tearDown(f);
    }
  });

  it("sends no more traffic to a pod that turned unready", async () => {
    const f = await setUp("picker-unready", { pods: 2, weights: [50, 50] });
    try {
      const [keep, drop] = f.servers;
      const traffic = flow(f.picker.proxyUrl, 8);
      await waitFor(
        "both pods to serve",
        () => new Set(traffic.outcomes.map(o => o.pod)).size === 2,
        30000,
      );
      // setPodReady runs kubectl synchronously: no request starts while it runs.
      setPodReady(env().info, f.ns.name, drop.name, drop.podIP, false);
      const unready = performance.now();
      await waitFor(
        "the picker to count one ready pod",
        async () =>
          (await pickerMetric(f.picker, "inference_pool_ready_pods", `name="${POOL}"`)) === 1,
        10000,
      );
      await waitFor(
        "500 requests started a second after the pod turned unready",
        () => traffic.outcomes.filter(o => o.startMs > unready + 1000).length >= 500,
        30000,
      );
      const outcomes = await traffic.stop();
      expect(failures(outcomes)).toEqual([]);
      const stragglers = outcomes.filter(o => o.pod === drop.name && o.startMs > unready);
      report(
        `unready pod: ${stragglers.length} requests started after setPodReady(false) returned ` +
          `still reached it (the last ${Math.max(0, ...stragglers.map(o => o.startMs - unready)).toFixed(0)} ms after)`,
      );
      const later = outcomes.filter(o => o.startMs > unready + 1000);
      expect(countBy(later, o => o.pod)).toEqual({ [keep.name]: later.length });
    } finally {
      await tearDown(f);
    }
  });

  it("keeps each adapter on one pod (LoRA affinity): few adapter swaps", async () => {
    // Two pods that can hold one adapter each, two adapters at 50/50, requests that overlap.
    const f = await setUp("picker-lora", {
      pods: 2,
      weights: [50, 50],
      sim: { maxLoras: 1, maxNumSeqs: 8, timeToFirstTokenMs: 20, interTokenLatencyMs: 2 },
    });
    try {
      const outcomes = await drive(f.picker.proxyUrl, 600, 6, i => ({
        prompt: `request ${i}`,
        maxTokens: 5,
      }));
      expect(failures(outcomes)).toEqual([]);
      // Per pod, how often each adapter answered; requests for the pod's minority adapter are
      // the ones that made it load an adapter it did not hold (an adapter swap, or a wait).
      const perPod: Record<string, Record<string, number>> = {};
      for (const o of outcomes) {
        perPod[o.pod!] ??= {};
        perPod[o.pod!][o.model!] = (perPod[o.pod!][o.model!] ?? 0) + 1;
      }
      const minority = Object.values(perPod).reduce(
        (sum, counts) =>
          sum + Object.values(counts).reduce((a, b) => a + b) - Math.max(...Object.values(counts)),
        0,
      );
      const majorities = Object.values(perPod).map(
        counts => Object.entries(counts).sort((a, b) => b[1] - a[1])[0][0],
      );
      report(
        `LoRA affinity, 600 requests, 2 pods × max-loras 1: ${JSON.stringify(perPod)}; ` +
          `${minority} requests (${((100 * minority) / outcomes.length).toFixed(1)} %) off their pod's adapter`,
      );
      // Each pod mostly serves its own adapter, and the two pods hold different ones. Blind
      // balancing would put about half of the requests on the other adapter's pod.
      expect(majorities.sort()).toEqual([V1, V2]);
      expect(minority / outcomes.length).toBeLessThan(0.05);
    } finally {
      await tearDown(f);
    }
  });

  it("sends a shared prompt prefix back to the pod that cached it (prefix-cache affinity)", async () => {
    // Two pods whose prefix caches (--enable-kvcache) hold four of six documents each; every
    // request is one of the documents plus its own question. The picker remembers about as
    // much per pod as a pod caches (--prefix-lru-capacity, in blocks of 64 characters).
    const f = await setUp("picker-prefix", {
      pods: 2,
      pickerArgs: ["--prefix-lru-capacity", "64"],
      sim: {
        maxNumSeqs: 16,
        timeToFirstTokenMs: 0,
        extraArgs: ["--enable-kvcache", "--kv-cache-size=48", "--block-size=16"],
      },
    });
    try {
      const documents = Array.from({ length: 6 }, (_, d) =>
        Array.from({ length: 160 }, (_, w) => `d${d}w${w}`).join(" "),
      );
      const docOf = (i: number) => (i * 7) % documents.length; // every document, interleaved
      const cacheTokens = ["vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"];
      const [hitsBefore, queriesBefore] = await podMetricSums(f.servers, cacheTokens);
      const outcomes = await drive(f.picker.proxyUrl, 120, 4, i => ({
        model: "mymodel", // the base model: one cache per document
        prompt: `${documents[docOf(i)]} question ${i}: what does it say?`,
        maxTokens: 2,
      }));
      expect(failures(outcomes)).toEqual([]);
      const [hits, queries] = await podMetricSums(f.servers, cacheTokens);
      const hitRate = (hits - hitsBefore) / (queries - queriesBefore);
      const perDocument = documents.map((_, d) =>
        countBy(
          outcomes.filter((_, i) => docOf(i) === d),
          o => o.pod,
        ),
      );
      report(
        `prefix affinity, 120 requests over 6 documents, 2 pods caching 4 each: ` +
          `${(100 * hitRate).toFixed(0)} % of prompt tokens from the pods' caches; per document ` +
          JSON.stringify(perDocument),
      );
      // Spread blindly (prefix weight 0: 63–66 % measured), each pod sees all six documents and
      // keeps about half of them; sent where they were cached, nearly every visit but the first
      // hits. A document may still spread to the second pod when the first is busier (queue
      // and KV scores outweigh the prefix score then), which costs no hits once both hold it.
      expect(hitRate).toBeGreaterThan(0.8);
    } finally {
      await tearDown(f);
    }
  });

  it("holds requests while every pod runs all it can, and sends each to the pod that frees a slot first (flow control)", async () => {
    // Two pods that run one request at a time; eight clients. Without flow control six requests
    // would wait in the pods' own queues; with it they wait in the picker and reach a free pod.
    const f = await setUp("picker-flow", {
      pods: 2,
      weights: [90, 10],
      sim: { maxNumSeqs: 1, maxLoras: 2, timeToFirstTokenMs: 40, interTokenLatencyMs: 5 },
      pickerArgs: ["--max-running", "1"],
    });
    try {
      // llm-d-inference-sim observes vllm:request_queue_time_seconds only for requests that
      // waited in its queue; the e2e histogram counts every request it served.
      const podMetrics = [
        "vllm:request_queue_time_seconds_sum",
        "vllm:request_queue_time_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
      ];
      const [sumBefore, queuedBefore, servedBefore] = await podMetricSums(f.servers, podMetrics);
      const outcomes = await drive(f.picker.proxyUrl, 48, 8, () => ({ maxTokens: 4 }));
      expect(failures(outcomes)).toEqual([]);
      let [sum, queued, served] = await podMetricSums(f.servers, podMetrics);
      for (let i = 0; i < 40 && served - servedBefore < 48; i++) {
        await new Promise(r => setTimeout(r, 50)); // the simulator records metrics asynchronously
        [sum, queued, served] = await podMetricSums(f.servers, podMetrics);
      }
      const held = await pickerMetric(f.picker, "modelrollout_picker_flow_held_total");
      const meanQueueMs = (1000 * (sum - sumBefore)) / 48;
      report(
        `flow control, 48 requests, 8 clients, 2 pods × max-num-seqs 1: ${held} held in the ` +
          `picker, ${queued - queuedBefore} waited in a pod's queue, mean wait there ` +
          `${meanQueueMs.toFixed(1)} ms per request, per pod ` +
          JSON.stringify(countBy(outcomes, o => o.pod)),
      );
      expect(served - servedBefore).toBe(48);
      expect(held).toBeGreaterThanOrEqual(40);
      // A request reaches a pod when it has a free slot: it hardly waits there (each of the
      // 48 × 55 ms of work would otherwise wait about three service times in a pod's queue).
      expect(queued - queuedBefore).toBeLessThanOrEqual(8);
      expect(meanQueueMs).toBeLessThan(15);
      expect(Object.keys(countBy(outcomes, o => o.pod))).toHaveLength(2);
    } finally {
      await tearDown(f);
    }
  });

  it("keeps a session on one adapter version (--session-header) while the split stays 50/50", async () => {
    const f = await setUp("picker-sticky", {
      pods: 2,
      weights: [50, 50],
      pickerArgs: ["--session-header", "x-session-id"],
    });
    try {
      const sessions = 100;
      const outcomes = await drive(f.picker.proxyUrl, sessions * 15, 12, i => ({
        headers: { "x-session-id": `session-${i % sessions}` },
      }));
      expect(failures(outcomes)).toEqual([]);
      const versions = new Map<string, Set<string>>();
      for (const o of outcomes) {
        const seen = versions.get(o.session!) ?? new Set<string>();
        seen.add(o.model!);
        versions.set(o.session!, seen);
      }
      const switched = [...versions].filter(([, seen]) => seen.size > 1).map(([s]) => s);
      const perVersion = countBy([...versions.values()], seen => [...seen][0]);
      report(
        `sticky sessions: ${sessions} sessions × 15 requests, ${switched.length} switched version; ` +
          `sessions per version ${JSON.stringify(perVersion)}`,
      );
      expect(versions.size).toBe(sessions);
      expect(switched).toEqual([]);
      // The split still applies per new session: 50/50 over 100 sessions.
      expect(chiSquare([perVersion[V1] ?? 0, perVersion[V2] ?? 0], [50, 50])).toBeLessThan(
        CHI2_CRITICAL_1DF,
      );
      // Without a session key every request is drawn on its own.
      const unkeyed = await drive(f.picker.proxyUrl, 100, 12);
      expect(Object.keys(countBy(unkeyed, o => o.model)).sort()).toEqual([V1, V2]);
    } finally {
      await tearDown(f);
    }
  });
  it("answers Envoy over ext_proc with a ready pod's podIP:port, end to end", async () => {
    const f = await setUp("picker-extproc", { pods: 3, weights: [90, 10] });
    const client = extProcClient(f.picker.grpcPort);
    try {
      const [, , unready] = f.servers;
      setPodReady(env().info, f.ns.name, unready.name, unready.podIP, false);
      await waitFor(
        "the picker to count two ready pods",
        async () =>
          (await pickerMetric(f.picker, "inference_pool_ready_pods", `name="${POOL}"`)) === 2,
        10000,
      );
      const ready = f.servers.slice(0, 2).map(s => `${s.podIP}:${PORT}`);
      const results = [];
      for (let i = 0; i < 30; i++) {
        results.push(
          await viaExtProc(client, { model: "travel-helper", prompt: `trip ${i}`, max_tokens: 2 }),
        );
      }
      for (const r of results) {
        expect(ready).toContain(r.destination);
        expect(r.metadataDestination).toBe(r.destination);
        expect([V1, V2]).toContain(r.sentModel);
        // The pod at that address answered, with the adapter the picker wrote into the body.
        expect(r.answer.model).toBe(r.sentModel);
      }
      const destinations = countBy(results, r => r.destination);
      report(`ext_proc: 30 requests → ${JSON.stringify(destinations)}`);
      expect(Object.keys(destinations).sort()).toEqual([...ready].sort());
      // The picker counted them, with the response phase (duration) seen through ext_proc.
      expect(
        await pickerMetric(
          f.picker,
          "inference_objective_request_duration_seconds_count",
          `model_name="travel-helper"`,
        ),
      ).toBeGreaterThanOrEqual(30);
    } finally {
      client.close();
      await tearDown(f);
    }
  });

  // hack/envoy-side plays Envoy with the Go types go-control-plane generates from Envoy's API:
  // independent of the picker's protobufjs and of the proto files it carries (its overlay for
  // FULL_DUPLEX_STREAMED included), so a wrong field number or enum value fails here.
  it("speaks ext_proc with Envoy's own generated API (go-control-plane): both body modes and the response phase", async () => {
    // Found (or built with Go, the first time) before the pods and the picker start.
    const envoySide = ensureBinaries(() => undefined).envoySide;
    const f = await setUp("picker-envoy", { pods: 2, weights: [90, 10] });
    const exchange = (mode: string, body: string, forward = true) =>
      new Promise<EnvoySideResult>((resolve, reject) =>
        execFile(
          envoySide,
          [
            ...["-addr", `127.0.0.1:${f.picker.grpcPort}`, "-mode", mode, "-body", body],
            ...(forward ? ["-forward"] : []),
          ],
          (err, stdout, stderr) =>
            err
              ? reject(new Error(`envoy-side: ${err.message}: ${stderr}`))
              : resolve(JSON.parse(stdout)),
        ),
      );
    const durations = () =>
      pickerMetric(
        f.picker,
        "inference_objective_request_duration_seconds_count",
        `model_name="travel-helper"`,
      );
    try {
      const before = await durations();
      const pods = f.servers.map(s => `${s.podIP}:${PORT}`);
      const request = JSON.stringify({ model: "travel-helper", prompt: "to Porto", max_tokens: 2 });
      for (const mode of ["full-duplex", "buffered"]) {
        const r = await exchange(mode, request);
        report(`envoy-side ${mode}: ${JSON.stringify(r)}`);
        const destination = r.setHeaders?.["x-gateway-destination-endpoint"];
        expect(pods).toContain(destination);
        expect(r.metadataDestination).toBe(destination);
        expect(r.clearRouteCache).toBe(true);
        const sent = JSON.parse(r.body ?? "{}") as { model?: string; prompt?: string };
        expect([V1, V2]).toContain(sent.model);
        expect(sent.prompt).toBe("to Porto");
        expect(r.setHeaders?.["content-length"]).toBe(String(Buffer.byteLength(r.body ?? "")));
        // The pod answered with the adapter written into the body, and the picker handed the
        // answer back untouched through the response phase.
        expect(r.upstreamStatus).toBe(200);
        expect((JSON.parse(r.responseBody ?? "{}") as { model?: string }).model).toBe(sent.model);
      }
      const bad = await exchange("full-duplex", "{not json", false);
      expect(bad.immediateStatus).toBe(400);
      expect(bad.immediateBody).toMatch(/json/i);
      // Both answered requests were counted through their response phases (durations).
      expect((await durations()) - before).toBe(2);
    } finally {
      await tearDown(f);
    }
  });

  // bench/picker part (a) measures with bench/loadgen: check that it sends what it is told, on
  // schedule, through both doors, and that a failure shows as one.
  it("drives both doors with the benchmark's load generator (bench/loadgen): every request answered, on schedule", async () => {
    const loadgen = ensureBinaries(() => undefined).loadgen;
    const f = await setUp("picker-load", { pods: 2, weights: [90, 10] });
    const durations = () =>
      pickerMetric(
        f.picker,
        "inference_objective_request_duration_seconds_count",
        `model_name="travel-helper"`,
      );
    const bodies = {
      bodies: [
        Buffer.from(JSON.stringify({ model: "travel-helper", prompt: "hi", max_tokens: 1 })),
      ],
      weights: [1],
    };
    const open = {
      phase: "open",
      count: 300,
      rate: 1000,
      maxInflight: 1000,
      drainMs: 10000,
    } as const;
    try {
      const before = await durations();
      const viaExtProc = await goLoad(
        loadgen,
        {
          kind: "extproc",
          addr: `127.0.0.1:${f.picker.grpcPort}`,
          path: "/v1/completions",
          responsePhase: true,
        },
        bodies,
        open,
        50,
      );
      report(`loadgen, ext_proc: ${JSON.stringify({ ...viaExtProc, samples: undefined })}`);
      expect(viaExtProc.errors).toEqual([]);
      expect(viaExtProc.lost).toBe(0);
      expect(viaExtProc.samples.map(s => s.status)).toEqual(Array(300).fill(200));
      // Request i was due i ms after the start; its latency counts from then.
      const offsets = viaExtProc.samples.map(s => s.offsetMs).sort((a, b) => a - b);
      expect(offsets.map(Math.round)).toEqual(Array.from({ length: 300 }, (_, i) => i));
      for (const s of viaExtProc.samples) expect(s.latencyMs).toBeGreaterThan(0);
      // The picker saw every one (warm-up included) through its response phase.
      expect((await durations()) - before).toBe(350);

      const viaProxy = await goLoad(
        loadgen,
        { kind: "http", url: `${f.picker.proxyUrl}/v1/completions` },
        bodies,
        { phase: "single", count: 20 },
        0,
      );
      expect(viaProxy.samples.map(s => s.status)).toEqual(Array(20).fill(200));
      // One in flight at most, a request due every 0.2 ms: those that find one in flight are
      // not sent, and still get a sample, as failed.
      const limited = await goLoad(
        loadgen,
        { kind: "http", url: `${f.picker.proxyUrl}/v1/completions` },
        bodies,
        { phase: "open", count: 50, rate: 5000, maxInflight: 1, drainMs: 5000 },
        0,
      );
      expect(limited.samples).toHaveLength(50);
      const notSent = limited.samples.filter(s => s.status === 0);
      expect(notSent.length).toBe(limited.lost);
      expect(notSent.length).toBeGreaterThan(0);
      for (const s of notSent) expect(s.latencyMs).toBeNaN();
      expect(limited.errors.join(" ")).toMatch(/not sent: 1 requests in flight/);
      expect(limited.samples.filter(s => s.status === 200)).toHaveLength(50 - notSent.length);

      // Nothing listens on the port of a stopped picker: every request fails, and says why.
      const stopped = f.picker.proxyUrl;
      await f.picker.stop();
      const refused = await goLoad(
        loadgen,
        { kind: "http", url: `${stopped}/v1/completions` },
        bodies,
        { phase: "single", count: 5 },
        0,
      );
      expect(refused.samples.map(s => s.status)).toEqual(Array(5).fill(0));
      expect(refused.errors.join(" ")).toMatch(/connection refused/);
    } finally {
      await tearDown(f);
    }
  });

  // picker/Dockerfile built for real (hack/images.ts: buildah, on the node:20-bookworm-slim base
  // made locally; cached by its inputs), and the image's ENTRYPOINT run in the image's filesystem
  // with chroot, as its USER, from its WORKDIR, with only its ENV (podman cannot run containers
  // here).
  it("runs from its built image: the image's ENTRYPOINT in its filesystem serves both doors", async () => {
    const built = await ensureImage("picker", line => report(`image: ${line}`));
    const image = openImage(built.ref);
    try {
      image.writeFile(imageKubeconfigPath, fs.readFileSync(env().info.kubeconfig), 0o600);
      const f = await setUp("picker-image", {
        pods: 1,
        weights: [90, 10],
        entrypoint: image.command({ args: [], env: { KUBECONFIG: imageKubeconfigPath } }),
      });
      const client = extProcClient(f.picker.grpcPort);
      try {
        // The process is the image's entry point, inside the image's filesystem, as its user.
        const proc = `/proc/${f.picker.pid}`;
        expect(fs.realpathSync(`${proc}/root`)).toBe(fs.realpathSync(image.root));
        expect(fs.realpathSync(`${proc}/cwd`)).toBe(fs.realpathSync(path.join(image.root, "app")));
        expect(fs.readFileSync(`${proc}/status`, "utf8")).toMatch(/^Uid:\s+1000\s/m);
        const argv = fs.readFileSync(`${proc}/cmdline`, "utf8").split("\0");
        expect(argv.slice(0, image.config.entrypoint.length)).toEqual(image.config.entrypoint);
        // setUp saw the HTTP proxy split travel-helper onto an adapter; now ext_proc.
        const r = await viaExtProc(client, { model: "travel-helper", prompt: "hi", max_tokens: 2 });
        expect(r.destination).toBe(`${f.servers[0].podIP}:${PORT}`);
        expect([V1, V2]).toContain(r.sentModel);
        expect(r.answer.model).toBe(r.sentModel);
      } finally {
        client.close();
        await tearDown(f);
      }
    } finally {
      image.remove();
    }
  }, 1_800_000);

  it("is scraped by the environment's Prometheus: inference_objective_request_total", async () => {
    const f = await setUp("picker-prom", { pods: 1, weights: [90, 10] });
    const { info } = env();
    const target = `picker.${f.ns.name}`;
    addScrapeTarget(info.stateDir, target, `127.0.0.1:${f.picker.metricsPort}`, {
      component: "picker",
      namespace: f.ns.name,
    });
    f.cleanups.push(() => removeScrapeTarget(info.stateDir, target));
    try {
      expect(failures(await drive(f.picker.proxyUrl, 200, 8))).toEqual([]);
      const local = await pickerMetric(
        f.picker,
        "inference_objective_request_total",
        `model_name="travel-helper"`,
      );
      const query = `sum(inference_objective_request_total{namespace="${f.ns.name}",component="picker",model_name="travel-helper",pool="${POOL}"})`;
      let seen = NaN;
      await waitFor(
        `Prometheus to report ${local} requests: ${query}`,
        async () => {
          const result = await promQuery(info.prometheusUrl, query);
          seen = result.length === 1 ? Number(result[0].value[1]) : NaN;
          return seen === local;
        },
        20000,
        `last seen ${seen}`,
      );
      const byTarget = await promQuery(
        info.prometheusUrl,
        `sum by (target_model_name) (inference_objective_request_total{namespace="${f.ns.name}",model_name="travel-helper"})`,
      );
      const counts = Object.fromEntries(
        byTarget.map(r => [r.metric.target_model_name, Number(r.value[1])]),
      );
      report(`Prometheus: ${query} = ${seen}; by target ${JSON.stringify(counts)}`);
      expect((counts[V1] ?? 0) + (counts[V2] ?? 0)).toBeGreaterThanOrEqual(200);
    } finally {
      await tearDown(f);
    }
  });
});
