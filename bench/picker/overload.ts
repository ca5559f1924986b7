// Part (d), graceful overload (issue 19): the picker and the upstream EPP v1.5.0 side by side past
// capacity, through the Go load generator playing Envoy's side of ext_proc (bench/loadgen).
// Half the requests are sheddable: they name, by the x-gateway-inference-objective header, an
// InferenceObjective with priority -1, which both pickers read. Two workloads:
//   pods   — pods that queue (max-num-seqs 2, TTFT and ITL set, as part (b)): the knee is what
//            the pods serve when kept full; then open-loop arrivals at 1.5× and 2× of it.
//   picker — the picker's own CPU: pods that answer at once (as part (c)); the knee is the
//            picker's throughput with 64 in flight; then 1.5× and 2× of it.
// The two pickers alternate, the order rotated per round.

import * as path from "node:path";
import { ModelServer } from "../../hack/env/model-servers";
import { waitFor } from "../../hack/env/procs";
import { startPickerProcess } from "../../test/support/picker-process";
import {
  Bench,
  deployPods,
  limitCpu,
  metricSum,
  pageOf,
  removePods,
  waitIdle,
  loadAverage,
} from "./env";
import { GoLoadPhase, GoLoadResult, GoLoadTarget, goLoad } from "./load";
import { Contender, OverloadRecord, OverloadSample, overloadTable } from "./overload-report";
import { SidePickerOptions, startEpp, v1PoolYaml } from "./side-by-side-pickers";

export interface PartDOptions extends Omit<SidePickerOptions, "lwepp"> {
  quick: boolean;
  /**
   * The picker workload with every contender limited to this many cores (a CFS quota, as a pod's
   * `limits.cpu`): their own CPU, not the machine's, is then the limit.
   */
  cpuLimit?: number;
  log: (message: string) => void;
}

interface Running {
  contender: Contender;
  grpcPort: number;
  pid: number;
  /** The picker's /metrics (its flow-control queue); the EPP holds nothing (flow control off). */
  metricsUrl?: string;
  stop(): Promise<void>;
}

interface Workload {
  name: "pods" | "picker";
  what: string;
  sim: { maxNumSeqs: number; ttftMs: number; itlMs: number };
  pods: number;
  bodies: { bodies: Buffer[]; weights: number[] };
  /** The picker's flags for these pods (what an operator would set). */
  pickerFlags: string[];
  /** Also a picker with its overload guard off, to tell what the guard does. */
  unguarded: boolean;
}

const SHEDDABLE_OBJECTIVE = "batch";
const sheddableHeaders = { "x-gateway-inference-objective": SHEDDABLE_OBJECTIVE };
const multiples = [1.5, 2];

const body = (tokens: number) =>
  Buffer.from(
    JSON.stringify({
      model: "mymodel",
      prompt: "Suggest things to do in Porto.",
      max_tokens: tokens,
      ignore_eos: true,
    }),
  );

const workloads: Workload[] = [
  {
    name: "pods",
    what: "4 pods that queue (max-num-seqs 2, TTFT 40 ms, ITL 8 ms; 4, 16 or 64 output tokens)",
    sim: { maxNumSeqs: 2, ttftMs: 40, itlMs: 8 },
    pods: 4,
    bodies: { bodies: [body(4), body(16), body(64)], weights: [0.4, 0.4, 0.2] },
    pickerFlags: ["--max-running", "2"],
    unguarded: false,
  },
  {
    name: "picker",
    what: "3 pods that answer at once (one output token): the picker's own CPU is the limit",
    sim: { maxNumSeqs: 4096, ttftMs: 0, itlMs: 0 },
    pods: 3,
    bodies: { bodies: [body(1)], weights: [1] },
    pickerFlags: [],
    unguarded: true,
  },
];

function objectiveYaml(pool: string): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: ${SHEDDABLE_OBJECTIVE}}
spec:
  priority: -1
  poolRef: {name: ${pool}}
