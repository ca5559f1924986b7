// Picker metrics with prom-client. Names and labels follow the upstream EPP
// (pkg/epp/metrics: inference_objective_*, inference_pool_*) so its dashboards and our rollout
// gates read the same series; `pool` is added so several pickers can share one Prometheus.

import http from "node:http";
import { AddressInfo } from "node:net";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { SeriesCounter, SeriesHistogram } from "./series-metrics";

/** Seconds, from 1 ms up to an hour (long generations). */
export const latencyBuckets = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8,
  10, 15, 20, 30, 45, 60, 120, 180, 240, 300, 600, 1200, 3600,
];
/** Token counts, as upstream. */
export const inputTokenBuckets = [
  1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144,
  524288, 1048576,
];
export const outputTokenBuckets = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];
/** Decision latency: 10 µs to 100 ms. */
export const decisionBuckets = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

const requestLabels = ["model_name", "target_model_name", "pool"] as const;

export interface PoolGaugeValues {
  averageKvCacheUtilization: number;
  averageQueueSize: number;
  readyPods: number;
}

/** The per-request series of upstream's inference_objective_* (registered in this order). */
function requestMetrics(registers: Registry[]) {
  return {
    requests: new SeriesCounter(
      "inference_objective_request_total",
      "Counter of inference objective requests broken out for each model and target model.",
      registers,
    ),
    errors: new Counter({
      name: "inference_objective_request_error_total",
      help: "Counter of inference objective request errors broken out for each model, target model and error code.",
      labelNames: [...requestLabels, "error_code"],
      registers,
    }),
    duration: new SeriesHistogram(
      "inference_objective_request_duration_seconds",
      "Inference objective response latency distribution in seconds for each model and target model.",
      latencyBuckets,
      registers,
    ),
    ttft: new SeriesHistogram(
      "inference_objective_request_ttft_seconds",
      "Time from the request reaching the picker to the first response body byte, in seconds.",
      latencyBuckets,
      registers,
    ),
    inputTokens: new SeriesHistogram(
      "inference_objective_input_tokens",
      "Inference objective input token count distribution for requests in each model.",
      inputTokenBuckets,
      registers,
    ),
    outputTokens: new SeriesHistogram(
      "inference_objective_output_tokens",
      "Inference objective output token count distribution for requests in each model.",
      outputTokenBuckets,
      registers,
    ),
  };
}

/** Upstream's inference_pool_* gauges, read from `gauges` at scrape time. */
function registerPoolGauges(
  registers: Registry[],
  poolName: string,
  gauges: () => PoolGaugeValues,
): void {
  new Gauge({
    name: "inference_pool_average_kv_cache_utilization",
    help: "The average kv cache utilization for an inference server pool.",
    labelNames: ["name"],
    registers,
    collect() {
      this.set({ name: poolName }, gauges().averageKvCacheUtilization);
    },
  });
  new Gauge({
    name: "inference_pool_average_queue_size",
    help: "The average number of requests pending in the model server queue.",
    labelNames: ["name"],
    registers,
    collect() {
      this.set({ name: poolName }, gauges().averageQueueSize);
    },
  });
  new Gauge({
    name: "inference_pool_ready_pods",
    help: "The number of ready pods in the inference server pool.",
    labelNames: ["name"],
    registers,
    collect() {
      this.set({ name: poolName }, gauges().readyPods);
    },
  });
}

/** Flow control's queue: held now (gauge) and held since the start (counter), read at scrape time. */
function registerFlowMetrics(
  registers: Registry[],
  poolName: string,
  flow: () => { now: number; total: number },
): void {
  new Gauge({
    name: "modelrollout_picker_flow_queue_size",
    help: "Requests held by flow control until an endpoint has a free running slot.",
    labelNames: ["pool"],
    registers,
    collect() {
      this.set({ pool: poolName }, flow().now);
    },
  });
  new Counter({
    name: "modelrollout_picker_flow_held_total",
    help: "Requests flow control held because every endpoint was running all it can.",
    labelNames: ["pool"],
    registers,
    collect() {
      this.reset();
      this.inc({ pool: poolName }, flow().total);
    },
  });
}

/** Fast 429s since the start by reason (flow control, shedding, the overload guard), at scrape time. */
function registerRejectedMetric(
  registers: Registry[],
  poolName: string,
  rejected: () => ReadonlyMap<string, number>,
): void {
  new Counter({
    name: "modelrollout_picker_rejected_total",
    help: "Requests answered with a fast 429 instead of a place, by reason: queue-full, queue-timeout, displaced, sheddable-saturated, picker-overloaded.",
    labelNames: ["pool", "reason"],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of rejected()) this.inc({ pool: poolName, reason }, n);
    },
  });
}

export class PickerMetrics {
  readonly registry: Registry;
  // Updated on every request: own series (series-metrics.ts), printed as prom-client's.
  private readonly requests: SeriesCounter;
  private readonly duration: SeriesHistogram;
  private readonly ttft: SeriesHistogram;
  private readonly inputTokens: SeriesHistogram;
  private readonly outputTokens: SeriesHistogram;
  private readonly decision: SeriesHistogram;
  private readonly picks: SeriesCounter;
  private readonly errors: Counter<(typeof requestLabels)[number] | "error_code">;
  private readonly seriesByModel = new Map<string, RequestSeries>();
  private readonly picksByEndpoint = new Map<string, { inc(): void }>();
  private readonly decisionSeries: { observe(value: number): void };
  private flowQueue: () => { now: number; total: number } = () => ({ now: 0, total: 0 });
  private rejected: () => ReadonlyMap<string, number> = () => new Map();
  private poolGauges: () => PoolGaugeValues = () => ({
    averageKvCacheUtilization: 0,
    averageQueueSize: 0,
    readyPods: 0,
  });

