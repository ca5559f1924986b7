import {
  adapterList,
  loraInfoFrom,
  newLoraSeriesMemory,
  parsePrometheusText,
  parseSampleLine,
  samplesNamed,
  vllmMetricsFromText,
} from "./promtext";

const page = `# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="base"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="base",engine="0"} 2
vllm:num_requests_waiting{model_name="base",engine="1"} 1
vllm:num_requests_waiting_by_reason{reason="capacity"} 99
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="base"} 0.42
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="v1,v2",waiting_lora_adapters=""} 1.7e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",waiting_lora_adapters="v3"} 1.6e+09
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="base"} 17
`;

describe("Prometheus text parser", () => {
  it("parses names, labels with escapes, values and timestamps", () => {
    expect(parseSampleLine('a_b:c{x="1",y="q\\"uo\\\\te\\n"} 2.5 1700000000000')).toEqual({
      name: "a_b:c",
      labels: { x: "1", y: 'q"uo\\te\n' },
      value: 2.5,
    });
    expect(parseSampleLine("up 1")).toEqual({ name: "up", labels: {}, value: 1 });
    expect(parseSampleLine('h_bucket{le="+Inf",} +Inf')?.value).toBe(Infinity);
    expect(parseSampleLine("x -Inf")?.value).toBe(-Infinity);
    expect(Number.isNaN(parseSampleLine("x NaN")?.value)).toBe(true);
    expect(parseSampleLine("x 1e-3")?.value).toBe(0.001);
  });

  it("skips comments, blanks and malformed lines instead of failing", () => {
    for (const line of [
      "# HELP x y",
      "",
      "   ",
      "x",
      'x{a="1" 2',
      "x{a=1} 2",
      "9x 1",
      "x abc",
      'x{="v"} 1',
    ]) {
      expect(parseSampleLine(line)).toBeUndefined();
    }
    expect(parsePrometheusText("a 1\r\nbroken{\nb 2\n")).toEqual([
      { name: "a", labels: {}, value: 1 },
      { name: "b", labels: {}, value: 2 },
    ]);
  });

  it("samplesNamed matches whole names at line starts only", () => {
    const waiting = samplesNamed(page, "vllm:num_requests_waiting");
    expect(waiting.map(s => s.value)).toEqual([2, 1]);
    // The targeted reader agrees with the full parser.
    const full = parsePrometheusText(page).filter(s => s.name === "vllm:num_requests_waiting");
    expect(waiting).toEqual(full);
    expect(samplesNamed(page, "vllm:num_requests")).toEqual([]);
  });
});

