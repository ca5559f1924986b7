// Any endpoint picker: InferencePools served by the upstream endpoint picker (Gateway API Inference
// Extension v1.5.0 `cmd/epp`, the real Go binary) through the local gateway, which plays Envoy's
// side of ext_proc (hack/demo/gateway.ts). The EPP watches its v1 pool and the model-server Pods
// (real llm-d-inference-sim processes) on the real apiserver; Prometheus scrapes its metrics
// (`inference_objective_*`, labelled model_name / target_model_name, the pool added as a scrape
// target label); the operator's built-in gates read them (metricsSource upstream-epp and auto). A
// good canary succeeds; a slow canary fails its latency gate and is rolled back.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../../hack/env/config";
import { deployModelServer, removeModelServer } from "../../hack/env/model-servers";
import {
  deployUpstreamEpp,
  publishPicker,
  removeUpstreamEpp,
  unpublishPicker,
  UpstreamEpp,
} from "../../hack/env/upstream-epp";
import { operatorKubeconfig } from "../../hack/env/rbac";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { PickerProcess, startPickerProcess } from "../support/picker-process";
import { rolloutHelpers } from "../support/rollouts";

const MODEL = "mymodel";
const GATEWAY = "inference-gateway";
const ROUTE = "llm-route";
/** Pool -> its model server: v1 and v2 answer alike, v3 is a slow build (10x the TTFT). */
const POOLS = {
  "pool-v1": { ttftMs: 20 },
  "pool-v2": { ttftMs: 20 },
  "pool-v3": { ttftMs: 400 },
} as const;
type PoolName = keyof typeof POOLS;

const report = (line: string) => process.stderr.write(`[upstream-epp] ${line}\n`);

let ns: TestNamespace;
let operator: RunningOperator;
let gateway: { url: string; child: ChildProcess; log: string };
const epps = new Map<PoolName, UpstreamEpp>();
/** A fourth pool, served by this project's picker through the same ext_proc path. */
const OURS = "pool-ours";
let ourPicker: PickerProcess | undefined;
/** The traffic generator: requests by status and by the pod that answered. */
const traffic = {
  running: true,
  byStatus: {} as Record<string, number>,
  byPod: {} as Record<string, number>,
  loops: [] as Promise<void>[],
};

const { kubectl, apply, getJson, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);

function poolYaml(name: string): string {
  return `
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: ${name}}
spec:
  selector: {matchLabels: {app: sim, pool: ${name}}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: ${name}-epp, port: {number: 9002}}
`;
}

async function startGateway(namespace: string): Promise<typeof gateway> {
  const log = path.join(env().info.logDir, `gateway-${namespace}.log`);
  const out = fs.openSync(log, "a");
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(repoRoot, "hack/demo/gateway.ts"),
      "--namespace",
      namespace,
      "--gateway",
      GATEWAY,
    ],
    { stdio: ["ignore", out, out], env: { ...process.env, KUBECONFIG: env().info.kubeconfig } },
  );
  fs.closeSync(out);
  let url = "";
  await waitFor(
    "the local gateway to listen",
    () => {
      const m = /gateway listening on (http:\/\/[\d.]+:\d+)/.exec(fs.readFileSync(log, "utf8"));
      if (m) url = m[1];
      return !!m || child.exitCode !== null;
    },
    60_000,
    `see ${log}`,
    200,
  );
  if (!url) throw new Error(`the gateway exited: see ${log}`);
  return { url, child, log };
}

