// Prometheus gates against the real Prometheus server: it scrapes an exporter whose values the
// test sets, and the operator's gates query it. Good canaries pass, bad ones are rolled back,
// errors and missing data never promote.
import {
  measurementFrom,
  queryPrometheus,
  resolveMetric,
  type MetricSpec,
  type TemplateContext,
} from "../../capabilities/analysis";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { startExporter, TestExporter } from "../support/exporter";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers } from "../support/rollouts";

let ns: TestNamespace;
let operator: RunningOperator;
let exporter: TestExporter;

beforeAll(async () => {
  ns = createTestNamespace("gates");
  exporter = await startExporter(ns.name);
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
});

afterAll(async () => {
  await operator?.stop();
  await exporter?.close();
  await ns.cleanup();
});

const { kubectl, apply, rollout, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);
const prometheus = () => env().info.prometheusUrl;

function model(name: string, stable: string): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${name}}
spec:
  modelName: ${name}
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: ${stable}, weight: 100}]
`;
}

const valueQuery = (series: string) =>
  `'modelrollout_test_value{namespace="{{namespace}}",series="${series}"}'`;

describe("Prometheus gates (real Prometheus server)", () => {
  it("a good canary passes its background and step gates and succeeds", async () => {
    exporter.value.set({ series: "good" }, 0.01);
    await exporter.scraped();
    apply(model("good-model", "g-v1"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: good}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: good-model, stable: g-v1, canary: g-v2}
  analysis:
    metrics:
    - name: error-ratio
      query: ${valueQuery("good")}
      interval: 1s
      successCondition: result[0] < 0.05
  steps:
  - setWeight: 10
  - analysis:
      metrics:
      - name: step-check
        query: ${valueQuery("good")}
        interval: 1s
        count: 2
        successCondition: result[0] < 0.05
  - setWeight: 100
`);
    const done = await waitForRollout("good", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("good-model")).toEqual([{ name: "g-v2", weight: 100 }]);
    // The background run is concluded when the rollout ends.
    expect(done.status?.analysis?.phase).toBe("Successful");
    const background = done.status?.analysis?.metrics.find(m => m.name === "error-ratio");
    expect(background?.measurements.length).toBeGreaterThan(0);
    expect(background?.measurements.map(m => `${m.phase} ${m.value}`)).toEqual(
      background?.measurements.map(() => "Successful [0.01]"),
    );
    const described = kubectl(["describe", "modelrollout", "good"]);
    expect(described).toMatch(/error-ratio/);
    expect(described).toMatch(/step-check/);
  });

  it("a canary whose failures cross the limit is rolled back within one interval", async () => {
    exporter.value.set({ series: "bad" }, 0.01);
    await exporter.scraped();
    apply(model("bad-model", "b-v1"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: bad}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: bad-model, stable: b-v1, canary: b-v2}
  analysis:
    metrics:
    - name: error-ratio
      query: ${valueQuery("bad")}
      interval: 3s
      successCondition: result[0] < 0.05
      failureLimit: 0
  steps:
  - setWeight: 20
  - pause: {}
`);
    await waitForRollout(
      "bad",
      "Paused at 20% with a successful measurement",
      r =>
        r.status?.phase === "Paused" &&
        r.status.canaryWeight === 20 &&
        !!r.status.analysis?.metrics[0]?.measurements.length,
    );
    exporter.value.set({ series: "bad" }, 0.5);
    await exporter.scraped();
    const badFrom = Date.now();
    const failed = await waitForRollout("bad", "Failed", r => r.status?.phase === "Failed");
    // One interval (3 s) plus the time to query and write, never a second interval.
    expect(Date.now() - badFrom).toBeLessThan(3000 + 2000);
    expect(targetModels("bad-model")).toEqual([{ name: "b-v1", weight: 100 }]);
    expect(failed.status?.canaryWeight).toBe(0);
    const events = JSON.parse(
      kubectl(["get", "events", "--field-selector", "involvedObject.name=bad", "-o", "json"]),
    ).items as { type: string; message: string }[];
    const warning = events.find(e => e.type === "Warning" && /error-ratio/.test(e.message));
    expect(warning?.message).toMatch(/0\.5/);
    expect(warning?.message).toMatch(/result\[0\] < 0\.05/);
  });

  it("never promotes while Prometheus answers errors: errors past the limit fail the rollout", async () => {
    // Accepted by Prometheus when checked before the first weight (one series), an execution
    // error (HTTP 422, "many-to-one matching must be explicit") once a second series exists.
    exporter.value.set({ series: "dup-a" }, 0);
    await exporter.scraped();
    apply(model("erroring-model", "u-v1"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: erroring}
spec:
  prometheus: {address: "${prometheus()}", timeout: 2s}
  adapters: {inferenceModel: erroring-model, stable: u-v1, canary: u-v2}
  steps:
  - setWeight: 10
  - analysis:
      metrics:
      - name: needs-prometheus
        query: 'vector(0) + on() modelrollout_test_value{namespace="{{namespace}}",series=~"dup-.*"}'
        initialDelay: 4s
        interval: 1s
        successCondition: result[0] == 0
        consecutiveErrorLimit: 1
  - setWeight: 100
`);
    await waitForRollout("erroring", "canary at 10%", r => r.status?.canaryWeight === 10);
    exporter.value.set({ series: "dup-b" }, 0);
    await exporter.scraped();
    const weights: number[] = [];
    await waitFor(
      "phase Failed",
      () => {
        weights.push(targetModels("erroring-model").find(t => t.name === "u-v2")?.weight ?? 0);
        return rollout("erroring").status?.phase === "Failed";
      },
      30000,
      operator.log,
      50,
    );
    expect(Math.max(...weights)).toBeLessThanOrEqual(10);
    expect(targetModels("erroring-model")).toEqual([{ name: "u-v1", weight: 100 }]);
    const run = rollout("erroring").status?.stepAnalysis;
    expect(run?.metrics[0].measurements.every(m => m.phase === "Error")).toBe(true);
    expect(run?.metrics[0].measurements[0].message).toMatch(/HTTP 422|execution/);
    exporter.value.remove({ series: "dup-b" });
  });

  it("a query that returns several series where one was expected is a clear Error", async () => {
    exporter.value.set({ series: "one" }, 1);
    exporter.value.set({ series: "two" }, 2);
    await exporter.scraped();
    apply(model("series-model", "s-v1"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: series}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: series-model, stable: s-v1, canary: s-v2}
  steps:
  - setWeight: 10
  - analysis:
      metrics:
      - name: ambiguous
        query: 'modelrollout_test_value{namespace="{{namespace}}",series=~"one|two"}'
        successCondition: result[0] < 5
        consecutiveErrorLimit: 0
  - setWeight: 100
`);
    const failed = await waitForRollout("series", "Failed", r => r.status?.phase === "Failed");
    const measurement = failed.status?.stepAnalysis?.metrics[0].measurements[0];
    expect(measurement?.phase).toBe("Error");
    expect(measurement?.message).toMatch(/2 series/);
    expect(targetModels("series-model")).toEqual([{ name: "s-v1", weight: 100 }]);
  });

  it("a low-traffic canary is Inconclusive, holds for a person (onInconclusive: Hold), and continues on promote", async () => {
    const canary = `lt-v2-${ns.name}`;
    exporter.requests.inc(
      { model_name: "lowtraffic", target_model_name: canary, pool: "mymodel-pool-v1" },
      3,
    );
    await exporter.scraped();
    apply(model("lowtraffic-model", "lt-v1"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: lowtraffic}
spec:
  prometheus: {address: "${prometheus()}"}
  onInconclusive: Hold
  adapters: {inferenceModel: lowtraffic-model, stable: lt-v1, canary: ${canary}}
  steps:
  - setWeight: 10
  - analysis:
      metrics:
      - name: enough-traffic
        template: min-request-count
        args: {minRequests: "100", window: 30s}
  - setWeight: 100
`);
    const held = await waitForRollout(
      "lowtraffic",
      "Paused as Inconclusive",
      r =>
        r.status?.phase === "Paused" &&
        !!r.status.conditions?.some(c => c.reason === "AnalysisInconclusive"),
    );
    expect(held.status?.stepAnalysis?.phase).toBe("Inconclusive");
    expect(held.status?.canaryWeight).toBe(10);
    expect(targetModels("lowtraffic-model")).toEqual([
      { name: "lt-v1", weight: 90 },
      { name: canary, weight: 10 },
    ]);
    kubectl(["annotate", "modelrollout", "lowtraffic", "rollouts.inference.dev/action=promote"]);
    await waitForRollout("lowtraffic", "Succeeded", r => r.status?.phase === "Succeeded");
  });

  it("with onInconclusive: Rollback, missing data rolls back", async () => {
    apply(model("nodata-model", "n-v1"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: nodata}
spec:
  prometheus: {address: "${prometheus()}"}
  onInconclusive: Rollback
  adapters: {inferenceModel: nodata-model, stable: n-v1, canary: n-v2}
  steps:
  - setWeight: 10
  - analysis:
      metrics:
      - name: absent-series
        query: ${valueQuery("never-set")}
        successCondition: result[0] < 1
  - setWeight: 100
`);
    const failed = await waitForRollout("nodata", "Failed", r => r.status?.phase === "Failed");
    expect(failed.status?.stepAnalysis?.phase).toBe("Inconclusive");
    expect(targetModels("nodata-model")).toEqual([{ name: "n-v1", weight: 100 }]);
  });

  it("an invalid condition expression sets InvalidSpec before any traffic moves", async () => {
    apply(model("invalid-model", "i-v1"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: invalid}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: invalid-model, stable: i-v1, canary: i-v2}
  analysis:
    metrics:
    - name: broken
      query: vector(1)
      successCondition: result[0] <<< 1
  steps: [{setWeight: 50}]
`);
    const blocked = await waitForRollout(
      "invalid",
      "InvalidAnalysis condition",
      r => !!r.status?.conditions?.some(c => c.reason === "InvalidAnalysis"),
    );
    expect(blocked.status?.conditions?.find(c => c.reason === "InvalidAnalysis")?.message).toMatch(
      /broken/,
    );
    expect(targetModels("invalid-model")).toEqual([{ name: "i-v1", weight: 100 }]);
  });

  it("built-in gates: namespaceLabel keeps another namespace's pickers out; traffic-split counts the rollout's model", async () => {
    // A second "picker" with the same pool names, scraped with another namespace label.
    const other = await startExporter(`${ns.name}-other`);
    try {
      const stable = "split-v1";
      const canary = "split-v2";
      const series = [
        { e: exporter, pool: canary, model: "mymodel", n: 100 },
        { e: exporter, pool: stable, model: "mymodel", n: 300 },
        { e: exporter, pool: stable, model: "travelhelper", n: 600 },
        { e: other, pool: canary, model: "mymodel", n: 1000 },
      ];
      const labels = (s: (typeof series)[number]) => ({
        model_name: s.model,
        target_model_name: s.model,
        pool: s.pool,
      });
      // Series exist at 0 before they grow, so increase() sees every request.
      for (const s of series) s.e.requests.inc(labels(s), 0);
      await Promise.all([exporter.scraped(), other.scraped()]);
      for (const s of series) s.e.requests.inc(labels(s), s.n);
      await Promise.all([exporter.scraped(), other.scraped()]);

      const ctx: TemplateContext = {
        scope: "pools",
        namespace: ns.name,
        rollout: "r",
        canary,
        stable,
        modelName: "mymodel",
        weight: 25,
      };
      const measure = async (metric: Omit<MetricSpec, "name">, context = ctx) => {
        const resolved = resolveMetric({ name: "m", ...metric }, context);
        const result = await queryPrometheus({ address: prometheus() }, resolved.query);
        return measurementFrom(resolved, result, new Date());
      };
      const value = (m: { value?: string }) => Number(JSON.parse(m.value ?? "[]")[0]);

      // Unscoped, the other namespace's canary requests count as ours.
      const mixed = await measure({ template: "min-request-count", args: { window: "1m" } });
      expect(value(mixed)).toBeGreaterThan(1000);
      const scoped = await measure({
        template: "min-request-count",
        args: { window: "1m", namespaceLabel: "namespace" },
      });
      // increase() extrapolates to the window's edges (slow scrapes on a loaded machine gave 200.1
      // for 100 requests); the other namespace's 1,000 would put it far above 500.
      expect(value(scoped)).toBeGreaterThanOrEqual(100);
      expect(value(scoped)).toBeLessThan(500);

      // 100 of 400 mymodel requests went to the canary: 25 %, as configured.
      const split = await measure({
        template: "traffic-split",
        args: { window: "1m", namespaceLabel: "namespace" },
      });
      expect(split.phase).toBe("Successful");
      expect(value(split)).toBeCloseTo(25, 5);
      // Counting travelhelper too (no model name known) sees 10 %: a false alarm.
      const allModels = await measure(
        { template: "traffic-split", args: { window: "1m", namespaceLabel: "namespace" } },
        { ...ctx, modelName: undefined },
      );
      expect(value(allModels)).toBeCloseTo(10, 5);
      expect(allModels.phase).toBe("Failed");
      // Without the namespace matcher the other namespace's 1000 requests swamp the split.
      const unscoped = await measure({ template: "traffic-split", args: { window: "1m" } });
      expect(unscoped.phase).toBe("Failed");
    } finally {
      await other.close();
    }
  });
});