`;
}

async function startOurs(
  b: Bench,
  pool: string,
  w: Workload,
  o: PartDOptions,
  contender: "picker" | "unguarded",
): Promise<Running> {
  const off = contender === "unguarded" ? ["--overload-loop-delay-ms", "0"] : [];
  const logFile = path.join(b.info.logDir, `picker-bench-${pool}-${contender}.log`);
  const p = await startPickerProcess({
    pool,
    namespace: b.namespace,
    kubeconfig: b.info.kubeconfig,
    nodeArgs: o.nodeArgs,
    runtimeFlags: o.runtimeFlags,
    args: [...w.pickerFlags, ...off, ...o.pickerFlags],
    bundled: true, // as the image runs it (picker/Dockerfile)
    logFile,
  });
  const ours = { ...p, metricsUrl: `${p.metricsBaseUrl}/metrics`, logFile };
  await waitFor(
    `the picker to see the ${w.pods} pods of ${pool}`,
    async () =>
      metricSum(await pageOf(ours.metricsUrl), "inference_pool_ready_pods", `name="${pool}"`) ===
      w.pods,
    30_000,
    `see ${ours.logFile}`,
  ).catch(async err => {
    await ours.stop();
    throw err;
  });
  return {
    contender,
    grpcPort: ours.grpcPort!,
    pid: ours.pid,
    metricsUrl: ours.metricsUrl,
    stop: ours.stop,
  };
}

async function startContenders(
  b: Bench,
  pool: string,
  w: Workload,
  o: PartDOptions,
): Promise<Running[]> {
  const started: Running[] = [];
  try {
    started.push(await startOurs(b, pool, w, o, "picker"));
    if (w.unguarded) started.push(await startOurs(b, pool, w, o, "unguarded"));
    const epp = await startEpp(b.info, b.namespace, pool, w.pods, o.epp);
    started.push({ contender: "epp", grpcPort: epp.grpcPort, pid: epp.pid, stop: epp.stop });
    return started;
  } catch (err) {
    for (const r of started) await r.stop();
    throw err;
  }
}

const target = (r: Running, responsePhase = true): GoLoadTarget => ({
  kind: "extproc",
  addr: `127.0.0.1:${r.grpcPort}`,
  path: "/v1/completions",
  responsePhase,
});

/** The pods kept full, each by its own closed loop with twice max-num-seqs in flight (req/s). */
async function podsKnee(o: PartDOptions, w: Workload, servers: ModelServer[]): Promise<number> {
  const durationMs = o.quick ? 5000 : 10_000;
  const results = await Promise.all(
    servers.map(s =>
      goLoad(
        o.loadgen,
        { kind: "http", url: `${s.url}/v1/completions` },
        w.bodies,
        { phase: "closed", concurrency: 2 * w.sim.maxNumSeqs, durationMs },
        0,
      ),
    ),
  );
  await waitIdle(servers);
  return results.reduce((sum, r) => sum + ok(r) / r.seconds, 0);
}

/** The picker's throughput with 64 in flight (part (c)'s knee), request phase only (req/s). */
async function pickerKnee(o: PartDOptions, w: Workload, picker: Running): Promise<number> {
  const phase = { phase: "closed", concurrency: 64, durationMs: o.quick ? 3000 : 5000 } as const;
  const r = await goLoad(o.loadgen, target(picker, false), w.bodies, phase);
  return ok(r) / r.seconds;
}

const ok = (r: GoLoadResult) => r.samples.filter(s => s.status === 200).length;

/** Samples, until stopped, the most requests held by the picker and waiting in the pods. */
function sampleWaiting(r: Running, servers: ModelServer[]): () => Promise<[number, number]> {
  let held = r.metricsUrl ? 0 : NaN;
  let podWaiting = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const pages = await Promise.all(servers.map(s => pageOf(`${s.url}/metrics`).catch(() => "")));
      podWaiting = Math.max(
        podWaiting,
        pages.reduce((sum, p) => sum + metricSum(p, "vllm:num_requests_waiting"), 0),
      );
      if (r.metricsUrl) {
        const page = await pageOf(r.metricsUrl).catch(() => "");
        held = Math.max(held, metricSum(page, "modelrollout_picker_flow_queue_size"));
      }
      await new Promise(resolve => setTimeout(resolve, 200)); // the sampling period
    }
  })();
  return async () => {
    running = false;
    await loop;
    return [held, podWaiting];
  };
}

const samplesOf = (r: GoLoadResult): OverloadSample[] =>
  r.samples.map(s => ({ status: s.status, latencyMs: s.latencyMs }));

/** One open-loop phase at `rate` (half critical, half sheddable, each at rate / 2). */
async function overloadPhase(
  o: PartDOptions,
  w: Workload,
  r: Running,
  servers: ModelServer[],
  rate: number,
  into: OverloadRecord,
): Promise<void> {
  const seconds = o.quick ? (w.name === "pods" ? 10 : 4) : w.name === "pods" ? 30 : 8;
  const phase: GoLoadPhase = {
    phase: "open",
    count: Math.round((rate / 2) * seconds),
    rate: rate / 2,
    maxInflight: 2000,
    drainMs: 30_000,
  };
  const extra = { timeoutMs: 30_000 };
  const stopSampling = sampleWaiting(r, servers);
  const [critical, sheddable] = await Promise.all([
    goLoad(o.loadgen, target(r), w.bodies, phase, 0, extra),
    goLoad(o.loadgen, target(r), w.bodies, phase, 0, { ...extra, headers: sheddableHeaders }),
  ]);
  const [held, podWaiting] = await stopSampling();
  into.critical.push(...samplesOf(critical));
  into.sheddable.push(...samplesOf(sheddable));
  into.unsent += critical.unsent + sheddable.unsent;
  into.seconds += Math.max(critical.seconds, sheddable.seconds);
  into.mostHeld = Math.max(into.mostHeld, held);
  into.mostPodWaiting = Math.max(into.mostPodWaiting, podWaiting);
  o.log(
    `(d) ${w.name}: ${r.contender} at ${rate.toFixed(0)} req/s: ` +
      `${ok(critical) + ok(sheddable)} answered 200 in ${Math.max(critical.seconds, sheddable.seconds).toFixed(1)} s; ` +
      `errors: ${[...critical.errors, ...sheddable.errors].slice(0, 3).join("; ")}`,
  );
  await waitIdle(servers);
}

async function runWorkload(b: Bench, o: PartDOptions, w: Workload): Promise<string> {
  const pool = `bench-d-${w.name}`;
  b.kubectl(["apply", "-f", "-"], v1PoolYaml(pool) + "---" + objectiveYaml(pool));
  const servers = await deployPods(b, pool, w.pods, w.sim);
  let running: Running[] = [];
  const limited = w.name === "picker" && o.cpuLimit ? o.cpuLimit : undefined;
  const unlimit: (() => void)[] = [];
  try {
    running = await startContenders(b, pool, w, o);
    if (limited) for (const r of running) unlimit.push(limitCpu(r.pid, limited));
    const knee =
      w.name === "pods" ? await podsKnee(o, w, servers) : await pickerKnee(o, w, running[0]);
    o.log(`(d) ${w.name}: knee ${knee.toFixed(1)} req/s`);
    const records = new Map<string, OverloadRecord>();
    const rounds = o.quick ? 1 : 3;
    for (let round = 0; round < rounds; round++) {
      for (const m of multiples) {
        const order = rotated(running, round);
        for (const r of order) {
          const key = `${r.contender}@${m}`;
          const record = records.get(key) ?? emptyRecord(r.contender, m, m * knee);
          records.set(key, record);
          await overloadPhase(o, w, r, servers, m * knee, record);
        }
      }
    }
    const ordered = multiples.flatMap(m => running.map(r => records.get(`${r.contender}@${m}`)!));
    return (
      `**${w.name === "pods" ? "Past the pods' capacity" : "Past the picker's own CPU"}**: ${w.what}; ` +
      `knee ${knee.toFixed(1)} req/s (${w.name === "pods" ? "the pods kept full, straight" : "the picker with 64 in flight, request phase"}); ${rounds} round(s)` +
      (limited
        ? `; every contender limited to ${limited} core(s) (a CFS quota, as a pod's limits.cpu, set after it started)`
        : "") +
      ".\n\n" +
      overloadTable(ordered)
    );
  } finally {
    for (const undo of unlimit) undo();
    for (const r of running) await r.stop();
    await removePods(b, servers);
    b.kubectl([
      "delete",
      "inferencepools.inference.networking.k8s.io,inferenceobjectives.inference.networking.x-k8s.io",
      pool,
      SHEDDABLE_OBJECTIVE,
      "--ignore-not-found",
    ]);
  }
}

