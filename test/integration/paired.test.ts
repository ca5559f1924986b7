// The paired-comparison built-in against the real Prometheus and the real vLLM simulator
// (llm-d-inference-sim with its prefix cache on and a per-token prefill time, so a cold cache
// costs what it costs on vLLM): each side is a simulator scraped with the pool's name as a target
// label, the gate reads the vLLM metrics (metricsSource vllm), and the operator's own resolve,
// query and judge functions give the verdict.
import {
  measurementFrom,
  queryPrometheus,
  resolveMetric,
  type MetricSpec,
  type TemplateContext,
} from "../../capabilities/analysis";
import { addScrapeTarget, removeScrapeTarget } from "../../hack/env/prometheus";
import { RunningSimulator, startSimulator } from "../../hack/env/simulator";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers } from "../support/rollouts";

let ns: TestNamespace;
let operator: RunningOperator | undefined;
const running: Array<{ sim: RunningSimulator; target: string }> = [];

beforeAll(() => {
  ns = createTestNamespace("paired");
});

afterAll(async () => {
  await operator?.stop();
  for (const { sim, target } of running.splice(0)) {
    removeScrapeTarget(env().info.stateDir, target);
    await sim.close();
  }
  await ns.cleanup();
});

const { apply, getJson, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator?.log ?? "",
);

/** A simulator for one pool: prefix cache on, TTFT = perTokenMs x uncached prompt tokens. */
async function pool(name: string, perTokenMs: number): Promise<RunningSimulator> {
  const sim = await startSimulator({
    model: "mymodel",
    maxNumSeqs: 64,
    interTokenLatencyMs: perTokenMs,
    extraArgs: [
      "--enable-kvcache",
      "--block-size=16",
      "--prefill-overhead=0ms",
      `--prefill-time-per-token=${perTokenMs}ms`,
    ],
  });
  const target = `paired-${ns.name}-${name}`;
  running.push({ sim, target });
  addScrapeTarget(env().info.stateDir, target, `127.0.0.1:${sim.port}`, {
    namespace: ns.name,
    pool: name,
  });
  return sim;
}

const words = (n: number, first: string) =>
  [first, ...Array.from({ length: n - 1 }, (_, i) => `w${i}`)].join(" ");

/**
 * `n` completions of 70-token prompts; `warm` repeats one prompt (its 4 full 16-token blocks come
 * from the cache, 6 tokens are computed), else each is new (all 70 computed).
 */
