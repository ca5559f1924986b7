// vLLM Prometheus metrics under llm-d-inference-sim's names, labels and buckets
// (pkg/llm-d-inference-sim/metrics.go, pkg/engine/vllm/metrics.go, pkg/common/utils.go).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SchedulerState } from "./scheduler";

// Bucket upper bounds copied from upstream common.TTFTBucketsBoundaries etc.
const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
  40.0, 80.0, 160.0, 640.0, 2560.0,
];
const TPOT_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
  40.0, 80.0,
];
const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
  480.0, 960.0, 1920.0, 7680.0,
];

/** vLLM's build_1_2_5_buckets, as upstream build125Buckets(max-model-len). */
export function build125Buckets(max: number): number[] {
  const buckets: number[] = [];
  for (let scale = 1; scale <= max; scale *= 10) {
    for (const m of [1, 2, 5]) if (m * scale <= max) buckets.push(m * scale);
  }
  return buckets;
}

export interface SuccessRecord {
  promptTokens: number;
  generationTokens: number;
  finishReason: string;
  e2eSeconds: number;
}

export class SimMetrics {
  readonly registry = new Registry();
  private readonly label: { model_name: string };
  private lastLoraStamp = 0;
  private readonly running;
  private readonly waiting;
  private readonly kvUsage;
  private readonly gpuCacheUsage;
  private readonly loraInfo;
  private readonly ttft;
  private readonly tpot;
  private readonly interTokenLatency;
  private readonly queueTime;
  private readonly e2e;
  private readonly promptTokensHist;
  private readonly generationTokensHist;
  private readonly promptTokensTotal;
  private readonly generationTokensTotal;
  private readonly successTotal;
  private readonly prefixQueries;
  private readonly prefixHits;

  /** modelName: upstream labels every series with the first served model name. */
  constructor(
    modelName: string,
    private readonly maxLoras: number,
    maxModelLen: number,
    cache: { blockSize: number; kvCacheSize: number },
  ) {
    this.label = { model_name: modelName };
    const registers = [this.registry];
    const labelNames = ["model_name"] as const;
    const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, labelNames, buckets, registers });
    const counter = (name: string, help: string) =>
      new Counter({ name, help, labelNames, registers });

    this.running = gauge(
      "vllm:num_requests_running",
      "Number of requests currently running on GPU.",
    );
    this.waiting = gauge(
      "vllm:num_requests_waiting",
      "Prometheus metric for the number of queued requests.",
    );
    // Current vLLM name, and the pre-v0.10 name older schedulers read; same value.
    this.kvUsage = gauge(
      "vllm:kv_cache_usage_perc",
      "The fraction of KV-cache blocks currently in use (from 0 to 1).",
    );
    this.gpuCacheUsage = gauge(
      "vllm:gpu_cache_usage_perc",
      "Prometheus metric for the fraction of KV-cache blocks currently in use (from 0 to 1).",
    );
    this.loraInfo = new Gauge({
      name: "vllm:lora_requests_info",
      help: "Running stats on lora requests.",
      labelNames: ["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
      registers,
    });
    this.ttft = histogram(
      "vllm:time_to_first_token_seconds",
      "Histogram of time to first token in seconds.",
      TTFT_BUCKETS,
    );
    this.tpot = histogram(
      "vllm:time_per_output_token_seconds",
      "Histogram of time per output token in seconds.",
      TPOT_BUCKETS,
    );
    this.interTokenLatency = histogram(
      "vllm:inter_token_latency_seconds",
      "Histogram of inter-token latency in seconds.",
      TPOT_BUCKETS,
    );
    this.e2e = histogram(
      "vllm:e2e_request_latency_seconds",
      "Histogram of end to end request latency in seconds.",
      REQUEST_LATENCY_BUCKETS,
    );
    this.queueTime = histogram(
      "vllm:request_queue_time_seconds",
      "Histogram of time spent in WAITING phase for request.",
      REQUEST_LATENCY_BUCKETS,
    );
    const tokenBuckets = build125Buckets(maxModelLen);
    this.promptTokensHist = histogram(
      "vllm:request_prompt_tokens",
      "Number of prefill tokens processed.",
      tokenBuckets,
    );
    this.generationTokensHist = histogram(
      "vllm:request_generation_tokens",
      "Number of generation tokens processed.",
      tokenBuckets,
    );
    this.promptTokensTotal = counter(
      "vllm:prompt_tokens_total",
      "Total number of prompt tokens processed.",
    );
    this.generationTokensTotal = counter(
      "vllm:generation_tokens_total",
      "Total number of generated tokens.",
    );
    this.successTotal = new Counter({
      name: "vllm:request_success_total",
      help: "Count of successfully processed requests.",
      labelNames: ["model_name", "finish_reason"],
      registers,
    });
    // vLLM v1's prefix-cache counters, in tokens (with --enable-kvcache only).
    this.prefixQueries = counter(
      "vllm:prefix_cache_queries_total",
      "Prefix cache queries, in terms of number of queried tokens.",
    );
    this.prefixHits = counter(
      "vllm:prefix_cache_hits_total",
      "Prefix cache hits, in terms of number of cached tokens.",
    );
    new Gauge({
      name: "vllm:cache_config_info",
      help: "Information of the LLMEngine CacheConfig.",
      labelNames: ["block_size", "num_gpu_blocks"],
      registers,
    }).set({ block_size: String(cache.blockSize), num_gpu_blocks: String(cache.kvCacheSize) }, 1);
  }

  /** Mirrors the scheduler; kvUsage is the fraction of KV blocks held by running requests. */
  update(state: SchedulerState, kvUsage: number): void {
    this.running.set(this.label, state.running);
    this.waiting.set(this.label, state.waiting);
    this.kvUsage.set(this.label, kvUsage);
    this.gpuCacheUsage.set(this.label, kvUsage);
    // Upstream sets the current label set to the time of the change; old sets keep older stamps,
    // so the series with the highest value is current. Strictly increasing to avoid ties.
    const stamp = Math.max(Date.now() / 1000, this.lastLoraStamp + 0.001);
    this.lastLoraStamp = stamp;
    this.loraInfo.set(
      {
        max_lora: String(this.maxLoras),
        running_lora_adapters: state.runningLoras.join(","),
        waiting_lora_adapters: state.waitingLoras.join(","),
      },
      stamp,
    );
  }

  observe(
    metric: "ttft" | "tpot" | "interTokenLatency" | "queueTime",
    seconds: number,
    times = 1,
  ): void {
    for (let i = 0; i < times; i++) this[metric].observe(this.label, seconds);
  }

  recordPrefixLookup(promptTokens: number, cachedTokens: number): void {
    this.prefixQueries.inc(this.label, promptTokens);
    this.prefixHits.inc(this.label, cachedTokens);
  }

  recordSuccess(r: SuccessRecord): void {
    this.successTotal.inc({ ...this.label, finish_reason: r.finishReason });
    this.promptTokensHist.observe(this.label, r.promptTokens);
    this.generationTokensHist.observe(this.label, r.generationTokens);
    this.promptTokensTotal.inc(this.label, r.promptTokens);
    this.generationTokensTotal.inc(this.label, r.generationTokens);
    this.e2e.observe(this.label, r.e2eSeconds);
  }
}