/** Rotates the contenders by `k`: each round starts with another one. */
function rotated<T>(list: T[], k: number): T[] {
  const n = k % list.length;
  return [...list.slice(n), ...list.slice(0, n)];
}

function emptyRecord(contender: Contender, multiple: number, rate: number): OverloadRecord {
  return {
    contender,
    multiple,
    rate,
    critical: [],
    sheddable: [],
    unsent: 0,
    seconds: 0,
    mostHeld: contender === "epp" ? NaN : 0,
    mostPodWaiting: 0,
  };
}

export async function partD(b: Bench, o: PartDOptions): Promise<string> {
  const before = loadAverage();
  const sections: string[] = [];
  for (const w of workloads) sections.push(await runWorkload(b, o, w));
  return (
    `The picker and the upstream EPP v1.5.0 (\`cmd/epp\`, its defaults: flow control off, ` +
    `legacy admission — a sheddable request gets 429 when the pool is saturated, others go to ` +
    `the pods' queues), both phases over ext_proc (the Go load generator as Envoy), open loop: ` +
    `half the requests critical, half sheddable (InferenceObjective priority -1 by ` +
    `\`x-gateway-inference-objective\`), each half at half the rate. Latencies from the ` +
    `intended send time; a request not answered within 30 s failed; unsent: 2,000 in flight ` +
    `per half. Goodput: requests answered 200 ÷ the phases' time (sending and draining). ` +
    `Load average before ${before}, after ${loadAverage()}.\n\n` +
    sections.join("\n\n")
  );
}