/** One completion through the gateway: status and the pod that answered. */
async function complete(maxTokens = 4): Promise<{ status: number; pod?: string; body: string }> {
  const res = await fetch(`${gateway.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, prompt: "Say hello", max_tokens: maxTokens }),
    signal: AbortSignal.timeout(20_000),
  });
  return {
    status: res.status,
    pod: res.headers.get("x-inference-pod") ?? undefined,
    body: await res.text(),
  };
}

function startTraffic(concurrency: number) {
  for (let i = 0; i < concurrency; i++) {
    traffic.loops.push(
      (async () => {
        while (traffic.running) {
          try {
            const r = await complete();
            traffic.byStatus[r.status] = (traffic.byStatus[r.status] ?? 0) + 1;
            if (r.pod) traffic.byPod[r.pod] = (traffic.byPod[r.pod] ?? 0) + 1;
          } catch (err) {
            traffic.byStatus[String(err)] = (traffic.byStatus[String(err)] ?? 0) + 1;
          }
        }
      })(),
    );
  }
}

/** The InferencePool refs and weights of the route's one rule. */
function routeWeights(): Record<string, number> {
  const route = getJson<{
    spec: { rules: { backendRefs: { name: string; weight?: number }[] }[] };
  }>("httproute", ROUTE);
  return Object.fromEntries(route.spec.rules[0].backendRefs.map(r => [r.name, r.weight ?? 1]));
}

beforeAll(async () => {
  const { info } = env();
  ns = createTestNamespace("uepp");
  await Promise.all(
    (Object.keys(POOLS) as PoolName[]).map(pool =>
      deployModelServer(info, {
        namespace: ns.name,
        name: `sim-${pool}`,
        labels: { app: "sim", pool },
        port: 8000,
        model: MODEL,
        timeToFirstTokenMs: POOLS[pool].ttftMs,
        interTokenLatencyMs: 2,
        maxNumSeqs: 32,
      }),
    ),
  );
  apply((Object.keys(POOLS) as PoolName[]).map(poolYaml).join("---\n"));
  for (const pool of Object.keys(POOLS) as PoolName[]) {
    epps.set(pool, await deployUpstreamEpp(info, { namespace: ns.name, pool }));
  }
  await deployModelServer(info, {
    namespace: ns.name,
    name: `sim-${OURS}`,
    labels: { app: "sim", pool: OURS },
    port: 8000,
    model: MODEL,
    timeToFirstTokenMs: 20,
    interTokenLatencyMs: 2,
  });
  apply(poolYaml(OURS));
  ourPicker = await startPickerProcess({
    pool: OURS,
    namespace: ns.name,
    kubeconfig: info.kubeconfig,
    args: ["--disable-proxy"],
    logFile: path.join(info.logDir, `picker-${ns.name}.log`),
  });
  publishPicker(info, {
    namespace: ns.name,
    service: `${OURS}-epp`,
    servicePort: 9002,
    grpcPort: ourPicker.grpcPort!,
    image: "modelrollout-picker",
  });
  // Chat completions go to the pool of our picker (a more specific path than the rule below).
  apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat-route}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: ${GATEWAY}}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1/chat/completions}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: ${OURS}}]
`);
  apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${ROUTE}}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: ${GATEWAY}}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-v1, weight: 1}]
