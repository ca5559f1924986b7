// The safety promise against the real apiserver and Prometheus: a query Prometheus refuses is
// found before any traffic moves, an unreachable Prometheus holds a rollout at 0 %, and a long
// pause costs nothing while it waits.
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers } from "../support/rollouts";

let ns: TestNamespace;
let operator: RunningOperator;

beforeAll(async () => {
  ns = createTestNamespace("safety");
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
});

afterAll(async () => {
  await operator?.stop();
  await ns.cleanup();
});

const { apply, getJson, rollout, targetModels, waitForRollout } = rolloutHelpers(
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

/** GETs the apiserver answered so far for a resource (its own request counter). */
function apiserverGets(resource: string): number {
  const text = env().kubectl(["get", "--raw", "/metrics"]);
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    if (!line.includes(`resource="${resource}"`) || !line.includes('verb="GET"')) continue;
    total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

const readyReason = (name: string) =>
  rollout(name).status?.conditions?.find(c => c.type === "Ready")?.reason;

describe("safety before any traffic moves (real apiserver and Prometheus)", () => {
  it("a long pause (720h) costs nothing while it waits", async () => {
    // An llm-d.ai InferenceModelRewrite: no other test reads this resource, so the apiserver's own
    // request counter for it counts this operator's reads of the rollout's target alone.
    apply(`
apiVersion: llm-d.ai/v1alpha2
kind: InferenceModelRewrite
metadata: {name: long-rewrite}
spec:
  poolRef: {name: mymodel-pool-v1}
  rules:
  - matches: [{model: {value: long-model}}]
    targets: [{modelRewrite: l-v1, weight: 100}]
`);
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: long}
spec:
  adapters: {inferenceModelRewrite: {name: long-rewrite, group: llm-d.ai}, stable: l-v1, canary: l-v2}
  steps:
  - setWeight: 10
  - pause: {duration: 720h}
  - setWeight: 100
`);
    await waitForRollout("long", "Paused at 10%", r => r.status?.phase === "Paused");
    // The reconciles the pause's own status write wakes come first: wait until 3 s pass without a
    // read (a hot loop never gets there), then count.
    let settled = apiserverGets("inferencemodelrewrites");
    let quietSince = Date.now();
    await waitFor(
      "the reconciles after the pause began to settle",
      () => {
        const now = apiserverGets("inferencemodelrewrites");
        if (now !== settled) [settled, quietSince] = [now, Date.now()];
        return Date.now() - quietSince >= 3_000;
      },
      30_000,
      "",
      500,
    );
    const before = apiserverGets("inferencemodelrewrites");
    const windowMs = 30_000;
    await new Promise(resolve => setTimeout(resolve, windowMs));
    const gets = apiserverGets("inferencemodelrewrites") - before;
    process.stderr.write(
      `[safety] target GETs during ${windowMs / 1000} s of a 720h pause: ${gets}\n`,
    );
    expect(gets).toBe(0);
    expect(rollout("long").status?.message).toMatch(/pause until/);
    const rewrite = getJson<{ spec: { rules: { targets: unknown[] }[] } }>(
      "inferencemodelrewrite.llm-d.ai",
      "long-rewrite",
    );
    expect(rewrite.spec.rules[0].targets).toEqual([
      { modelRewrite: "l-v1", weight: 90 },
      { modelRewrite: "l-v2", weight: 10 },
    ]);
  });

  it.each([
    ["a step gate", "steps"],
    ["the background analysis", "analysis"],
  ])(
    "invalid PromQL in %s is refused as InvalidAnalysis while all traffic is on stable",
    async (_what, where) => {
      const name = `badquery-${where}`;
      apply(model(`${name}-model`, "q-v1"));
      const gate = `
    metrics:
    - name: broken-promql
      query: 'sum(rate(up[5m]'
      interval: 1s
      successCondition: result[0] < 1`;
      apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${name}}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: ${name}-model, stable: q-v1, canary: q-v2}
${where === "analysis" ? `  analysis:${gate}` : ""}
  steps:
  - setWeight: 10
${where === "steps" ? `  - analysis:${gate.replace(/\n/g, "\n    ")}` : "  - pause: {duration: 2s}"}
  - setWeight: 100
`);
      const refused = await waitForRollout(
        name,
        "Ready=False InvalidAnalysis",
        r =>
          !!r.status?.conditions?.some(c => c.type === "Ready" && c.reason === "InvalidAnalysis"),
      );
      const ready = refused.status?.conditions?.find(c => c.type === "Ready");
      expect(ready?.message).toMatch(/broken-promql/);
      expect(ready?.message).toMatch(/HTTP 400|bad_data/);
      expect(refused.status?.canaryWeight).toBeUndefined();
      expect(targetModels(`${name}-model`)).toEqual([{ name: "q-v1", weight: 100 }]);
    },
  );

  it("an unreachable Prometheus holds the rollout at 0 % (PrometheusUnavailable), then it starts", async () => {
    apply(model("unreach-model", "u-v1"));
    const spec = (address: string) => `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: unreach}
spec:
  prometheus: {address: "${address}", timeout: 2s}
  adapters: {inferenceModel: unreach-model, stable: u-v1, canary: u-v2}
  steps:
  - setWeight: 10
  - analysis:
      metrics:
      - name: needs-prometheus
        query: vector(0)
        successCondition: result[0] == 0
  - setWeight: 100
`;
    apply(spec("http://127.0.0.1:9"));
    await waitFor(
      "Ready=False PrometheusUnavailable",
      () => readyReason("unreach") === "PrometheusUnavailable",
      30_000,
      () => operator.log,
    );
    expect(rollout("unreach").status?.canaryWeight).toBeUndefined();
    expect(targetModels("unreach-model")).toEqual([{ name: "u-v1", weight: 100 }]);
    apply(spec(prometheus()));
    await waitForRollout("unreach", "Succeeded", r => r.status?.phase === "Succeeded", 60_000);
    expect(targetModels("unreach-model")).toEqual([{ name: "u-v2", weight: 100 }]);
  });
});