describe("vLLM metrics", () => {
  it("reads queues (summed), KV cache and the newest LoRA series", () => {
    expect(vllmMetricsFromText(page, 123)).toEqual({
      waiting: 3,
      running: 3,
      kvCacheUsage: 0.42,
      lora: { running: ["v1", "v2"], waiting: [], maxLora: 4 },
      scrapedAtMs: 123,
    });
  });

  it("falls back to the older KV-cache metric name", () => {
    const m = vllmMetricsFromText(
      "vllm:num_requests_waiting 0\nvllm:num_requests_running 1\nvllm:gpu_cache_usage_perc 0.9\n",
      1,
    );
    expect(m?.kvCacheUsage).toBe(0.9);
    expect(m?.lora).toBeUndefined();
  });

  it("returns undefined for a page that is not a vLLM server's", () => {
    expect(vllmMetricsFromText("process_cpu_seconds_total 3\n", 1)).toBeUndefined();
  });

  it("reads adapter lists with spaces, counts and the max_loras spelling", () => {
    expect(adapterList(" a, b:2 ,,c:10")).toEqual(["a", "b", "c"]);
    expect(
      loraInfoFrom([
        { name: "x", labels: { max_loras: "2", running_lora_adapters: "z" }, value: 5 },
      ]),
    ).toEqual({ running: ["z"], waiting: [], maxLora: 2 });
    expect(loraInfoFrom([])).toBeUndefined();
  });

  // llm-d-inference-sim stamps whole Unix seconds and never deletes a series; its Go client
  // exposes them sorted by label values. A request to v1 that ended and one to v2 that started
  // within the same second leave three series tied at the top, the idle one first.
  const simPage = (running: number, waiting: number) => `# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.765e+09
vllm:lora_requests_info{max_lora="2",running_lora_adapters="travel-helper-v1",waiting_lora_adapters=""} 1.765e+09
vllm:lora_requests_info{max_lora="2",running_lora_adapters="travel-helper-v2",waiting_lora_adapters=""} 1.765e+09
vllm:lora_requests_info{max_lora="2",running_lora_adapters="travel-helper-v2,travel-helper-v1",waiting_lora_adapters=""} 1.764999999e+09
vllm:lora_requests_info{max_lora="2",running_lora_adapters="x",waiting_lora_adapters="y"} 1.7e+09
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="mymodel"} ${running}
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="mymodel"} ${waiting}
`;

  it("does not read a busy server as idle when LoRA series tie on whole seconds", () => {
    // Keeping the first of the tied series (as `>` does) read "nothing runs" while v2 ran.
    const m = vllmMetricsFromText(simPage(1, 0), 1);
    expect(m?.lora?.running).toContain("travel-helper-v2");
    expect(m?.lora?.maxLora).toBe(2);
    // The answer does not depend on the exposition order of the tied series either.
    const reversed = samplesNamed(simPage(1, 0), "vllm:lora_requests_info").reverse();
    expect(loraInfoFrom(reversed, { running: 1, waiting: 0 })?.running).toContain(
      "travel-helper-v2",
    );
  });

  it("reads an idle server as idle when LoRA series tie, whatever their order", () => {
    expect(vllmMetricsFromText(simPage(0, 0), 1)?.lora).toEqual({
      running: [],
      waiting: [],
      maxLora: 2,
    });
    const reversed = samplesNamed(simPage(0, 0), "vllm:lora_requests_info").reverse();
    expect(loraInfoFrom(reversed, { running: 0, waiting: 0 })?.running).toEqual([]);
  });

  it("merges tied states it cannot tell apart", () => {
    const samples = samplesNamed(simPage(2, 0), "vllm:lora_requests_info");
    expect(loraInfoFrom(samples)).toEqual({
      running: ["travel-helper-v1", "travel-helper-v2"],
      waiting: [],
      maxLora: 2,
    });
  });

  it("rules out a tied state that lists more running adapters than requests run", () => {
    const lora = (running: string, value: number) =>
      `vllm:lora_requests_info{max_lora="2",running_lora_adapters="${running}",waiting_lora_adapters=""} ${value}`;
    const page = [lora("a", 7), lora("a,b", 7), "vllm:num_requests_running 1"].join("\n");
    expect(vllmMetricsFromText(page, 0)?.lora?.running).toEqual(["a"]);
  });

  it("tells tied series apart by what changed since the endpoint's previous scrape", () => {
    // The picker scrapes every ~50 ms: of the series tied at the top, those whose value changed
    // since the previous scrape were set last.
    const T = 1765000000;
    const page = (states: [string, number][], running: number) =>
      [
        ...states.map(
          ([r, v]) =>
            `vllm:lora_requests_info{max_lora="2",running_lora_adapters="${r}",waiting_lora_adapters=""} ${v}`,
        ),
        `vllm:num_requests_running ${running}`,
        "vllm:num_requests_waiting 0",
      ].join("\n");
    const memory = newLoraSeriesMemory();
    const read = (p: string) => vllmMetricsFromText(p, 0, memory)?.lora?.running;
    // v1 runs (set in second T; the idle state was set earlier in T, at start-up).
    expect(
      read(
        page(
          [
            ["", T],
            ["travel-helper-v1", T],
          ],
          1,
        ),
      ),
    ).toEqual(["travel-helper-v1"]);
    // v1 ended and v2 started, still in second T: the idle and v2 series changed, v1's did not.
    // The first of the tied series (the idle one, sorted first) would read "nothing runs".
    const busy = page(
      [
        ["", T],
        ["travel-helper-v1", T],
        ["travel-helper-v2", T],
      ],
      1,
    );
    expect(read(busy)).toEqual(["travel-helper-v2"]);
    expect(read(busy)).toEqual(["travel-helper-v2"]); // nothing changed: still v2
    // v2 ended in second T too: the idle series was set again to the same value; nothing runs.
    expect(
      read(
        page(
          [
            ["", T],
            ["travel-helper-v1", T],
            ["travel-helper-v2", T],
          ],
          0,
        ),
      ),
    ).toEqual([]);
    // A new second: one series at the top.
    expect(
      read(
        page(
          [
            ["", T],
            ["travel-helper-v1", T + 1],
            ["travel-helper-v2", T],
          ],
          1,
        ),
      ),
    ).toEqual(["travel-helper-v1"]);
  });
});
