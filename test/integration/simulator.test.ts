// The model server the environment, tests, benchmarks and demo run is the real upstream vLLM
// simulator, llm-d-inference-sim (hack/env/simulator.ts). These tests pin down the facts about it
// that the picker and the demo build on, with the picker's own reader of /metrics: a change of
// simulator version that breaks one of them fails here, not somewhere downstream.
import { loraInfoFrom, samplesNamed, vllmMetricsFromText } from "../../picker/core/promtext";
import { RunningSimulator, startSimulator } from "../../hack/env/simulator";

const V1 = "travel-helper-v1";
const V2 = "travel-helper-v2";

const running: RunningSimulator[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map(s => s.close()));
});

async function sim(o: Parameters<typeof startSimulator>[0]): Promise<RunningSimulator> {
  const s = await startSimulator(o);
  running.push(s);
  return s;
}

async function complete(
  s: RunningSimulator,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${s.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "hello there", max_tokens: 2, ...body }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const metricsPage = async (s: RunningSimulator) => (await fetch(`${s.url}/metrics`)).text();

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 20));
  }
}

describe("llm-d-inference-sim (the real upstream simulator)", () => {
  it("serves the vLLM metrics the picker reads, and its LoRA state while an adapter runs", async () => {
    const s = await sim({
      model: "Qwen/Qwen2.5-1.5B-Instruct",
      servedModelNames: ["mymodel"],
      loraAdapters: [V1, V2],
      maxLoras: 2,
      timeToFirstTokenMs: 1500,
    });
    expect(vllmMetricsFromText(await metricsPage(s), 1)).toEqual({
      waiting: 0,
      running: 0,
      kvCacheUsage: 0,
      lora: { running: [], waiting: [], maxLora: 2 },
      scrapedAtMs: 1,
    });
    const answer = complete(s, { model: V2 });
    const busy = await until("the request to run", async () => {
      const m = vllmMetricsFromText(await metricsPage(s), 2);
      return m?.running === 1 ? m : undefined;
    });
    expect(busy.lora?.running).toEqual([V2]);
    const done = await answer;
    expect(done.status).toBe(200);
    expect(done.body.model).toBe(V2);
    await until("the server to be idle again", async () => {
      const m = vllmMetricsFromText(await metricsPage(s), 3);
      return m?.running === 0 && m.lora?.running.length === 0 ? m : undefined;
    });
  });

  it("stamps vllm:lora_requests_info in whole seconds: states tie, and the picker still sees the running adapter", async () => {
    // One adapter's request ends and another's starts within the same second: the series of
    // both states (and of the states in between) carry the same value. The Go client exposes
    // them sorted by labels, so "the first series with the highest value" (upstream EPP's rule)
    // is an earlier state (idle, v1 alone, or v1 and v2 together), never "v2 alone" that holds
    // now: its label value sorts last.
    const s = await sim({
      model: "base",
      loraAdapters: [V1, V2],
      maxLoras: 2,
      timeToFirstTokenMs: 0,
      interTokenLatencyMs: 400,
    });
    for (let attempt = 1; ; attempt++) {
      const short = complete(s, { model: V1, max_tokens: 1 });
      const long = complete(s, { model: V2, max_tokens: 8, ignore_eos: true });
      await short;
      const page = await until("v2 to run alone", async () => {
        const p = await metricsPage(s);
        const m = vllmMetricsFromText(p, 0);
        return m?.running === 1 ? p : undefined;
      });
      await long;
      const samples = samplesNamed(page, "vllm:lora_requests_info");
      const top = Math.max(...samples.map(x => x.value));
      expect(Number.isInteger(top)).toBe(true); // whole Unix seconds
      const tied = samples.filter(x => x.value === top);
      if (tied.length < 2 && attempt < 3) continue; // the two crossed a second boundary
      expect(tied.length).toBeGreaterThan(1);
      expect(tied[0].labels.running_lora_adapters ?? "").not.toBe(V2);
      expect(vllmMetricsFromText(page, 0)?.lora?.running).toContain(V2);
      expect(loraInfoFrom(samples, { running: 1, waiting: 0 })?.running).toContain(V2);
      return;
    }
  });

  it("answers an unknown model with 404 and injected failures with vLLM's JSON errors", async () => {
    const ok = await sim({ model: "base" });
    const unknown = await complete(ok, { model: "nope" });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: expect.objectContaining({ code: 404 }) });

    const failing = await sim({
      model: "base",
      failureInjectionRate: 100,
      extraArgs: ["--failure-types", "server_error", "rate_limit"],
    });
    const statuses = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const r = await complete(failing, { model: "base" });
      expect(r.body).toEqual({ error: expect.objectContaining({ message: expect.any(String) }) });
      statuses.add(r.status);
    }
    expect([...statuses].sort()).toEqual([429, 503]);
  });

  it("counts in vllm:request_queue_time_seconds only the requests that waited in its queue", async () => {
    const s = await sim({ model: "base", maxNumSeqs: 1, timeToFirstTokenMs: 300 });
    await Promise.all([complete(s, { model: "base" }), complete(s, { model: "base" })]);
    const page = await metricsPage(s);
    const count = samplesNamed(page, "vllm:request_queue_time_seconds_count");
    const e2e = samplesNamed(page, "vllm:e2e_request_latency_seconds_count");
    expect(e2e.reduce((a, x) => a + x.value, 0)).toBe(2);
    expect(count.reduce((a, x) => a + x.value, 0)).toBe(1);
  });

  it("keeps a prefix cache with --enable-kvcache (POD_IP set): a repeated prompt's blocks hit", async () => {
    const s = await sim({
      model: "base",
      extraArgs: ["--enable-kvcache", "--kv-cache-size=64", "--block-size=16"],
    });
    const prompt = Array.from({ length: 100 }, (_, i) => `w${i}`).join(" ");
    const sums = async () => {
      const page = await metricsPage(s);
      const sum = (name: string) => samplesNamed(page, name).reduce((a, x) => a + x.value, 0);
      return [sum("vllm:prefix_cache_hits_total"), sum("vllm:prefix_cache_queries_total")];
    };
    expect((await complete(s, { model: "base", prompt })).status).toBe(200);
    const [hits1, queries1] = await until("the first request's cache stats", async () => {
      const v = await sums();
      return v[1] > 0 ? v : undefined;
    });
    expect(hits1).toBe(0);
    const second = await complete(s, { model: "base", prompt });
    expect(second.status).toBe(200);
    const usage = second.body.usage as { prompt_tokens_details?: { cached_tokens?: number } };
    expect(usage.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);
    const [hits2, queries2] = await until("the second request's cache stats", async () => {
      const v = await sums();
      return v[1] > queries1 ? v : undefined;
    });
    expect(hits2).toBeGreaterThan(0);
    expect(hits2).toBeLessThanOrEqual(queries2 - queries1);
  });
});
