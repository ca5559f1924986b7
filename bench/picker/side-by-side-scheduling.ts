// Part (e), scheduling side by side (issue 19): part (b)'s queued pods (b1) and shared prefixes
// (b4) served by the picker (its defaults), the upstream EPP v1.5.0 (its default scorers: queue,
// KV-cache and prefix-cache) and lwepp v1.6.2 (round-robin, the reference), each over ext_proc
// with the Go load generator playing Envoy (both phases, or the request phase only; streamed
// answers, time to first byte),
// the same Poisson arrivals and bodies for all. Every run gets fresh pods (empty caches) and a
// fresh picker process; rounds rotate the pickers' order.

import { ModelServer } from "../../hack/env/model-servers";
import { Bench, deployPods, metricSum, pageOf, removePods, waitIdle, loadAverage } from "./env";
import { closedLoop, goLoad, keepAliveAgent, post } from "./load";
import { PickerKind } from "./side-by-side-report";
import {
  SidePicker,
  SidePickerOptions,
  startEpp,
  startLwepp,
  startOurs,
  v1PoolYaml,
} from "./side-by-side-pickers";
import {
  EppView,
  SchedulingRun,
  WorkloadResult,
  schedulingReport,
} from "./side-by-side-scheduling-report";
import {
  SchedulingWorkload,
  completionBody,
  outputLengths,
  prompts,
  requestsOf,
  schedulingWorkloads,
  workloadPickerFlags,
  workloadSimArgs,
} from "./side-by-side-workloads";

export interface PartEOptions extends SidePickerOptions {
  quick: boolean;
  rounds: number;
  /** Only these workloads (part (b)'s ids, b1 and b4); default both. */
  workloads?: string[];
  /** Without the response phase (Envoy's response headers and body SKIP); default with it. */
  requestPhaseOnly?: boolean;
  log: (message: string) => void;
}

const WARMUP_MS = 3000;
const kinds: PickerKind[] = ["picker", "epp", "lwepp"];

/** What the pods serve on this machine: each kept full on its own (part (b)'s measure). */
async function measureCapacity(
  servers: ModelServer[],
  w: SchedulingWorkload,
  quick: boolean,
): Promise<number> {
  const agent = keepAliveAgent(256);
  const lengths = outputLengths(w, 10_000, 5);
  const texts = prompts(w, 10_000, 6);
  try {
    const perPod = await Promise.all(
      servers.map(s =>
        closedLoop(
          i => post(agent, `${s.url}/v1/completions`, completionBody(texts[i], lengths[i])),
          w.maxNumSeqs * 2,
          quick ? 5000 : 10000,
        ),
      ),
    );
    return perPod.reduce((sum, r) => sum + r.completed / r.seconds, 0);
  } finally {
    await agent.close();
  }
}

interface PodCounters {
  answered: number[];
  hits: number;
  queries: number;
}

async function podCounters(servers: ModelServer[]): Promise<PodCounters> {
  const pages = await Promise.all(servers.map(s => pageOf(`${s.url}/metrics`)));
  const sum = (name: string) => pages.reduce((s, p) => s + metricSum(p, name), 0);
  return {
    answered: pages.map(p => metricSum(p, "vllm:request_success_total")),
    hits: sum("vllm:prefix_cache_hits_total"),
    queries: sum("vllm:prefix_cache_queries_total"),
  };
}

/** Samples the EPP's pool gauges every second until the returned function is called. */
function watchEpp(metricsUrl: string, pool: string): () => Promise<EppView> {
  const view: EppView = {
    queueMax: 0,
    runningMax: 0,
    kvMax: 0,
    prefixLookups: 0,
    prefixMatchMean: 0,
  };
  const label = `name="${pool}"`;
  const sample = async () => {
    const page = await pageOf(metricsUrl).catch(() => "");
    view.queueMax = Math.max(
      view.queueMax,
      metricSum(page, "inference_pool_average_queue_size", label),
    );
    view.runningMax = Math.max(
      view.runningMax,
      metricSum(page, "inference_pool_average_running_requests", label),
    );
    view.kvMax = Math.max(
      view.kvMax,
      metricSum(page, "inference_pool_average_kv_cache_utilization", label),
    );
    return page;
  };
  const timer = setInterval(() => void sample(), 1000);
  return async () => {
    clearInterval(timer);
    const page = await sample();
    view.prefixLookups = metricSum(page, "inference_extension_prefix_indexer_hit_ratio_count");
    view.prefixMatchMean =
      metricSum(page, "inference_extension_prefix_indexer_hit_ratio_sum") /
      (view.prefixLookups || NaN);
    return view;
  };
}

/** Requests the picker's flow control held so far; undefined for the upstream pickers. */
async function heldIn(p: SidePicker): Promise<number | undefined> {
  if (p.kind !== "picker" || !p.metricsUrl) return undefined;
  return metricSum(await pageOf(p.metricsUrl), "modelrollout_picker_flow_held_total");
}

function startKind(
  kind: PickerKind,
  b: Bench,
  pool: string,
  servers: ModelServer[],
  o: PartEOptions,
  w: SchedulingWorkload,
): Promise<SidePicker> {
  if (kind === "picker") {
    const flags = [...workloadPickerFlags(w), ...o.pickerFlags];
    return startOurs(b, pool, servers.length, { ...o, pickerFlags: flags });
  }
  if (kind === "epp") return startEpp(b.info, b.namespace, pool, servers.length, o.epp);
  return startLwepp(b.info, b.namespace, pool, servers, o);
}

