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

let ns: TestNamespace;
const running: Array<{ sim: RunningSimulator; target: string }> = [];

beforeAll(() => {
  ns = createTestNamespace("paired");
});

afterAll(async () => {
  for (const { sim, target } of running.splice(0)) {
    removeScrapeTarget(env().info.stateDir, target);
    await sim.close();
  }
  await ns.cleanup();
});

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
 * window's requests (increase() cannot count a series' first sample), then `n` per side.
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
});