  constructor(
    readonly poolName: string,
    options: { registry?: Registry; processMetrics?: boolean } = {},
  ) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    const registers = [registry];
    const request = requestMetrics(registers);
    this.requests = request.requests;
    this.errors = request.errors;
    this.duration = request.duration;
    this.ttft = request.ttft;
    this.inputTokens = request.inputTokens;
    this.outputTokens = request.outputTokens;
    registerPoolGauges(registers, poolName, () => this.poolGauges());
    this.decision = new SeriesHistogram(
      "modelrollout_picker_decision_seconds",
      "Time the picker spent choosing the target model and endpoint for one request.",
      decisionBuckets,
      registers,
    );
    this.picks = new SeriesCounter(
      "modelrollout_picker_endpoint_picks_total",
      "Requests the picker sent to each endpoint (ip:port).",
      registers,
    );
    this.decisionSeries = this.decision.labels({ pool: poolName });
    registerFlowMetrics(registers, poolName, () => this.flowQueue());
    registerRejectedMetric(registers, poolName, () => this.rejected());
    if (options.processMetrics) collectDefaultMetrics({ register: registry });
  }

  /** Flow control's queue: requests held now, and held since the start. */
  setFlowQueueSource(source: () => { now: number; total: number }): void {
    this.flowQueue = source;
  }

  /** Fast 429s since the start, by reason. */
  setRejectedSource(source: () => ReadonlyMap<string, number>): void {
    this.rejected = source;
  }

  setPoolGaugeSource(source: () => PoolGaugeValues): void {
    this.poolGauges = source;
  }

  private labels(model: string, target: string) {
    return { model_name: model, target_model_name: target, pool: this.poolName };
  }

  /**
   * The per-(model, target) series, bound once: spares prom-client's label-object checks on the
   * five or six updates of every request. As many entries as series prom-client keeps anyway.
   */
  private series(model: string, target: string): RequestSeries {
    const key = `${model}\u0000${target}`;
    let s = this.seriesByModel.get(key);
    if (!s) {
      const l = this.labels(model, target);
      s = {
        requests: this.requests.labels(l),
        duration: this.duration.labels(l),
        ttft: this.ttft.labels(l),
        inputTokens: this.inputTokens.labels(l),
        outputTokens: this.outputTokens.labels(l),
      };
      this.seriesByModel.set(key, s);
    }
    return s;
  }

  recordRequest(model: string, target: string): void {
    this.series(model, target).requests.inc();
  }

  recordError(model: string, target: string, code: string): void {
    this.errors.inc({ ...this.labels(model, target), error_code: code });
  }

  observeDuration(model: string, target: string, seconds: number): void {
    if (seconds >= 0) this.series(model, target).duration.observe(seconds);
  }

  observeTtft(model: string, target: string, seconds: number): void {
    if (seconds >= 0) this.series(model, target).ttft.observe(seconds);
  }

  observeTokens(model: string, target: string, input: number, output: number): void {
    const s = this.series(model, target);
    if (input > 0) s.inputTokens.observe(input);
    if (output > 0) s.outputTokens.observe(output);
  }

  observeDecision(seconds: number): void {
    this.decisionSeries.observe(seconds);
  }

  /**
   * Runs a decision and observes how long its synchronous part took: for a request that flow
   * control holds, the wait is not decision time.
   */
  timedDecision<T>(decide: () => T): T {
    const t0 = performance.now();
    const decision = decide();
    this.observeDecision((performance.now() - t0) / 1000);
    return decision;
  }

  recordPick(endpoint: string): void {
    let c = this.picksByEndpoint.get(endpoint);
    if (!c) {
      c = this.picks.labels({ pool: this.poolName, endpoint });
      this.picksByEndpoint.set(endpoint, c);
    }
    c.inc();
  }
}

interface RequestSeries {
  requests: { inc(): void };
  duration: { observe(value: number): void };
  ttft: { observe(value: number): void };
  inputTokens: { observe(value: number): void };
  outputTokens: { observe(value: number): void };
}

/** Averages over ready endpoints that have metrics, as the upstream pool gauges do. */
export function poolGaugeValues(
  endpoints: readonly { podName: string; metrics?: { kvCacheUsage: number; waiting: number } }[],
): PoolGaugeValues {
  const withMetrics = endpoints.filter(e => e.metrics);
  const n = withMetrics.length;
  const sum = (f: (m: { kvCacheUsage: number; waiting: number }) => number) =>
    withMetrics.reduce((acc, e) => acc + f(e.metrics!), 0);
  return {
    averageKvCacheUtilization: n ? sum(m => m.kvCacheUsage) / n : 0,
    averageQueueSize: n ? sum(m => m.waiting) / n : 0,
    readyPods: new Set(endpoints.map(e => e.podName)).size,
  };
}

export interface MetricsServer {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

/** Serves /metrics, /healthz (process alive) and /readyz (pool known and synced). */
export async function startMetricsServer(
  registry: Registry,
  isReady: () => boolean,
  port: number,
  host = "0.0.0.0",
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        text => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const ready = isReady();
      res
        .writeHead(ready ? 200 : 503, { "content-type": "text/plain" })
        .end(ready ? "ok\n" : "not ready\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>(resolve => server.close(() => resolve())),
  };
}
