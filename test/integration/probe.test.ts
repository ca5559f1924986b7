// The probe gate against the real simulator (llm-d-inference-sim in echo mode, serving two LoRA
// adapters): the operator sends chat requests to the canary and the stable adapter and judges the
// answers. A healthy canary passes before the first weight and at every step and succeeds; a canary
// whose answers fail (an adapter the server does not have: HTTP 404) never gets any traffic and
// ends Failed with what was seen; a failure the stable shares holds; a hostile URL is refused.
import { startSimulator, type RunningSimulator } from "../../hack/env/simulator";
import { createTestNamespace, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers } from "../support/rollouts";

let ns: TestNamespace;
let operator: RunningOperator;
let sim: RunningSimulator;

beforeAll(async () => {
  ns = createTestNamespace("probe");
  sim = await startSimulator({
    model: "Qwen/Qwen2.5-1.5B-Instruct",
    loraAdapters: ["tr-v1", "tr-v2"],
    maxLoras: 2,
    extraArgs: ["--mode=echo"],
  });
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
});

afterAll(async () => {
  await operator?.stop();
  await sim?.close();
  await ns.cleanup();
});

const { kubectl, apply, rollout, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);

function model(name: string): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${name}}
spec:
  modelName: ${name}
  poolRef: {name: travel-pool}
  targetModels: [{name: tr-v1, weight: 100}]
`;
}

/** A rollout of `canary` in InferenceModel `name`, gated on a background probe. */
function probeRollout(name: string, canary: string, probe: string): string {
  return `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${name}}
spec:
  adapters: {inferenceModel: ${name}, stable: tr-v1, canary: ${canary}}
  analysis:
    metrics:
    - name: answers
      interval: 1s
      probe:
${probe
  .trim()
  .split("\n")
  .map(line => `        ${line}`)
  .join("\n")}
  steps:
  - setWeight: 20
  - setWeight: 100
`;
}

const chatProbe = () => `
url: "${sim.url}/v1/chat/completions"
prompts: ["The capital of France is Paris.", "Paris has the Eiffel tower."]
requests: 4
rate: 10
stream: true
expect: {contains: [Paris], maxTTFT: 5s, maxLatency: 10s}
`;

/** Polls the canary's weight in InferenceModel `name` until the rollout is Failed; every weight seen. */
async function canaryWeightsUntilFailed(name: string, canary: string): Promise<number[]> {
  const seen: number[] = [];
  await waitFor(
    `ModelRollout ${name} Failed`,
    () => {
      seen.push(targetModels(name).find(t => t.name === canary)?.weight ?? 0);
      return rollout(name).status?.phase === "Failed";
    },
    60000,
    () => `status: ${JSON.stringify(rollout(name).status)}; operator log: ${operator.log}`,
    50,
  );
  return seen;
}

describe("probe gate (real llm-d-inference-sim)", () => {
  it("a canary whose answers pass is probed before the first weight and at every step, and succeeds", async () => {
    apply(model("healthy"));
    apply(probeRollout("healthy", "tr-v2", chatProbe()));
    const done = await waitForRollout(
      "healthy",
      "Succeeded",
      r => r.status?.phase === "Succeeded",
      60000,
    );
    expect(targetModels("healthy")).toEqual([{ name: "tr-v2", weight: 100 }]);
    const answers = done.status?.analysis?.metrics.find(m => m.name === "answers");
    expect(answers?.measurements.length).toBeGreaterThan(0);
    for (const m of answers!.measurements) {
      expect(m.phase).toBe("Successful");
      expect(m.value).toBe("1 (canary 4/4, stable 4/4 passed)");
    }
  });

  it("a canary whose answers fail never gets traffic: Failed before any weight, with what was seen", async () => {
    apply(model("missing"));
    // tr-v3 is not loaded by the server: it answers 404 "The model `tr-v3` does not exist."
    apply(probeRollout("missing", "tr-v3", chatProbe()));
    const weights = await canaryWeightsUntilFailed("missing", "tr-v3");
    expect(Math.max(...weights)).toBe(0);
    expect(targetModels("missing")).toEqual([{ name: "tr-v1", weight: 100 }]);
    const failed = rollout("missing");
    expect(failed.status?.canaryWeight).toBe(0);
    const progressing = failed.status?.conditions?.find(c => c.type === "Progressing");
    expect(progressing?.reason).toBe("ProbeFailed");
    expect(failed.status?.message).toMatch(
      /analysis\.metrics\[0\] \(answers\) Failed, 0 \(canary 0\/4, stable 4\/4 passed\)/,
    );
    expect(failed.status?.message).toMatch(/status 404 \(expected 200\) \[HTTP 404/);
    expect(failed.status?.message).toMatch(/error type NotFoundError/);
    const events = JSON.parse(
      kubectl(["get", "events", "--field-selector", "involvedObject.name=missing", "-o", "json"]),
    ).items as { type: string; message: string }[];
    expect(events.some(e => e.type === "Warning" && /status 404/.test(e.message))).toBe(true);
  });

  it("holds without traffic when the stable fails the same checks, and refuses a metadata address", async () => {
    apply(model("shared"));
    apply(
      probeRollout(
        "shared",
        "tr-v2",
        `
url: "${sim.url}/v1/chat/completions"
prompts: ["hello"]
expect: {contains: [Rome]}
`,
      ),
    );
    const held = await waitForRollout(
      "shared",
      "Ready=False ProbePending",
      r =>
        r.status?.conditions?.some(c => c.type === "Ready" && c.reason === "ProbePending") ?? false,
      30000,
    );
    expect(held.status?.message).toMatch(
      /stable fails the same checks \(canary 0\/1, stable 0\/1 passed\)/,
    );
    expect(targetModels("shared")).toEqual([{ name: "tr-v1", weight: 100 }]);

    apply(model("hostile"));
    apply(
      probeRollout(
        "hostile",
        "tr-v2",
        `url: "http://169.254.169.254/latest/meta-data"\nprompts: [hi]`,
      ),
    );
    const refused = await waitForRollout(
      "hostile",
      "Ready=False InvalidAnalysis",
      r =>
        r.status?.conditions?.some(c => c.type === "Ready" && c.reason === "InvalidAnalysis") ??
        false,
    );
    expect(refused.status?.message).toMatch(/answers.*169\.254\.169\.254.*refused by default/);
    expect(targetModels("hostile")).toEqual([{ name: "tr-v1", weight: 100 }]);
  });

  it("the apiserver refuses a probe beside a query, and maxTTFT without stream (CEL)", () => {
    const url = `url: "${sim.url}/v1/chat/completions"\nprompts: [hi]`;
    expect(() =>
      apply(
        probeRollout("both", "tr-v2", url).replace("      probe:", "      query: up\n      probe:"),
      ),
    ).toThrow(/exactly one of query \(PromQL\), template \(a built-in gate\) or probe/);
    expect(() => apply(probeRollout("ttft", "tr-v2", `${url}\nexpect: {maxTTFT: 1s}`))).toThrow(
      /maxTTFT needs stream true/,
    );
  });
});