/** One picker, one round: fresh pods, the picker started, the arrivals sent, the pods read. */
async function runOne(
  b: Bench,
  pool: string,
  w: SchedulingWorkload,
  o: PartEOptions,
  kind: PickerKind,
  round: number,
  requests: { arrivalsMs: number[]; bodies: Buffer[] },
): Promise<SchedulingRun> {
  const sim = { ...w, simArgs: workloadSimArgs(w) };
  const servers = await deployPods(b, pool, w.pods, sim);
  let picker: SidePicker | undefined;
  try {
    picker = await startKind(kind, b, pool, servers, o, w);
    await waitIdle(servers); // lwepp's readiness probes have drained
    const before = await podCounters(servers);
    const heldBefore = await heldIn(picker);
    const stopWatching =
      kind === "epp" && picker.metricsUrl ? watchEpp(picker.metricsUrl, pool) : undefined;
    const target = {
      kind: "extproc" as const,
      addr: `127.0.0.1:${picker.grpcPort}`,
      path: "/v1/completions",
      responsePhase: !o.requestPhaseOnly,
    };
    const phase = {
      phase: "open" as const,
      arrivalsMs: requests.arrivalsMs,
      maxInflight: 2000,
      drainMs: 60_000,
      timeoutMs: 60_000,
    };
    const result = await goLoad(o.loadgen, target, { bodies: requests.bodies }, phase, 0);
    const epp = await stopWatching?.();
    const after = await podCounters(servers);
    const heldAfter = await heldIn(picker);
    if (result.errors.length) o.log(`(e) ${w.name} ${kind}: errors: ${result.errors.join("; ")}`);
    const measured = result.samples.filter(s => s.offsetMs >= WARMUP_MS);
    const ok = measured.filter(s => s.status === 200);
    return {
      kind,
      round,
      latenciesMs: ok.map(s => s.latencyMs),
      ttftsMs: ok.flatMap(s => (s.ttftMs === undefined ? [] : [s.ttftMs])),
      measured: measured.length,
      failed: measured.length - ok.length,
      perPod: after.answered.map((n, i) => n - before.answered[i]),
      prefixHits: after.hits - before.hits,
      prefixQueries: after.queries - before.queries,
      held: heldAfter === undefined ? undefined : heldAfter - (heldBefore ?? 0),
      epp,
    };
  } finally {
    await picker?.stop();
    await removePods(b, servers);
  }
}

async function runWorkload(
  b: Bench,
  w: SchedulingWorkload,
  o: PartEOptions,
  index: number,
): Promise<WorkloadResult> {
  const pool = `bench-e${index}`;
  const seconds = o.quick ? 10 : 30;
  b.kubectl(["apply", "-f", "-"], v1PoolYaml(pool));
  try {
    const sim = { ...w, simArgs: workloadSimArgs(w) };
    const probe = await deployPods(b, pool, w.pods, sim);
    let capacity: number;
    try {
      capacity = await measureCapacity(probe, w, o.quick);
    } finally {
      await removePods(b, probe);
    }
    const rate = Math.round(capacity * w.load);
    const requests = requestsOf(w, rate, seconds);
    o.log(`(e) ${w.name}: the pods serve ${capacity.toFixed(1)} req/s; offering ${rate} req/s`);
    const runs: SchedulingRun[] = [];
    for (let round = 0; round < o.rounds; round++) {
      for (const kind of [...kinds.slice(round % 3), ...kinds.slice(0, round % 3)]) {
        o.log(`(e) ${w.name}, round ${round + 1}/${o.rounds}: ${kind}`);
        const run = await runOne(b, pool, w, o, kind, round, requests);
        o.log(
          `(e) ${w.name} ${kind}: ${JSON.stringify({ ...run, latenciesMs: undefined, ttftsMs: undefined })}`,
        );
        runs.push(run);
      }
    }
    const header = { name: w.name, what: w.what, capacity, rate, seconds };
    return { ...header, requests: requests.arrivalsMs.length, runs };
  } finally {
    b.kubectl(["delete", "inferencepools.inference.networking.k8s.io", pool, "--ignore-not-found"]);
  }
}

export async function partE(b: Bench, o: PartEOptions): Promise<string> {
  const before = loadAverage();
  const results: WorkloadResult[] = [];
  for (const [i, w] of schedulingWorkloads.entries()) {
    if (!o.workloads || o.workloads.includes(w.id)) results.push(await runWorkload(b, w, o, i + 1));
  }
  const header =
    `The picker (its defaults; on the shared prefixes told the pods' cache size, as in part (b)), ` +
    `the upstream EPP v1.5.0 (\`cmd/epp\`, its default scorers, \`--v=1\`) and lwepp v1.6.2 ` +
    `(\`cmd/lwepp\`, round-robin) one at a time on a v1 InferencePool of fresh simulated pods; the ` +
    `Go load generator plays Envoy's side of ext_proc (FULL_DUPLEX_STREAMED, ` +
    `${o.requestPhaseOnly ? "the request phase only" : "request and response phases"}), sends the same Poisson arrivals and bodies (streamed completions with a \`prompt\`) ` +
    `to each and counts latency and TTFT (the first byte of the pod's answer as Envoy sees it) from ` +
    `the intended send time; the first ${WARMUP_MS / 1000} s are not counted. Rounds rotate the ` +
    `pickers' order. Prefix-cache share: \`vllm:prefix_cache_hits_total\` ÷ \`…_queries_total\` ` +
    `over the pods. Load average before ${before}, after ${loadAverage()}.`;
  return schedulingReport(results, header);
}