async function send(sim: RunningSimulator, n: number, warm: boolean, tag: string): Promise<void> {
  const one = async (i: number) => {
    const res = await fetch(`${sim.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "mymodel",
        prompt: words(70, warm ? "same" : `${tag}${i}`),
        max_tokens: 4,
        ignore_eos: true,
      }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  };
  for (let i = 0; i < n; i += 8) {
    await Promise.all(Array.from({ length: Math.min(8, n - i) }, (_, k) => one(i + k)));
  }
}

/** Waits until Prometheus has scraped `n` finished requests of the pool. */
async function scraped(name: string, n: number): Promise<void> {
  const query = `sum(vllm:request_success_total{namespace="${ns.name}",pool="${name}"})`;
  await waitFor(
    `Prometheus to have ${n} requests of ${name}`,
    async () => Number((await promQuery(env().info.prometheusUrl, query))[0]?.value[1] ?? 0) >= n,
    30000,
  );
}

/**
 * Runs traffic on both sides: one request first, scraped, so that every series exists before the
 * window's requests (the naive gate's rate() cannot count a series' first sample), then `n` per
 * side.
 */
async function traffic(
  stable: { name: string; sim: RunningSimulator; warm: boolean; n: number },
  canary: { name: string; sim: RunningSimulator; warm: boolean; n: number },
): Promise<void> {
  for (const side of [stable, canary]) await send(side.sim, 1, side.warm, `${side.name}-first-`);
  await Promise.all([scraped(stable.name, 1), scraped(canary.name, 1)]);
  await Promise.all([stable, canary].map(s => send(s.sim, s.n, s.warm, s.name)));
  await Promise.all([scraped(stable.name, stable.n + 1), scraped(canary.name, canary.n + 1)]);
}

async function measure(metric: Omit<MetricSpec, "name">, stable: string, canary: string) {
  const ctx: TemplateContext = {
    scope: "pools",
    namespace: ns.name,
    rollout: "r",
    canary,
    stable,
    weight: 50,
  };
  const resolved = resolveMetric({ name: "m", metricsSource: "vllm", ...metric }, ctx);
  const result = await queryPrometheus({ address: env().info.prometheusUrl }, resolved.query);
  return measurementFrom(resolved, result, new Date());
}

const scoped = { namespaceLabel: "namespace", window: "1m" };
const value = (m: { value?: string }) => Number(JSON.parse(m.value ?? "[]")[0]);

describe("paired-comparison (real Prometheus, real simulator)", () => {
  it("a canary as fast per token but with a cold prefix cache passes where the naive TTFT ratio fails", async () => {
    const [stable, canary] = await Promise.all([pool("warm-v1", 2), pool("cold-v2", 2)]);
    await traffic(
      { name: "warm-v1", sim: stable, warm: true, n: 24 },
      { name: "cold-v2", sim: canary, warm: false, n: 24 },
    );
    // The stable pool serves 64 of 70 prompt tokens from its cache: its mean TTFT is ~12x lower.
    const naive = await measure(
      { template: "ttft-p95-ratio", args: { ...scoped, minRequests: "20" } },
      "warm-v1",
      "cold-v2",
    );
    expect(naive.phase).toBe("Failed");
    expect(value(naive)).toBeGreaterThan(5);

    const paired = await measure(
      { template: "paired-comparison", args: { ...scoped, minRequests: "20" } },
      "warm-v1",
      "cold-v2",
    );
    expect(paired.phase).toBe("Successful");
    // Per uncached prompt token both take 2 ms: a ratio of 1, a score of 1 / 1.2.
    expect(value(paired)).toBeGreaterThan(0.7);
    expect(value(paired)).toBeLessThan(0.95);
  });

  it("a canary 7.5x slower per token fails", async () => {
    const [stable, canary] = await Promise.all([pool("fast-v1", 2), pool("slow-v2", 15)]);
    await traffic(
      { name: "fast-v1", sim: stable, warm: false, n: 24 },
      { name: "slow-v2", sim: canary, warm: false, n: 24 },
    );
    const paired = await measure(
      { template: "paired-comparison", args: { ...scoped, minRequests: "20" } },
      "fast-v1",
      "slow-v2",
    );
    expect(paired.phase).toBe("Failed");
    // TTFT per token and inter-token latency are both 7.5x: a score of 7.5 / 1.2.
    expect(value(paired)).toBeGreaterThan(5);
    // Each signal alone fails too.
    for (const signals of ["ttft", "itl"]) {
      const one = await measure(
        { template: "paired-comparison", args: { ...scoped, minRequests: "20", signals } },
        "fast-v1",
        "slow-v2",
      );
      expect(`${signals} ${one.phase}`).toBe(`${signals} Failed`);
    }
  });

  it("too few requests on one side is Inconclusive, never Successful nor Failed", async () => {
    const [stable, canary] = await Promise.all([pool("many-v1", 2), pool("few-v2", 15)]);
    await traffic(
      { name: "many-v1", sim: stable, warm: false, n: 24 },
      { name: "few-v2", sim: canary, warm: false, n: 3 },
    );
    // The three canary requests are 7.5x slower, yet three decide nothing.
    const thin = await measure(
      { template: "paired-comparison", args: { ...scoped, minRequests: "20" } },
      "many-v1",
      "few-v2",
    );
    expect(thin.phase).toBe("Inconclusive");
    expect(thin.value).toBe("[]");
    // The other way round (a thin stable side) too.
    const thinStable = await measure(
      { template: "paired-comparison", args: { ...scoped, minRequests: "20" } },
      "few-v2",
      "many-v1",
    );
    expect(thinStable.phase).toBe("Inconclusive");
    // The minimum alone made it so: at 3 the same data fails.
    const judged = await measure(
      { template: "paired-comparison", args: { ...scoped, minRequests: "3" } },
      "many-v1",
      "few-v2",
    );
    expect(judged.phase).toBe("Failed");
  });

  it("Prometheus accepts the query of every source and scope (empty without their metrics)", async () => {
    const sources = ["auto", "picker", "upstream-epp", "vllm"] as const;
    for (const scope of ["pools", "adapters"] as const) {
      for (const metricsSource of sources) {
        if (scope === "adapters" && metricsSource === "vllm") continue; // refused, unit-tested
        const resolved = resolveMetric(
          { name: "m", template: "paired-comparison", metricsSource, args: scoped },
          { scope, namespace: `${ns.name}-none`, rollout: "r", canary: "c", stable: "s" },
        );
        const result = await queryPrometheus({ address: env().info.prometheusUrl }, resolved.query);
        expect(`${scope} ${metricsSource} ${JSON.stringify(result)}`).toBe(
          `${scope} ${metricsSource} {"kind":"vector","series":[]}`,
        );
      }
    }
  });

  it("in a rollout: the operator holds the weight while the canary's evidence is thin, then promotes on it", async () => {
    const [stable, canary] = await Promise.all([pool("e2e-v1", 2), pool("e2e-v2", 2)]);
    // Every series exists before the window's requests (see traffic()); the canary has 3 only.
    await traffic(
      { name: "e2e-v1", sim: stable, warm: true, n: 24 },
      { name: "e2e-v2", sim: canary, warm: false, n: 3 },
    );
    operator = await startOperator({ namespaces: [ns.name], name: ns.name });
    const seedPool = (name: string) => `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${name}}
spec:
  extensionRef: {group: "", kind: Service, name: ${name}-epp}
  selector: {app: vllm, release: ${name}}
  targetPortNumber: 8000
`;
    apply(`${seedPool("e2e-v1")}---${seedPool("e2e-v2")}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: e2e-route}
spec:
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: e2e-v1, weight: 1}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: e2e}
spec:
  prometheus: {address: "${env().info.prometheusUrl}"}
  pools: {httpRoute: e2e-route, stable: e2e-v1, canary: e2e-v2}
  analysis:
    metrics:
    - name: paired
      template: paired-comparison
      metricsSource: vllm
      args: {namespaceLabel: namespace, window: 1m, minRequests: "20"}
      interval: 2s
      inconclusiveLimit: 1000
  steps:
  - setWeight: 10
  - setWeight: 100
