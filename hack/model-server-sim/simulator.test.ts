import { startSimulator, type RunningSimulator, type SimulatorOptions } from "./index";

jest.setTimeout(15_000);

const running: RunningSimulator[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map(s => s.close()));
});

async function start(options: Partial<SimulatorOptions> = {}): Promise<RunningSimulator> {
  const sim = await startSimulator({ model: "mymodel", host: "127.0.0.1", port: 0, ...options });
  running.push(sim);
  return sim;
}

function post(sim: RunningSimulator, path: string, body: unknown, signal?: AbortSignal) {
  return fetch(sim.url + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

// Response bodies are asserted field by field; typing every OpenAI shape here would add nothing.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (res: Response): Promise<any> => res.json();

const chat = (model: string, content = "hello there", extra: object = {}) => ({
  model,
  messages: [{ role: "user", content }],
  ...extra,
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(sim: RunningSimulator): Promise<Sample[]> {
  const text = await (await fetch(sim.url + "/metrics")).text();
  return text
    .split("\n")
    .filter(line => line && !line.startsWith("#"))
    .map(line => {
      const m = /^([^{\s]+)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`bad metrics line: ${line}`);
      const labels = Object.fromEntries(
        [...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map(l => [l[1], l[2]]),
      );
      return { name: m[1], labels, value: Number(m[3]) };
    });
}

const metric = (samples: Sample[], name: string) => samples.find(s => s.name === name)?.value;

/** The current vllm:lora_requests_info series: the one with the highest timestamp value. */
function currentLoras(samples: Sample[]): Record<string, string> {
  const series = samples.filter(s => s.name === "vllm:lora_requests_info");
  return series.sort((a, b) => b.value - a.value)[0].labels;
}

async function waitFor<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const result = await probe();
    if (result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(resolve => setImmediate(resolve));
  }
}

const waitForMetrics = (sim: RunningSimulator, ok: (s: Sample[]) => boolean, what: string) =>
  waitFor(async () => {
    const samples = await scrape(sim);
    return ok(samples) ? samples : undefined;
  }, what);

describe("model-server simulator", () => {
  it("answers a chat completion with the model, usage and pod headers", async () => {
    const sim = await start({
      model: "Qwen/Qwen2.5-1.5B",
      servedModelName: ["mymodel"],
      loraModules: [{ name: "travel-helper-v1", path: "/x" }],
      mode: "echo",
      podName: "pod-a",
      podNamespace: "ns-a",
    });
    const res = await post(sim, "/v1/chat/completions", {
      model: "mymodel",
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "hi there friend" },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-inference-pod")).toBe("pod-a");
    expect(res.headers.get("x-inference-namespace")).toBe("ns-a");
    expect(res.headers.get("x-inference-port")).toBe(String(sim.port));
    const body = await json(res);
    expect(body).toMatchObject({
      object: "chat.completion",
      model: "mymodel",
      choices: [
        {
          index: 0,
          finish_reason: "stop",
          message: { role: "assistant", content: "hi there friend" },
        },
      ],
      usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
    });
    expect(body.id).toMatch(/^chatcmpl-/);

    const lora = await json(await post(sim, "/v1/chat/completions", chat("travel-helper-v1")));
    expect(lora.model).toBe("travel-helper-v1");

    const text = await json(
      await post(sim, "/v1/completions", {
        model: "mymodel",
        prompt: "one two three",
        max_tokens: 2,
      }),
    );
    expect(text).toMatchObject({
      object: "text_completion",
      choices: [{ text: "one two", finish_reason: "length" }],
      usage: { prompt_tokens: 3, completion_tokens: 2 },
    });

    const models = await json(await fetch(sim.url + "/v1/models"));
    expect(models.data.map((m: { id: string }) => m.id)).toEqual(["mymodel", "travel-helper-v1"]);
    expect(models.data[1]).toMatchObject({ object: "model", owned_by: "vllm", parent: "mymodel" });
    for (const path of ["/health", "/ready", "/health/ready"]) {
      expect((await fetch(sim.url + path)).status).toBe(200);
    }
  });

  it("streams SSE chunks, usage in the final chunk, then [DONE]", async () => {
    const sim = await start({ mode: "echo", interTokenLatency: 2 });
    const res = await post(
      sim,
      "/v1/chat/completions",
      chat("mymodel", "hello streaming world", {
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const events = (await res.text()).split("\n\n").filter(Boolean);
    expect(events.every(e => e.startsWith("data: "))).toBe(true);
    expect(events[events.length - 1]).toBe("data: [DONE]");
    const chunks = events.slice(0, -1).map(e => JSON.parse(e.slice(6)));
    expect(chunks.every(c => c.object === "chat.completion.chunk" && c.model === "mymodel")).toBe(
      true,
    );
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    const content = chunks.map(c => c.choices[0]?.delta?.content ?? "").join("");
    expect(content).toBe("hello streaming world");
    expect(chunks[chunks.length - 2].choices[0].finish_reason).toBe("stop");
    expect(chunks[chunks.length - 1]).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
    });

    const plain = await post(sim, "/v1/completions", {
      model: "mymodel",
      prompt: "a b",
      stream: true,
    });
    const textEvents = (await plain.text()).split("\n\n").filter(Boolean);
    expect(textEvents.some(e => e.includes('"usage"'))).toBe(false); // no include_usage
    const texts = textEvents.slice(0, -1).map(e => JSON.parse(e.slice(6)).choices[0].text);
    expect(texts.join("")).toBe("a b");
  });

  it("returns 404 with an OpenAI error for an unknown model (also the base name when aliased)", async () => {
    const sim = await start({ model: "Qwen/Qwen2.5-1.5B", servedModelName: ["mymodel"] });
    for (const model of ["nope", "Qwen/Qwen2.5-1.5B"]) {
      const res = await post(sim, "/v1/chat/completions", chat(model));
      expect(res.status).toBe(404);
      expect(await json(res)).toEqual({
        error: {
          message: `The model \`${model}\` does not exist.`,
          type: "NotFoundError",
          param: null,
          code: 404,
        },
      });
    }
  });

  it("exports the upstream vLLM metric names, labelled model_name", async () => {
    const sim = await start({ servedModelName: ["served"], maxLoras: 3 });
    expect((await post(sim, "/v1/chat/completions", chat("served"))).status).toBe(200);
    const samples = await scrape(sim);
    for (const name of [
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "vllm:kv_cache_usage_perc",
      "vllm:gpu_cache_usage_perc",
      "vllm:time_to_first_token_seconds_count",
      "vllm:time_per_output_token_seconds_count",
      "vllm:inter_token_latency_seconds_count",
      "vllm:e2e_request_latency_seconds_count",
      "vllm:request_queue_time_seconds_count",
      "vllm:request_success_total",
      "vllm:prompt_tokens_total",
      "vllm:generation_tokens_total",
    ]) {
      const sample = samples.find(s => s.name === name);
      expect(sample?.labels.model_name).toBe("served");
    }
    expect(metric(samples, "vllm:request_success_total")).toBe(1);
    expect(metric(samples, "vllm:prompt_tokens_total")).toBe(2);
    expect(currentLoras(samples)).toEqual({
      max_lora: "3",
      running_lora_adapters: "",
      waiting_lora_adapters: "",
    });
  });

  it("queues beyond max-num-seqs: num_requests_waiting > 0 under concurrent load", async () => {
    const sim = await start({ maxNumSeqs: 1, timeToFirstToken: 300 });
    const t0 = Date.now();
    const requests = [1, 2, 3].map(() => post(sim, "/v1/chat/completions", chat("mymodel")));
    await waitForMetrics(
      sim,
      s =>
        metric(s, "vllm:num_requests_waiting") === 2 &&
        metric(s, "vllm:num_requests_running") === 1,
      "2 waiting, 1 running",
    );
    const responses = await Promise.all(requests);
    expect(responses.map(r => r.status)).toEqual([200, 200, 200]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(850); // served one after another
    const after = await scrape(sim);
    expect(metric(after, "vllm:num_requests_waiting")).toBe(0);
    expect(metric(after, "vllm:request_queue_time_seconds_count")).toBe(3);
  });

  it("rejects with 429 when the waiting queue is full", async () => {
    const sim = await start({ maxNumSeqs: 1, maxWaitingQueueLength: 1, timeToFirstToken: 200 });
    const responses = await Promise.all(
      [1, 2, 3].map(() => post(sim, "/v1/chat/completions", chat("mymodel"))),
    );
    expect(responses.map(r => r.status).sort()).toEqual([200, 200, 429]);
  });

  it("frees the slot when a client disconnects", async () => {
    const sim = await start({ maxNumSeqs: 1, timeToFirstToken: 10_000 });
    const abort = new AbortController();
    const first = post(sim, "/v1/chat/completions", chat("mymodel"), abort.signal).catch(e => e);
    await waitForMetrics(sim, s => metric(s, "vllm:num_requests_running") === 1, "running 1");
    abort.abort();
    await first;
    await waitForMetrics(sim, s => metric(s, "vllm:num_requests_running") === 0, "running 0");
    await post(sim, "/admin/config", { "time-to-first-token": "10ms" });
    expect((await post(sim, "/v1/chat/completions", chat("mymodel"))).status).toBe(200);
  });

  it("injects failures at 100%, never at 0%, switchable at runtime via /admin/config", async () => {
    const sim = await start({ failureInjectionRate: 100 });
    for (let i = 0; i < 20; i++) {
      const res = await post(sim, "/v1/chat/completions", chat("mymodel"));
      expect([400, 401, 404, 429, 503]).toContain(res.status);
      expect((await json(res)).error.code).toBe(res.status);
    }
    const cfg = await post(sim, "/admin/config", {
      "failure-injection-rate": 100,
      "failure-types": ["rate_limit"],
    });
    expect((await json(cfg))["failure-types"]).toEqual(["rate_limit"]);
    const limited = await post(sim, "/v1/chat/completions", chat("mymodel"));
    expect(limited.status).toBe(429);
    expect((await json(limited)).error).toMatchObject({ type: "RateLimitError", code: 429 });

    await post(sim, "/admin/config", { "failure-injection-rate": 0 });
    for (let i = 0; i < 30; i++) {
      expect((await post(sim, "/v1/chat/completions", chat("mymodel"))).status).toBe(200);
    }
    expect(metric(await scrape(sim), "vllm:request_success_total")).toBe(30);
    expect((await post(sim, "/admin/config", { model: "x" })).status).toBe(400);
  });

  it("lets a request for an inactive adapter wait for a free LoRA slot", async () => {
    const sim = await start({
      maxLoras: 1,
      maxNumSeqs: 4,
      timeToFirstToken: 300,
      loraModules: [{ name: "lora-a" }, { name: "lora-b" }],
    });
    const a = post(sim, "/v1/chat/completions", chat("lora-a"));
    await waitForMetrics(sim, s => metric(s, "vllm:num_requests_running") === 1, "a running");
    const b = post(sim, "/v1/chat/completions", chat("lora-b"));
    const waiting = await waitForMetrics(
      sim,
      s => metric(s, "vllm:num_requests_waiting") === 1,
      "b waiting",
    );
    expect(currentLoras(waiting)).toEqual({
      max_lora: "1",
      running_lora_adapters: "lora-a",
      waiting_lora_adapters: "lora-b",
    });
    expect((await a).status).toBe(200);
    const switched = await waitForMetrics(
      sim,
      s => currentLoras(s).running_lora_adapters === "lora-b",
      "b running",
    );
    expect(currentLoras(switched).waiting_lora_adapters).toBe("");
    expect((await json(await b)).model).toBe("lora-b");
  });

  it("loads and unloads LoRA adapters at runtime", async () => {
    const sim = await start();
    expect((await post(sim, "/v1/chat/completions", chat("new-adapter"))).status).toBe(404);
    const load = await post(sim, "/v1/load_lora_adapter", {
      lora_name: "new-adapter",
      lora_path: "/p",
    });
    expect(load.status).toBe(200);
    const models = await json(await fetch(sim.url + "/v1/models"));
    const ids = models.data.map((m: { id: string }) => m.id);
    expect(ids).toContain("new-adapter");
    expect((await post(sim, "/v1/chat/completions", chat("new-adapter"))).status).toBe(200);
    await post(sim, "/v1/unload_lora_adapter", { lora_name: "new-adapter" });
    expect((await post(sim, "/v1/chat/completions", chat("new-adapter"))).status).toBe(404);
  });

  it("reports KV-cache usage from running requests' tokens", async () => {
    const sim = await start({ kvCacheSize: 4, blockSize: 8, timeToFirstToken: 300 });
    const prompt = Array.from({ length: 20 }, (_, i) => `w${i}`).join(" ");
    const req = post(sim, "/v1/completions", {
      model: "mymodel",
      prompt,
      max_tokens: 4,
      ignore_eos: true,
    });
    const busy = await waitForMetrics(
      sim,
      s => metric(s, "vllm:kv_cache_usage_perc") === 0.75, // ceil(24 / 8) = 3 of 4 blocks
      "kv usage 0.75",
    );
    expect(metric(busy, "vllm:gpu_cache_usage_perc")).toBe(0.75);
    expect((await req).status).toBe(200);
    expect(metric(await scrape(sim), "vllm:kv_cache_usage_perc")).toBe(0);
  });

  it("with --enable-kvcache charges prefill only for the prompt blocks not cached yet", async () => {
    const sim = await start({
      enableKvcache: true,
      blockSize: 16,
      prefillTimePerToken: 2,
      maxModelLen: 4096,
    });
    const shared = Array.from({ length: 320 }, (_, i) => `s${i}`).join(" ");
    const ask = async (question: string) => {
      const t0 = performance.now();
      const res = await post(sim, "/v1/completions", {
        model: "mymodel",
        prompt: `${shared} ${question}`,
        max_tokens: 1,
      });
      expect(res.status).toBe(200);
      await res.text();
      return performance.now() - t0;
    };
    const cold = await ask("first question here");
    const warm = await ask("another question");
    // 323 prompt tokens × 2 ms cold; warm: 20 blocks (320 tokens) cached, 2 tokens × 2 ms.
    expect(cold).toBeGreaterThanOrEqual(640);
    expect(warm).toBeLessThan(200);
    const samples = await scrape(sim);
    expect(metric(samples, "vllm:prefix_cache_queries_total")).toBe(323 + 322);
    expect(metric(samples, "vllm:prefix_cache_hits_total")).toBe(320);
    expect(metric(samples, "vllm:kv_cache_usage_perc")).toBe(0);
  });

  it("rejects a request beyond max-model-len with 400", async () => {
    const sim = await start({ maxModelLen: 10 });
    const res = await post(sim, "/v1/completions", {
      model: "mymodel",
      prompt: "a b c d e f g h",
      max_tokens: 5,
    });
    expect(res.status).toBe(400);
    expect((await json(res)).error.message).toContain("maximum context length is 10 tokens");
  });
});