`);
  gateway = await startGateway(ns.name);
  operator = await startOperator({
    namespaces: [ns.name],
    name: ns.name,
    kubeconfig: operatorKubeconfig(info),
  });
}, 180_000);

afterAll(async () => {
  traffic.running = false;
  await Promise.all(traffic.loops);
  report(
    `traffic: by status ${JSON.stringify(traffic.byStatus)}, by pod ${JSON.stringify(traffic.byPod)}`,
  );
  await operator?.stop();
  if (gateway && gateway.child.exitCode === null) {
    gateway.child.kill("SIGTERM");
    await new Promise(resolve => gateway.child.once("exit", resolve));
  }
  const { info } = env();
  await ourPicker?.stop();
  unpublishPicker(info, ns.name, `${OURS}-epp`);
  await removeModelServer(info, ns.name, `sim-${OURS}`);
  for (const [pool, epp] of epps) {
    await removeUpstreamEpp(info, ns.name, epp.service);
    await removeModelServer(info, ns.name, `sim-${pool}`);
  }
  await ns.cleanup();
}, 60_000);

describe("a pool served by the upstream endpoint picker through the gateway's ext_proc", () => {
  it("routes every request to the pod the upstream EPP picks, through both ext_proc phases", async () => {
    const answers = await Promise.all(Array.from({ length: 10 }, () => complete()));
    expect(answers.map(a => a.status)).toEqual(answers.map(() => 200));
    // pool-v1's only pod answered: the EPP picked it and the gateway sent the request there.
    expect(new Set(answers.map(a => a.pod))).toEqual(new Set(["sim-pool-v1"]));
    expect(JSON.parse(answers[0].body).model).toBe(MODEL);

    const stats = (await (await fetch(`${gateway.url}/_gateway/stats`)).json()) as {
      byEndpoint: Record<string, number>;
    };
    const podIP = getJson<{ status: { podIP: string } }>("pod", "sim-pool-v1").status.podIP;
    expect(stats.byEndpoint[`pool-v1 ${podIP}:8000`]).toBeGreaterThanOrEqual(10);

    // The EPP counted them (request phase) and timed them (its response phase saw the end of
    // every answer), and Prometheus has them with the pool as a target label.
    const page = await (await fetch(`${epps.get("pool-v1")!.metricsUrl}/metrics`)).text();
    const sample = (name: string) =>
      Number(
        page
          .split("\n")
          .find(l => l.startsWith(`${name}{model_name="${MODEL}"`))
          ?.split(" ")
          .pop() ?? NaN,
      );
    expect(sample("inference_objective_request_total")).toBeGreaterThanOrEqual(10);
    expect(sample("inference_objective_request_duration_seconds_count")).toBeGreaterThanOrEqual(10);
    await waitFor(
      "Prometheus to scrape the upstream EPP's requests of pool-v1",
      async () =>
        (
          await promQuery(
            env().info.prometheusUrl,
            `inference_objective_request_total{namespace="${ns.name}",pool="pool-v1",model_name="${MODEL}"}`,
          )
        ).some(s => Number(s.value[1]) >= 10),
      15_000,
      `see ${env().info.prometheusUrl}/targets`,
      250,
    );
  });

  it("this project's picker serves a pool through the same ext_proc path (any conformant picker)", async () => {
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL,
        stream: true,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 3,
      }),
    });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(res.headers.get("x-inference-pod")).toBe(`sim-${OURS}`);
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    // Streamed back through the response phase chunk by chunk, to the end.
    expect(text.trim().endsWith("data: [DONE]")).toBe(true);
    // A picker's ImmediateResponse is the answer: a body that is not JSON is refused (400).
    const unknown = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "not json",
    });
    expect(unknown.status).toBe(400);
  });

  it("a rollout gated on the upstream EPP's metrics moves the traffic to a good canary and succeeds", async () => {
    startTraffic(4);
    const gate = (source: string) => `
      - name: canary-traffic
        template: min-request-count
        metricsSource: ${source}
        args: {minRequests: "20", window: "1m", namespaceLabel: namespace}
        initialDelay: 4s
        interval: 2s
        count: 2
        inconclusiveLimit: 5
      - name: latency
        template: latency-p95-ratio
        args: {maxRatio: "3", minRequests: "20", window: "1m", namespaceLabel: namespace}
        initialDelay: 4s
        interval: 2s
        count: 2
        inconclusiveLimit: 5`;
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: to-v2}
spec:
  prometheus: {address: "${env().info.prometheusUrl}"}
  pools: {httpRoute: ${ROUTE}, stable: pool-v1, canary: pool-v2}
  steps:
  - setWeight: 50
  - analysis:
      metrics:${gate("upstream-epp")}
  - setWeight: 100
`);
    const done = await waitForRollout(
      "to-v2",
      "Succeeded",
      r => r.status?.phase === "Succeeded" || r.status?.phase === "Failed",
      120_000,
    );
    report(`to-v2: ${JSON.stringify(done.status?.stepAnalysis)}`);
    expect(done.status?.phase).toBe("Succeeded");
    expect(routeWeights()).toEqual({ "pool-v2": 100 });
    // The gates measured the EPP's series: real request counts and a latency ratio near 1.
    const metrics = done.status?.stepAnalysis?.metrics ?? [];
    const last = (name: string) => {
      const m = metrics.find(x => x.name === name)?.measurements ?? [];
      return Number(JSON.parse(m[m.length - 1]?.value ?? "[]")[0]);
    };
    expect(last("canary-traffic")).toBeGreaterThanOrEqual(20);
    expect(last("latency")).toBeGreaterThan(0);
    expect(last("latency")).toBeLessThan(3);
    // Both pods served while the canary had 50 %.
    expect(traffic.byPod["sim-pool-v2"]).toBeGreaterThan(0);
    expect(traffic.byPod["sim-pool-v1"]).toBeGreaterThan(0);
  }, 150_000);

  it("a slow canary fails its latency gate on the upstream EPP's metrics and is rolled back", async () => {
    kubectl(["delete", "modelrollout", "to-v2"]);
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: to-v3}
spec:
  prometheus: {address: "${env().info.prometheusUrl}"}
  pools: {httpRoute: ${ROUTE}, stable: pool-v2, canary: pool-v3}
  analysis:
    metrics:
    - name: latency
      template: latency-p95-ratio
      metricsSource: auto
      args: {maxRatio: "3", minRequests: "10", window: "30s", namespaceLabel: namespace}
      initialDelay: 4s
      interval: 2s
      inconclusiveLimit: 20
  steps:
  - setWeight: 50
  - pause: {}
`);
    const failed = await waitForRollout(
      "to-v3",
      "Failed",
      r => r.status?.phase === "Failed" || r.status?.phase === "Succeeded",
      120_000,
    );
    report(`to-v3: ${failed.status?.message} ${JSON.stringify(failed.status?.analysis)}`);
    expect(failed.status?.phase).toBe("Failed");
    expect(failed.status?.canaryWeight).toBe(0);
    expect(routeWeights()).toEqual({ "pool-v2": 100 });
    const latency = failed.status?.analysis?.metrics.find(m => m.name === "latency");
    const lastFailed = latency?.measurements.filter(m => m.phase === "Failed").pop();
    // The slow build's p95 is many times the stable one's.
    expect(Number(JSON.parse(lastFailed?.value ?? "[]")[0])).toBeGreaterThan(3);
    expect(traffic.byPod["sim-pool-v3"]).toBeGreaterThan(0);
    // No request failed on the way: the gateway followed every weight change.
    expect(Object.keys(traffic.byStatus)).toEqual(["200"]);
  }, 150_000);
});
