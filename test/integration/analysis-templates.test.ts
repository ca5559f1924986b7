// AnalysisTemplate / ClusterAnalysisTemplate on the real control plane: gates that reference them
// query the real Prometheus about the real simulator (llm-d-inference-sim as a pod, scraped with
// its namespace and pod labels). Templates are read and checked before any weight moves.
import { deployModelServer, removeModelServer } from "../../hack/env/model-servers";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers, type Rollout } from "../support/rollouts";

let ns: TestNamespace;
let operator: RunningOperator;
/** Cluster-scoped: named after the namespace so parallel runs never share one. */
let clusterTemplate: string;

const V1 = "travel-helper-v1";
const V2 = "travel-helper-v2";

beforeAll(async () => {
  ns = createTestNamespace("templates");
  clusterTemplate = `${ns.name}-served`;
  const server = await deployModelServer(env().info, {
    namespace: ns.name,
    name: "vllm-0",
    labels: { app: "vllm-templates" },
    port: 8000,
    model: "Qwen/Qwen2.5-1.5B-Instruct",
    servedModelNames: ["mymodel"],
    loraAdapters: [V1, V2],
    maxLoras: 2,
  });
  // Real requests, so the cluster template's request counter has something to count.
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://${server.podIP}:8000/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: V1, prompt: "hello", max_tokens: 2 }),
    });
    expect(res.status).toBe(200);
  }
  await waitFor(
    "Prometheus to scrape the simulator's requests",
    async () =>
      (
        await promQuery(
          env().info.prometheusUrl,
          `sum(vllm:e2e_request_latency_seconds_count{namespace="${ns.name}"}) >= 3`,
        )
      ).length === 1,
    60000,
  );
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
});

afterAll(async () => {
  await operator?.stop();
  env().kubectl(["delete", "clusteranalysistemplate", clusterTemplate, "--ignore-not-found"]);
  await removeModelServer(env().info, ns.name, "vllm-0");
  await ns.cleanup();
});

const { kubectl, apply, rollout, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);
const prometheus = () => env().info.prometheusUrl;

function model(name: string): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${name}}
spec:
  modelName: ${name}
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: ${V1}, weight: 100}]
`;
}

/** The simulator's queue: 0 while idle. `pod` is required, `maxWaiting` has a default. */
const queueTemplate = (name: string, condition = "result[0] <= {{args.maxWaiting}}") => `
apiVersion: rollouts.inference.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: ${name}}
spec:
  args:
  - name: pod
  - name: maxWaiting
    value: "5"
  metrics:
  - name: ${name}-waiting
    query: 'sum(vllm:num_requests_waiting{namespace="{{namespace}}",pod="{{args.pod}}"})'
    interval: 1s
    count: 2
    successCondition: ${condition}
`;

function rolloutWithStepTemplate(name: string, template: string, args: string): string {
  return `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${name}}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: ${name}-model, stable: ${V1}, canary: ${V2}}
  steps:
  - setWeight: 20
  - analysis:
      templates: [{templateName: ${template}}]
      args: ${args}
  - setWeight: 100
`;
}

const ready = (r: Rollout) => r.status?.conditions?.find(c => c.type === "Ready");

/** Refused before any weight: Pending, Ready=False with `reason`, the InferenceModel untouched. */
async function expectRefused(name: string, reason: string, message: RegExp): Promise<void> {
  const refused = await waitForRollout(name, `Ready=False ${reason}`, r => {
    const c = ready(r);
    return c?.status === "False" && c.reason === reason;
  });
  expect(ready(refused)?.message).toMatch(message);
  expect(refused.status?.phase).toBe("Pending");
  expect(refused.status?.canaryWeight).toBeUndefined();
  expect(targetModels(`${name}-model`)).toEqual([{ name: V1, weight: 100 }]);
}

describe("gates from AnalysisTemplates and ClusterAnalysisTemplates (real Prometheus, real simulator)", () => {
  it("step and background gates from a namespaced and a cluster template, with args, succeed", async () => {
    apply(queueTemplate("queue-ok"));
    env().kubectl(
      ["apply", "-f", "-"],
      `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: ${clusterTemplate}}
spec:
  args: [{name: minRequests}]
  metrics:
  - name: served-requests
    query: 'sum(vllm:e2e_request_latency_seconds_count{namespace="{{namespace}}"})'
    interval: 1s
    successCondition: result[0] >= {{args.minRequests}}
