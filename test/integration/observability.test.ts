// Observability as users get it: the operator's /metrics (on its health port) while a rollout
// runs to Succeeded and another is refused by the apiserver, the shared Prometheus scraping the
// operator and a picker serving real traffic from a simulated model server, and the Grafana
// dashboard (deploy/monitoring/grafana-dashboard.json) checked against that Prometheus: every
// panel's query parses (Prometheus answers 400 bad_data otherwise) and every metric it names has
// series.
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { NOTIFICATION_WEBHOOK_LABEL } from "../../capabilities/modelrollout/notifications/webhooks";
import { repoRoot } from "../../hack/env/config";
import {
  deployModelServer,
  removeModelServer,
  type ModelServer,
} from "../../hack/env/model-servers";
import { freePort } from "../../hack/env/procs";
import { addScrapeTarget, removeScrapeTarget } from "../../hack/env/prometheus";
import { OPERATOR_METRICS } from "../../capabilities/operator-metrics";
import { dashboardQueries, metricNames, withVariables } from "../support/dashboard-queries";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { startPickerProcess, type PickerProcess } from "../support/picker-process";
import { rolloutHelpers } from "../support/rollouts";

const DASHBOARD = path.join(repoRoot, "deploy/monitoring/grafana-dashboard.json");
const POOL = "obs-pool";
const V1 = "travel-helper-v1";
const V2 = "travel-helper-v2";
const PORT = 8000;

const report = (line: string) => process.stderr.write(`[observability] ${line}\n`);

let ns: TestNamespace;
let operator: RunningOperator;
let operatorMetricsUrl: string;
let picker: PickerProcess;
let server: ModelServer | undefined;
const cleanups: (() => void | Promise<void>)[] = [];
let traffic: { stop(): Promise<number> } | undefined;

const { apply, kubectl, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator?.log ?? "(no operator)",
);
const prometheus = () => env().info.prometheusUrl;