`);
    const weights = () =>
      getJson<{
        spec: { rules: { backendRefs: { name: string; weight?: number }[] }[] };
      }>("httproute", "e2e-route").spec.rules[0].backendRefs.map(r => `${r.name}=${r.weight}`);
    const held = await waitForRollout(
      "e2e",
      "two Inconclusive measurements at 10 %",
      r =>
        (r.status?.analysis?.metrics[0]?.measurements ?? []).filter(m => m.phase === "Inconclusive")
          .length >= 2,
      60000,
    );
    expect(held.status?.canaryWeight).toBe(10);
    expect(held.status?.conditions?.some(c => c.reason === "WaitingForEvidence")).toBe(true);
    expect(held.status?.analysis?.metrics[0].measurements.map(m => m.phase)).not.toContain(
      "Successful",
    );
    expect(weights()).toEqual(["e2e-v1=90", "e2e-v2=10"]);

    // Enough cold-cache canary requests: as fast per uncached token, so the rollout completes.
    await send(canary, 24, false, "e2e-more");
    await scraped("e2e-v2", 28);
    const done = await waitForRollout(
      "e2e",
      "Succeeded",
      r => r.status?.phase === "Succeeded",
      60000,
    );
    const last = done.status?.analysis?.metrics[0].measurements.at(-1);
    expect(last?.phase).toBe("Successful");
    expect(Number(JSON.parse(last?.value ?? "[]")[0])).toBeLessThanOrEqual(1);
    // The operator removes the stable ref once the canary has it all.
    expect(weights()).toEqual(["e2e-v2=100"]);
  });
});