`,
    );
    apply(model("good-model"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: good}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: good-model, stable: ${V1}, canary: ${V2}}
  analysis:
    templates: [{templateName: ${clusterTemplate}, clusterScope: true}]
    args: [{name: minRequests, value: "3"}]
  steps:
  - setWeight: 20
  - analysis:
      templates: [{templateName: queue-ok}]
      args: [{name: pod, value: vllm-0}]
      metrics:
      - name: inline-check
        query: 'count(vllm:num_requests_running{namespace="{{namespace}}"})'
        interval: 1s
        successCondition: result[0] == 1
  - setWeight: 100
`);
    const done = await waitForRollout(
      "good",
      "Succeeded",
      r => r.status?.phase === "Succeeded",
      60000,
    );
    expect(targetModels("good-model")).toEqual([{ name: V2, weight: 100 }]);
    // The templates' metrics run under their own names, next to the inline one.
    const step = done.status!.stepAnalysis!;
    expect(step.phase).toBe("Successful");
    expect(step.metrics.map(m => m.name)).toEqual(["inline-check", "queue-ok-waiting"]);
    expect(step.metrics[1].measurements.map(m => `${m.phase} ${m.value}`)).toEqual([
      "Successful [0]",
      "Successful [0]",
    ]);
    const background = done.status!.analysis!;
    expect(background.metrics.map(m => m.name)).toEqual(["served-requests"]);
    expect(background.metrics[0].measurements.length).toBeGreaterThan(0);
    for (const m of background.metrics[0].measurements) {
      expect(m.phase).toBe("Successful");
      expect(Number(JSON.parse(m.value!)[0])).toBeGreaterThanOrEqual(3);
    }
  });

  it("a missing template stops the rollout before any weight; creating it lets the rollout go on", async () => {
    apply(model("waits-model"));
    apply(rolloutWithStepTemplate("waits", "late", "[{name: pod, value: vllm-0}]"));
    await expectRefused(
      "waits",
      "AnalysisTemplateNotFound",
      new RegExp(`AnalysisTemplate ${ns.name}/late not found; create it in namespace ${ns.name}`),
    );
    // Created later: the operator sees it (a watch, no timer) and the rollout proceeds.
    apply(queueTemplate("late"));
    const done = await waitForRollout(
      "waits",
      "Succeeded",
      r => r.status?.phase === "Succeeded",
      60000,
    );
    expect(ready(done)?.status).toBe("True");
    expect(done.status?.stepAnalysis?.metrics.map(m => m.name)).toEqual(["late-waiting"]);
    expect(targetModels("waits-model")).toEqual([{ name: V2, weight: 100 }]);
  });

  it("a required arg not given: InvalidAnalysis naming the arg and where to give it, no weight moved", async () => {
    apply(queueTemplate("needs-pod"));
    apply(model("noarg-model"));
    apply(rolloutWithStepTemplate("noarg", "needs-pod", "[{name: maxWaiting, value: '1'}]"));
    await expectRefused(
      "noarg",
      "InvalidAnalysis",
      /AnalysisTemplate \S+\/needs-pod needs arg pod, which has no default: give it in steps\[1\]\.analysis\.args/,
    );
    const events = kubectl(["get", "events", "--field-selector", "involvedObject.name=noarg"]);
    expect(events).toMatch(/InvalidAnalysis/);
  });

  it("a template gate that fails rolls the canary back like an inline gate", async () => {
    // The simulator is idle: its queue is never at 100, so every measurement fails.
    apply(queueTemplate("too-idle", "result[0] >= {{args.minWaiting}}"));
    kubectl([
      "patch",
      "analysistemplate",
      "too-idle",
      "--type=json",
      "-p",
      '[{"op":"add","path":"/spec/args/-","value":{"name":"minWaiting","value":"100"}}]',
    ]);
    apply(model("bad-model"));
    apply(rolloutWithStepTemplate("bad", "too-idle", "[{name: pod, value: vllm-0}]"));
    const failed = await waitForRollout("bad", "Failed", r => r.status?.phase === "Failed", 60000);
    expect(failed.status?.canaryWeight).toBe(0);
    expect(targetModels("bad-model")).toEqual([{ name: V1, weight: 100 }]);
    const gate = failed.status!.stepAnalysis!;
    expect(gate.phase).toBe("Failed");
    expect(gate.metrics[0]).toMatchObject({ name: "too-idle-waiting", phase: "Failed" });
    expect(gate.metrics[0].measurements[0]).toMatchObject({ phase: "Failed", value: "[0]" });
    expect(rollout("bad").status?.message).toMatch(/too-idle-waiting/);
  });

  it("a template edited while its gate runs restarts that gate; deleted, it holds the rollout where it is", async () => {
    apply(queueTemplate("live"));
    apply(model("edited-model"));
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: edited}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: edited-model, stable: ${V1}, canary: ${V2}}
  analysis:
    templates: [{templateName: live}]
    args: [{name: pod, value: vllm-0}]
  steps:
  - setWeight: 10
  - pause: {}