/** Requests through the picker's HTTP proxy, one after the other, until stopped. */
function startTraffic(proxyUrl: string): { stop(): Promise<number> } {
  let running = true;
  let sent = 0;
  const loop = (async () => {
    while (running) {
      const res = await fetch(`${proxyUrl}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "travel-helper", prompt: "Plan a weekend", max_tokens: 3 }),
      });
      await res.text();
      sent++;
      await new Promise(resolve => setTimeout(resolve, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return sent;
    },
  };
}

async function operatorPage(): Promise<string> {
  return (await fetch(`${operatorMetricsUrl}/metrics`)).text();
}

/** The value of one exact series line on a /metrics page, NaN if absent. */
function sample(page: string, series: string): number {
  const line = page.split("\n").find(l => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

/** What is wrong with one dashboard query against the running Prometheus (empty: nothing). */
async function problemsOf(expr: string, since: number): Promise<string[]> {
  const runnable = withVariables(expr);
  const res = await fetch(`${prometheus()}/api/v1/query?query=${encodeURIComponent(runnable)}`);
  const body = (await res.json()) as { status: string; errorType?: string; error?: string };
  if (res.status !== 200 || body.status !== "success")
    return [`does not run: HTTP ${res.status} ${body.errorType}: ${body.error}`];
  const problems: string[] = [];
  for (const name of metricNames(runnable)) {
    const url = `${prometheus()}/api/v1/series?match[]=${encodeURIComponent(name)}&start=${since}`;
    const series = (await (await fetch(url)).json()) as { data: unknown[] };
    if (!series.data?.length) problems.push(`metric ${name} has no series in Prometheus`);
  }
  return problems;
}

beforeAll(async () => {
  ns = createTestNamespace("obs");
  const { info } = env();
  apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${POOL}}
spec:
  selector: {app: vllm-obs}
  targetPortNumber: ${PORT}
  extensionRef: {name: ${POOL}-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: travel-helper}
spec:
  modelName: travel-helper
  poolRef: {name: ${POOL}}
  targetModels: [{name: ${V1}, weight: 100}]
`);
  server = await deployModelServer(info, {
    model: "Qwen/Qwen2.5-1.5B-Instruct",
    servedModelNames: ["mymodel"],
    loraAdapters: [V1, V2],
    maxLoras: 2,
    namespace: ns.name,
    name: "vllm-obs-0",
    labels: { app: "vllm-obs" },
    port: PORT,
  });
  picker = await startPickerProcess({
    pool: POOL,
    namespace: ns.name,
    kubeconfig: info.kubeconfig,
    args: ["--disable-grpc"],
    logFile: path.join(info.logDir, `picker-${ns.name}.log`),
  });
  const pickerTarget = `picker.${ns.name}`;
  addScrapeTarget(info.stateDir, pickerTarget, `127.0.0.1:${picker.metricsPort}`, {
    component: "picker",
    namespace: ns.name,
  });
  cleanups.push(() => removeScrapeTarget(info.stateDir, pickerTarget));

  // A webhook receiver for the rollout's notification (modelrollout_notifications_total).
  const receiver = http.createServer((req, res) => req.resume().on("end", () => res.end()));
  await new Promise<void>(resolve => receiver.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>(resolve => receiver.close(() => resolve())));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  kubectl(["create", "secret", "generic", "observed-hook", `--from-literal=url=${hookUrl}`]);
  kubectl(["label", "secret", "observed-hook", `${NOTIFICATION_WEBHOOK_LABEL}=true`]);

  const healthPort = await freePort();
  operator = await startOperator({
    namespaces: [ns.name],
    name: ns.name,
    env: { MODELROLLOUT_HEALTH_PORT: String(healthPort) },
  });
  operatorMetricsUrl = `http://127.0.0.1:${healthPort}`;
  // No `namespace` target label: the operator's series carry the rollout's own namespace (a
  // ServiceMonitor needs honorLabels: true for the same reason).
  const operatorTarget = `operator.${ns.name}`;
  addScrapeTarget(info.stateDir, operatorTarget, `127.0.0.1:${healthPort}`, {
    component: "modelrollout-operator",
  });
  cleanups.push(() => removeScrapeTarget(info.stateDir, operatorTarget));
}, 180_000);

afterAll(async () => {
  await traffic?.stop();
  for (const c of cleanups.reverse()) await c();
  await operator?.stop();
  await picker?.stop();
  if (server) await removeModelServer(env().info, ns.name, server.name);
  await ns?.cleanup();
});

describe("observability (operator /metrics, Prometheus, the Grafana dashboard)", () => {
  it("serves a rollout's phase, step, weight, gates and reconciles at /metrics, and Prometheus scrapes them", async () => {
    // Traffic first: the gates read the picker's request counter from Prometheus.
    traffic = startTraffic(picker.proxyUrl!);
    const requests = `sum(inference_objective_request_total{namespace="${ns.name}",pool="${POOL}"})`;
    await waitFor(
      `Prometheus to see the picker's requests: ${requests}`,
      async () => (await promQuery(prometheus(), requests)).length === 1,
      30_000,
    );
    // One bad request: the picker's error counter gets a series.
    const bad = await fetch(`${picker.proxyUrl}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(bad.status).toBeGreaterThanOrEqual(400);

    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: observed}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: travel-helper, stable: ${V1}, canary: ${V2}}
  notifications: [{name: ops, transitions: [Succeeded], urlSecretRef: {name: observed-hook, key: url}}]
  analysis:
    metrics:
    - name: picker-requests
      query: 'sum(inference_objective_request_total{namespace="{{namespace}}",pool="${POOL}"})'
      interval: 1s
      successCondition: result[0] > 0
  steps:
  - setWeight: 50
  - analysis:
      metrics:
      - name: canary-requests
        query: 'sum(inference_objective_request_total{namespace="{{namespace}}",pool="${POOL}"})'
        interval: 1s
        count: 2
        successCondition: result[0] > 0
  - setWeight: 100
`);
    const done = await waitForRollout(
      "observed",
      "Succeeded",
      r => r.status?.phase === "Succeeded",
      60_000,
    );
    expect(done.status?.canaryWeight).toBe(100);

    const page = await operatorPage();
    const at = (metric: string, labels: string) => sample(page, `${metric}{${labels}}`);
    const me = `namespace="${ns.name}",name="observed"`;
    expect(at(OPERATOR_METRICS.phase, `${me},phase="Succeeded"`)).toBe(1);
    expect(at(OPERATOR_METRICS.phase, `${me},phase="Progressing"`)).toBe(0);
    expect(at(OPERATOR_METRICS.canaryWeight, me)).toBe(100);
    expect(at(OPERATOR_METRICS.steps, me)).toBe(3);
    expect(at(OPERATOR_METRICS.currentStep, me)).toBe(done.status?.currentStep ?? 0);
    expect(
      at(
        OPERATOR_METRICS.gateMeasurements,
        `${me},gate="steps[1].analysis",metric="canary-requests",phase="Successful"`,
      ),
    ).toBe(2);
    expect(
      at(
        OPERATOR_METRICS.gateMeasurements,
        `${me},gate="analysis",metric="picker-requests",phase="Successful"`,
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(
      at(OPERATOR_METRICS.gateVerdicts, `${me},gate="steps[1].analysis",verdict="Successful"`),
    ).toBe(1);
    expect(sample(page, `${OPERATOR_METRICS.reconcileDuration}_count`)).toBeGreaterThan(0);
    const delivered = `${OPERATOR_METRICS.notifications}{${me},notification="ops",result="Delivered"}`;
    await waitFor(
      `the Succeeded notification counted: ${delivered}`,
      async () => sample(await operatorPage(), delivered) === 1,
      15_000,
    );
    report(
      `/metrics after Succeeded: ${page.split("\n").filter(l => l.startsWith("modelrollout_") && l.includes('name="observed"')).length} series of rollout observed`,
    );

    const query = `modelrollout_phase{namespace="${ns.name}",name="observed",phase="Succeeded"}`;
    await waitFor(
      `Prometheus to scrape the operator: ${query} == 1`,
      async () => (await promQuery(prometheus(), `${query} == 1`)).length === 1,
      30_000,
    );
    const notified = `${OPERATOR_METRICS.notifications}{namespace="${ns.name}",name="observed"}`;
    await waitFor(
      `Prometheus to scrape the notification counter: ${notified}`,
      async () => (await promQuery(prometheus(), notified)).length === 1,
      30_000,
    );
  }, 180_000);

  it("counts a write the apiserver refuses as a reconcile error, and drops a deleted rollout's series", async () => {
    // A canary pool the InferencePool CRD refuses (port out of range): creating it fails.
    apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: obs-route}
spec:
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: ${POOL}, port: ${PORT}, weight: 1}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: rejected}
spec:
  pools:
    httpRoute: obs-route
    stable: ${POOL}
    canary: obs-canary
    canaryTemplate: {extensionRef: {name: obs-canary-epp}, selector: {app: obs-canary}, targetPortNumber: 99999999}
  steps: [{setWeight: 10}]
`);
    await waitForRollout(
      "rejected",
      "Ready=False TargetUpdateRejected",
      r =>
        !!r.status?.conditions?.some(
          c => c.type === "Ready" && c.reason === "TargetUpdateRejected",
        ),
    );
    const errors = `${OPERATOR_METRICS.reconcileErrors}{namespace="${ns.name}",name="rejected",reason="TargetUpdateRejected"}`;
    await waitFor(
      `${errors} on /metrics`,
      async () => sample(await operatorPage(), errors) >= 1,
      10_000,
    );
    await waitFor(
      `Prometheus to scrape ${errors}`,
      async () => (await promQuery(prometheus(), errors)).length === 1,
      30_000,
    );

    kubectl(["delete", "modelrollout", "rejected"]);
    await waitFor(
      "every series of the deleted rollout gone from /metrics",
      async () => !(await operatorPage()).includes(`name="rejected"`),
      15_000,
    );
    expect(await operatorPage()).toContain(`name="observed"`);
  }, 120_000);

  it("every query of the Grafana dashboard parses and every metric it names has series in Prometheus", async () => {
    const sent = await traffic!.stop();
    traffic = undefined;
    report(`${sent} requests through the picker`);
    const since = Math.floor(Date.now() / 1000) - 15 * 60;
    const queries = dashboardQueries(DASHBOARD);
    expect(queries.length).toBeGreaterThan(15);

    // The check itself catches a misspelt metric and a query that does not parse.
    expect(
      await problemsOf("sum(rate(inference_objective_request_totl[$__rate_interval]))", since),
    ).toEqual(["metric inference_objective_request_totl has no series in Prometheus"]);
    expect((await problemsOf("sum by (pool (modelrollout_phase)", since))[0]).toMatch(
      /does not run: HTTP 400 bad_data/,
    );

    const problems: string[] = [];
    const named = new Set<string>();
    for (const q of queries) {
      metricNames(withVariables(q.expr)).forEach(n =>
        named.add(n.replace(/_(bucket|count|sum)$/, "")),
      );
      for (const p of await problemsOf(q.expr, since))
        problems.push(`${q.where}: ${p}\n  ${q.expr}`);
    }
    expect(problems).toEqual([]);
    // The dashboard shows every operator metric.
    expect(Object.values(OPERATOR_METRICS).filter(m => !named.has(m))).toEqual([]);
    report(`${queries.length} dashboard queries checked; ${named.size} metrics, all with series`);
  }, 120_000);
});