`);
    const before = await waitForRollout(
      "edited",
      "Paused at 10% with a background measurement",
      r => r.status?.phase === "Paused" && !!r.status.analysis?.metrics[0]?.measurements.length,
    );
    expect(before.status!.analysis!.metrics.map(m => m.name)).toEqual(["live-waiting"]);
    kubectl([
      "patch",
      "analysistemplate",
      "live",
      "--type=json",
      "-p",
      '[{"op":"replace","path":"/spec/metrics/0/name","value":"live-waiting-v2"}]',
    ]);
    const after = await waitForRollout(
      "edited",
      "the background gate restarted",
      r => r.status?.analysis?.metrics.some(m => m.name === "live-waiting-v2") ?? false,
    );
    expect(after.status!.analysis!.metrics.map(m => m.name)).toEqual(["live-waiting-v2"]);
    expect(Date.parse(after.status!.analysis!.startedAt!)).toBeGreaterThan(
      Date.parse(before.status!.analysis!.startedAt!),
    );
    expect(after.status?.canaryWeight).toBe(10);
    expect(kubectl(["get", "events", "--field-selector", "involvedObject.name=edited"])).toMatch(
      /a template it uses changed; background analysis restarted/,
    );
    kubectl(["delete", "analysistemplate", "live"]);
    const held = await waitForRollout("edited", "Ready=False AnalysisTemplateNotFound", r => {
      const c = ready(r);
      return c?.status === "False" && c.reason === "AnalysisTemplateNotFound";
    });
    expect(held.status?.canaryWeight).toBe(10);
    expect(targetModels("edited-model")).toEqual([
      { name: V1, weight: 90 },
      { name: V2, weight: 10 },
    ]);
  });

  it("a template query that errors at run time fails the gate past its error limit and rolls back", async () => {
    // Two series (the real one and a labelled copy) without multipleSeries: every measurement is
    // an Error, which Prometheus' check before the first weight cannot see (the query is valid).
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: two-series}
spec:
  args: [{name: pod}]
  metrics:
  - name: two-series
    query: 'vllm:num_requests_waiting{namespace="{{namespace}}",pod="{{args.pod}}"} or label_replace(vllm:num_requests_waiting{namespace="{{namespace}}",pod="{{args.pod}}"}, "copy", "1", "", "")'
    interval: 1s
    consecutiveErrorLimit: 1
    successCondition: result[0] < 5
`);
    apply(model("erring-model"));
    apply(rolloutWithStepTemplate("erring", "two-series", "[{name: pod, value: vllm-0}]"));
    const failed = await waitForRollout(
      "erring",
      "Failed",
      r => r.status?.phase === "Failed",
      60000,
    );
    expect(failed.status?.canaryWeight).toBe(0);
    expect(targetModels("erring-model")).toEqual([{ name: V1, weight: 100 }]);
    const metric = failed.status!.stepAnalysis!.metrics[0];
    expect(metric.name).toBe("two-series");
    expect(metric.measurements.map(m => m.phase)).toEqual(["Error", "Error"]);
  });

  it("kubectl explain documents the templates, their args and the references", () => {
    const explain = (field: string) => env().kubectl(["explain", field]);
    expect(explain("analysistemplate.spec.args")).toMatch(/An arg without a value is required/);
    expect(explain("clusteranalysistemplate.spec.metrics.successCondition")).toMatch(/DESCRIPTION/);
    expect(explain("modelrollout.spec.steps.analysis.templates")).toMatch(
      /restarts that gate, like an edit of the inline metrics/,
    );
    expect(explain("modelrollout.spec.analysis.templates.clusterScope")).toMatch(
      /ClusterAnalysisTemplate/,
    );
  });

  it("the apiserver refuses an analysis with neither metrics nor templates", () => {
    apply(model("empty-model"));
    expect(() =>
      apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: empty}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: empty-model, stable: ${V1}, canary: ${V2}}
  steps:
  - analysis: {args: [{name: pod, value: x}]}
`),
    ).toThrow(/an analysis needs inline metrics, templates/);
  });
});
