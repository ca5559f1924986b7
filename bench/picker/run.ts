// Picker benchmark:
//   npx tsx bench/picker/run.ts [--quick] [--part a|b|c|d] [--scenario b1|b2|b3|b4] [--profile DIR]
//     [--paths bare,proxy,bare-extproc,extproc,bare-extproc-request,extproc-request] [--pin]
//     [--picker-flags "--stale-ms 2000 ..."]
//
// (a) What each front door adds: the same requests sent straight to a zero-latency simulator,
//     through a bare Node proxy (the reference hop), through the HTTP proxy, and through ext_proc
//     with Envoy's side played by a Go gRPC client (with and without the response phase), to the
//     picker and to a bare Node ext_proc server (the reference for that door) — one at
//     a time (no queueing), at 1,000 req/s (open loop), and with 64 in flight (highest
//     throughput). Rounds alternate the paths, so that background load on the machine hits them
//     alike.
// (b) Scheduling under load: four simulated pods that queue (max-num-seqs 2, TTFT and ITL set),
//     Poisson arrivals at 85-95 % of their capacity, streamed completions of mixed lengths; p95
//     latency and TTFT with the picker's scheduling versus round-robin versus random (same proxy,
//     same split, same arrivals and lengths: only the choice of endpoint differs); b4 with shared
//     prompt prefixes on pods that simulate a prefix cache.
// (c) Side by side (only with --part c): the picker, the upstream EPP v1.5.0 and lwepp v1.6.2 on
//     the same pool and load over ext_proc, at a ladder of rates (side-by-side.ts; --rates
//     1000,2000 for other rates, --rates none for only the 64-in-flight phase).
// (d) Graceful overload (only with --part d): the picker and the EPP at 1.5× and 2× the knee, on
//     pods that queue and on the picker's own CPU (overload.ts; --picker-cpu-limit 0.2: every
//     contender of the latter limited to 0.2 core, as a pod's limits.cpu).
// (e) Scheduling side by side (only with --part e [--rounds N] [--workload b1,b4] [--request-phase-only]): (b)'s queued pods and shared
//     prefixes through the picker, the upstream EPP and lwepp over ext_proc
//     (side-by-side-scheduling.ts).
//
// Runs on the local environment (started here when none runs, and stopped again then), in its
// own namespace, everything on loopback; every phase is bounded in requests and time.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ensureBinaries } from "../../hack/env/cluster";
import { ModelServer } from "../../hack/env/model-servers";
import { cpuTimes } from "../operator/procstat";
import { Strategy, strategies } from "./baselines";
import {
  Bench,
  PORT,
  RunningPicker,
  V1,
  V2,
  deployPods,
  metricSum,
  pageOf,
  pinToCpus,
  poolYaml,
  removePods,
  startBareServer,
  startPicker,
  closeBench,
  loadAverage,
  openBench,
  waitIdle,
  waitPickerReady,
} from "./env";
import {
  GoLoadPhase,
  GoLoadResult,
  GoLoadTarget,
  Sample,
  closedLoop,
  goLoad,
  keepAliveAgent,
  openLoop,
  post,
} from "./load";
import { partD } from "./overload";
import { partC } from "./side-by-side";
import { partE } from "./side-by-side-scheduling";
import {
  SharedPrefixes,
  sharedPrefixDocuments,
  outputLengths,
  sharedPrompts,
  workloadPickerFlags,
  workloadSimArgs,
} from "./side-by-side-workloads";
import { LatencySummary, ms, poissonArrivals, seededRandom, summarize } from "./stats";

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const quick = args.includes("--quick");
/**
 * (a) with the picker on a core of its own (CPU 1) and the load generator and the simulator on
 * another (CPU 0), as in a cluster where the picker's pod has its own CPU; default: all share.
 */
const pin = args.includes("--pin");
const parts = flag("--part") ?? "ab";
/** Part (c)'s ladder of rates, e.g. --rates 1000,2000; --rates none: only 64 in flight. */
const ratesArg = flag("--rates");
const rates =
  ratesArg === undefined ? undefined : ratesArg === "none" ? [] : ratesArg.split(",").map(Number);
const profileDir = flag("--profile");
/**
 * Replaces the picker's Node runtime flags (test/support/picker-process.ts), e.g. "" for Node's
 * defaults.
 */
const runtimeFlagsArg = flag("--picker-node-flags");
const runtimeFlags =
  runtimeFlagsArg === undefined ? undefined : runtimeFlagsArg.split(" ").filter(Boolean);
/**
 * Part (a) paths to run besides the direct one: bare, proxy, bare-extproc, extproc,
 * bare-extproc-request, extproc-request.
 */
const onlyPaths = flag("--paths")?.split(",");
/** Extra flags for every picker, e.g. --picker-flags "--stale-ms 2000". */
const pickerFlags = (flag("--picker-flags") ?? "").split(" ").filter(Boolean);
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

function pickerNodeArgs(name: string): string[] {
  if (!profileDir) return [];
  // One directory per picker and Node's default file names: with tsx the loader runs in a worker
  // thread that writes a profile too, and a fixed name would let it overwrite the main thread's.
  const dir = path.join(profileDir, name);
  fs.mkdirSync(dir, { recursive: true });
  return ["--cpu-prof", `--cpu-prof-dir=${dir}`];
}

// --- (a) front-door overhead ------------------------------------------------------------------

/** What the processes themselves saw during one path's 1,000 req/s phases. */
interface PhaseView {
  requests: number;
  pickerCpuSeconds: number;
  /** Of which in the kernel (system calls, loopback TCP). */
  pickerSystemSeconds: number;
  /** The reference server's CPU (the bare proxy or ext_proc server; its own paths), from /proc. */
  referenceCpuSeconds: number;
  referenceSystemSeconds: number;
  pickerGcPauses: number;
  pickerGcSeconds: number;
  /** Worst of the phases (the picker's prom-client event-loop monitor, reset at each scrape). */
  pickerLoopP99Ms: number;
  pickerLoopMaxMs: number;
  /** How late the load generator began to send requests (its own stalls), worst phase. */
  loadSendLateP99Ms: number;
  loadSendLateMaxMs: number;
}

const emptyView = (): PhaseView => ({
  requests: 0,
  pickerCpuSeconds: 0,
  pickerSystemSeconds: 0,
  referenceCpuSeconds: 0,
  referenceSystemSeconds: 0,
  pickerGcPauses: 0,
  pickerGcSeconds: 0,
  pickerLoopP99Ms: 0,
  pickerLoopMaxMs: 0,
  loadSendLateP99Ms: 0,
  loadSendLateMaxMs: 0,
});

/** prom-client's event-loop monitor in the picker samples every 10 ms (its default). */
const pickerLoopIntervalMs = 10;

/**
 * Runs one phase and adds what the picker (its /metrics: CPU, GC, event-loop delay), the path's
 * reference server if any (its CPU from /proc) and the load generator (how late it began to send) saw
 * meanwhile to `view`.
 */
async function observed(
  metricsUrl: string,
  view: PhaseView,
  requests: number,
  phase: () => Promise<GoLoadResult>,
  referencePid?: number,
): Promise<GoLoadResult> {
  const before = await pageOf(metricsUrl); // also resets the picker's event-loop histogram
  const referenceBefore = referencePid ? cpuTimes(referencePid) : undefined;
  const result = await phase();
  if (referencePid && referenceBefore) {
    const { user, system } = cpuTimes(referencePid);
    view.referenceCpuSeconds += user + system - referenceBefore.user - referenceBefore.system;
    view.referenceSystemSeconds += system - referenceBefore.system;
  }
  const after = await pageOf(metricsUrl);
  const diff = (name: string) => metricSum(after, name) - metricSum(before, name);
  view.requests += requests;
  view.pickerCpuSeconds += diff("process_cpu_seconds_total");
  view.pickerSystemSeconds += diff("process_cpu_system_seconds_total");
  view.pickerGcPauses += diff("nodejs_gc_duration_seconds_count");
  view.pickerGcSeconds += diff("nodejs_gc_duration_seconds_sum");
  // The monitor records the time between two ticks of a timer: the delay is what exceeds the
  // timer's interval (prom-client's default 10 ms).
  const worst = (name: string, current: number) =>
    Math.max(current, 1000 * metricSum(after, name) - pickerLoopIntervalMs);
  view.pickerLoopP99Ms = worst("nodejs_eventloop_lag_p99_seconds", view.pickerLoopP99Ms);
  view.pickerLoopMaxMs = worst("nodejs_eventloop_lag_max_seconds", view.pickerLoopMaxMs);
  view.loadSendLateP99Ms = Math.max(view.loadSendLateP99Ms, result.sendLateP99Ms);
  view.loadSendLateMaxMs = Math.max(view.loadSendLateMaxMs, result.sendLateMaxMs);
  return result;
}

interface DoorResult {
  door: string;
  view: PhaseView;
  single: LatencySummary;
  at1000: LatencySummary;
  /** p99 at 1,000 req/s of each round on its own (rounds alternate the paths). */
  p99ByRound: number[];
  failedAt1000: number;
  maxThroughput: number;
  maxThroughputFailed: number;
  maxThroughputP50: number;
}

interface PartA {
  doors: DoorResult[];
  decision: string;
  rounds: number;
  secondsAt1000: number;
  pinned: boolean;
}

async function partA(b: Bench): Promise<PartA> {
  const pool = "bench-a";
  const rate = 1000;
  const rounds = quick ? 1 : 3;
  const sliceSeconds = quick ? 3 : 4;
  const warmupMs = 500;
  const singleRequests = quick ? 300 : 500;
  const concurrency = 64;
  const throughputMs = quick ? 2000 : 4000;
  b.kubectl(["apply", "-f", "-"], poolYaml(pool, [90, 10]));
  // Pinned: this process (the load generator) and the simulator it starts on CPU 0, the picker
  // moved to CPU 1 once started.
  if (pin) pinToCpus(process.pid, "0");
  const [server] = await deployPods(b, pool, 1, { maxNumSeqs: 4096, ttftMs: 0, itlMs: 0 });
  const picker = await startPicker(
    b.info,
    b.namespace,
    pool,
    "picker",
    pickerNodeArgs("a"),
    pickerFlags,
    runtimeFlags,
  );
  if (pin) pinToCpus(picker.pid, "1");
  const wanted = (key: string) => key === "direct" || !onlyPaths || onlyPaths.includes(key);
  const upstream = `${server.podIP}:${PORT}`;
  const bare = wanted("bare") ? await startBareServer("proxy", upstream) : undefined;
  const bareExtProc =
    wanted("bare-extproc") || wanted("bare-extproc-request")
      ? await startBareServer("extproc", upstream)
      : undefined;
  if (pin)
    for (const reference of [bare, bareExtProc]) if (reference) pinToCpus(reference.pid, "1");
  const loadgen = ensureBinaries(log).loadgen;
  try {
    await waitPickerReady(picker, pool, 1);
    const prompt = "Plan a weekend in Lisbon with a day trip to Sintra.";
    const publicBody = { bodies: [completion("travel-helper")], weights: [1] };
    // Direct: the client splits 90/10 itself, so every path serves the same mix of adapters.
    const directBodies = { bodies: [completion(V1), completion(V2)], weights: [0.9, 0.1] };
    function completion(model: string): Buffer {
      return Buffer.from(JSON.stringify({ model, prompt, max_tokens: 1 }));
    }
    const extproc = (port: number, responsePhase: boolean): GoLoadTarget => ({
      kind: "extproc",
      addr: `127.0.0.1:${port}`,
      path: "/v1/completions",
      responsePhase,
    });
    const allDoors: {
      key: string;
      name: string;
      target: () => GoLoadTarget;
      bodies: typeof publicBody;
      referencePid?: number;
    }[] = [
      {
        key: "direct",
        name: "direct to the simulator (no picker)",
        target: () => ({ kind: "http", url: `${server.url}/v1/completions` }),
        bodies: directBodies,
      },
      {
        key: "bare",
        name: "bare Node proxy (reference: relays to the simulator, decides nothing)",
        target: () => ({ kind: "http", url: `http://127.0.0.1:${bare!.port}/v1/completions` }),
        bodies: directBodies,
        referencePid: bare?.pid,
      },
      {
        key: "proxy",
        name: "HTTP proxy",
        target: () => ({ kind: "http", url: `${picker.proxyUrl}/v1/completions` }),
        bodies: publicBody,
      },
      {
        key: "bare-extproc",
        name: "bare Node ext_proc server (reference: hands everything back, decides nothing), request and response phases",
        target: () => extproc(bareExtProc!.port, true),
        bodies: directBodies,
        referencePid: bareExtProc?.pid,
      },
      {
        key: "extproc",
        name: "ext_proc, request and response phases",
        target: () => extproc(picker.grpcPort, true),
        bodies: publicBody,
      },
      {
        key: "bare-extproc-request",
        name: "bare Node ext_proc server, request phase only",
        target: () => extproc(bareExtProc!.port, false),
        bodies: directBodies,
        referencePid: bareExtProc?.pid,
      },
      {
        key: "extproc-request",
        name: "ext_proc, request phase only",
        target: () => extproc(picker.grpcPort, false),
        bodies: publicBody,
      },
    ];
    // The direct path always runs: "added" is measured against it.
    const doors = allDoors.filter(d => wanted(d.key));
    const single = doors.map(() => [] as number[]);
    const open = doors.map(() => [] as Sample[]);
    const p99ByRound = doors.map(() => [] as number[]);
    const views = doors.map(emptyView);
    const run = (door: (typeof doors)[number], phase: GoLoadPhase, warmup?: number) =>
      goLoad(loadgen, door.target(), door.bodies, phase, warmup).then(r => {
        if (r.errors.length) log(`(a) ${door.name}: errors: ${r.errors.join("; ")}`);
        return r;
      });
    // A second of warm-up per path (itself the warm-up: no extra burst before it).
    for (const door of doors)
      await run(door, { phase: "closed", concurrency: 16, durationMs: 1000 }, 0);
    for (let round = 1; round <= rounds; round++) {
      for (const [i, door] of doors.entries()) {
        log(`(a) round ${round}/${rounds}, ${door.name}: one at a time, then ${rate} req/s`);
        const one = await run(door, { phase: "single", count: singleRequests });
        single[i].push(...one.samples.filter(s => s.status === 200).map(s => s.latencyMs));
        const count = rate * sliceSeconds;
        const r = await observed(
          picker.metricsUrl,
          views[i],
          count,
          // No warm-up burst inside the observed phase: its first 500 ms are not counted instead.
          () => run(door, { phase: "open", count, rate, maxInflight: 2000, drainMs: 10000 }, 0),
          door.referencePid,
        );
        const counted = r.samples.filter(s => s.offsetMs >= warmupMs);
        open[i].push(...counted);
        p99ByRound[i].push(
          summarize(counted.filter(s => s.status === 200).map(s => s.latencyMs)).p99,
        );
      }
    }
    const results: DoorResult[] = [];
    for (const [i, door] of doors.entries()) {
      log(`(a) ${door.name}: ${concurrency} in flight for ${throughputMs / 1000} s`);
      const max = await run(door, { phase: "closed", concurrency, durationMs: throughputMs });
      const ok = open[i].filter(s => s.status === 200);
      const maxOk = max.samples.filter(s => s.status === 200);
      results.push({
        door: door.name,
        view: views[i],
        single: summarize(single[i]),
        at1000: summarize(ok.map(s => s.latencyMs)),
        p99ByRound: p99ByRound[i],
        failedAt1000: open[i].length - ok.length,
        maxThroughput: maxOk.length / max.seconds,
        maxThroughputFailed: max.samples.length - maxOk.length,
        maxThroughputP50: summarize(maxOk.map(s => s.latencyMs)).p50,
      });
      log(`(a) ${door.name}: ${JSON.stringify(results[i])}`);
    }
    const page = await pageOf(picker.metricsUrl);
    const count = metricSum(page, "modelrollout_picker_decision_seconds_count");
    const sum = metricSum(page, "modelrollout_picker_decision_seconds_sum");
    const bucket = (le: string) =>
      metricSum(page, "modelrollout_picker_decision_seconds_bucket", `le="${le}"`);
    const decision =
      `The decision itself (parse, resolve, split, schedule, rewrite; the picker's ` +
      `\`modelrollout_picker_decision_seconds\`) over ${count} requests: mean ` +
      `${((sum / count) * 1e6).toFixed(0)} µs, ${((100 * bucket("0.0001")) / count).toFixed(1)} % ` +
      `under 100 µs, ${((100 * bucket("0.001")) / count).toFixed(2)} % under 1 ms.`;
    return { doors: results, decision, rounds, secondsAt1000: rounds * sliceSeconds, pinned: pin };
  } finally {
    await picker.stop();
    bare?.stop();
    bareExtProc?.stop();
    if (pin) pinToCpus(process.pid, `0-${os.cpus().length - 1}`);
  }
}

// --- (b) scheduling under load ----------------------------------------------------------------

interface Scenario {
  name: string;
  what: string;
  pods: number;
  maxNumSeqs: number;
  maxLoras: number;
  ttftMs: number;
  itlMs: number;
  /** Output lengths are exponential with this mean (at least 1, at most maxTokens). */
  meanTokens: number;
  maxTokens: number;
  weights: [number, number];
  /** Offered load as a share of the capacity measured before (all requests on one adapter). */
  load: number;
  /** Prompts that share long prefixes, on pods that simulate vLLM's prefix cache. */
  shared?: SharedPrefixes;
}

const baseScenario = {
  pods: 4,
  maxNumSeqs: 2,
  ttftMs: 40,
  itlMs: 8,
  meanTokens: 24,
  maxTokens: 256,
  weights: [90, 10] as [number, number],
  load: 0.9,
};

const scenarios: Scenario[] = [
  {
    ...baseScenario,
    name: "b1",
    what: "mixed output lengths, both adapters fit on every pod (max-loras 2), 85 % load",
    maxLoras: 2,
    load: 0.85,
  },
  {
    ...baseScenario,
    name: "b2",
    what: "the same at 95 % load",
    maxLoras: 2,
    load: 0.95,
  },
  {
    ...baseScenario,
    name: "b3",
    what: "one adapter slot per pod (max-loras 1, vLLM's default), 90 % load",
    maxLoras: 1,
    load: 0.9,
  },
  {
    ...baseScenario,
    name: "b4",
    what: "shared prompt prefixes on pods with a prefix cache that holds about half of them, 90 % load",
    maxLoras: 2,
    maxNumSeqs: 4,
    ttftMs: 0, // TTFT from the prefill model below
    load: 0.9,
    shared: sharedPrefixDocuments,
  },
];

interface StrategyResult {
  strategy: Strategy;
  latency: LatencySummary;
  ttft: LatencySummary;
  completed: number;
  failed: number;
  perPod: number[];
  /** Requests flow control held in the picker until a pod had a free slot. */
  held: number;
  /** Prompt tokens the pods found in their prefix caches, as a share of all prompt tokens. */
  prefixHitRate: number;
}

/** Prefix-cache hits and queries (tokens) summed over the pods. */
async function prefixCacheTokens(servers: ModelServer[]): Promise<[number, number]> {
  let hits = 0;
  let queries = 0;
  for (const s of servers) {
    const page = await pageOf(`${s.url}/metrics`);
    hits += metricSum(page, "vllm:prefix_cache_hits_total");
    queries += metricSum(page, "vllm:prefix_cache_queries_total");
  }
  return [hits, queries];
}

interface ScenarioResult {
  scenario: Scenario;
  rate: number;
  capacity: number;
  seconds: number;
  requests: number;
  results: StrategyResult[];
}

async function runStrategy(
  b: Bench,
  pool: string,
  servers: ModelServer[],
  strategy: Strategy,
  arrivals: number[],
  bodies: Buffer[],
  warmupMs: number,
  scenarioFlags: string[],
): Promise<StrategyResult> {
  await waitIdle(servers);
  const picker: RunningPicker = await startPicker(
    b.info,
    b.namespace,
    pool,
    strategy,
    pickerNodeArgs(`${pool}-${strategy}`),
    [...scenarioFlags, ...pickerFlags],
    runtimeFlags,
  );
  const agent = keepAliveAgent(512);
  try {
    await waitPickerReady(picker, pool, servers.length);
    const before = await pageOf(picker.metricsUrl);
    const cacheBefore = await prefixCacheTokens(servers);
    log(`(b) ${pool} ${strategy}: ${arrivals.length} requests`);
    const samples = await openLoop(
      arrivals,
      i => post(agent, `${picker.proxyUrl}/v1/completions`, bodies[i]),
      { maxInflight: 2000, drainTimeoutMs: 60000 },
    );
    const after = await pageOf(picker.metricsUrl);
    const cacheAfter = await prefixCacheTokens(servers);
    const measured = samples.filter(s => s.offsetMs >= warmupMs);
    const ok = measured.filter(s => s.status === 200);
    const picks = (s: ModelServer, page: string) =>
      metricSum(page, "modelrollout_picker_endpoint_picks_total", `endpoint="${s.podIP}:${PORT}"`);
    const result: StrategyResult = {
      strategy,
      latency: summarize(ok.map(s => s.latencyMs)),
      ttft: summarize(ok.map(s => s.ttftMs ?? NaN)),
      completed: ok.length,
      failed: measured.length - ok.length,
      perPod: servers.map(s => picks(s, after) - picks(s, before)),
      held:
        metricSum(after, "modelrollout_picker_flow_held_total") -
        metricSum(before, "modelrollout_picker_flow_held_total"),
      prefixHitRate: (cacheAfter[0] - cacheBefore[0]) / (cacheAfter[1] - cacheBefore[1] || 1),
    };
    log(`(b) ${pool} ${strategy}: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await agent.close();
    await picker.stop();
  }
}

function promptsFor(sc: Scenario, count: number, seed: number): string[] {
  if (sc.shared) return sharedPrompts(sc.shared, count, seed);
  return Array.from({ length: count }, (_, i) => `Request ${i}: suggest things to do in Porto.`);
}

function completionBody(model: string, prompt: string, tokens: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      model,
      prompt,
      max_tokens: tokens,
      ignore_eos: true,
      stream: true,
    }),
  );
}

/**
 * What the pods really serve on this machine (simulator timers and CPU included): every pod
 * kept full — its own closed loop with twice max-num-seqs in flight, one adapter — for a while.
 */
async function measureCapacity(servers: ModelServer[], sc: Scenario): Promise<number> {
  const agent = keepAliveAgent(256);
  const lengths = outputLengths(sc, 10_000, 5);
  const prompts = promptsFor(sc, 10_000, 6);
  try {
    const perPod = await Promise.all(
      servers.map(server =>
        closedLoop(
          i =>
            post(agent, `${server.url}/v1/completions`, completionBody(V1, prompts[i], lengths[i])),
          sc.maxNumSeqs * 2,
          quick ? 5000 : 10000,
        ),
      ),
    );
    return perPod.reduce((sum, r) => sum + r.completed / r.seconds, 0);
  } finally {
    await agent.close();
  }
}

async function runScenario(b: Bench, sc: Scenario): Promise<ScenarioResult> {
  const pool = `bench-${sc.name}`;
  const seconds = quick ? 10 : 30;
  const warmupMs = 3000;
  b.kubectl(["apply", "-f", "-"], poolYaml(pool, sc.weights));
  const sim = { ...sc, simArgs: workloadSimArgs(sc) };
  let servers = await deployPods(b, pool, sc.pods, sim);
  const results: StrategyResult[] = [];
  try {
    const capacity = await measureCapacity(servers, sc);
    const rate = Math.round(capacity * sc.load);
    log(`(b) ${pool}: ${sc.pods} pods serve ${capacity.toFixed(1)} req/s; offering ${rate} req/s`);
    // The same arrivals and lengths for every strategy.
    const arrivals = poissonArrivals(rate, seconds * 1000, seededRandom(2024));
    const lengths = outputLengths(sc, arrivals.length, 99);
    const prompts = promptsFor(sc, arrivals.length, 98);
    const bodies = lengths.map((n, i) => completionBody("travel-helper", prompts[i], n));
    for (const strategy of strategies) {
      if (sc.shared) {
        // Every strategy starts with empty prefix caches: fresh pods.
        await removePods(b, servers);
        servers = await deployPods(b, pool, sc.pods, sim);
      }
      results.push(
        await runStrategy(
          b,
          pool,
          servers,
          strategy,
          arrivals,
          bodies,
          warmupMs,
          workloadPickerFlags(sc),
        ),
      );
    }
    return { scenario: sc, rate, capacity, seconds, requests: arrivals.length, results };
  } finally {
    await removePods(b, servers);
  }
}

// --- Report -----------------------------------------------------------------------------------

function reportA(a: PartA): string {
  const [direct] = a.doors;
  const added = (d: DoorResult, f: (x: DoorResult) => number) =>
    d === direct ? "–" : `${ms(f(d) - f(direct))} ms`;
  const lines = [
    `One request at a time, then ${a.secondsAt1000} s at 1,000 req/s (open loop, latency from ` +
      `the intended send time; ${a.rounds} rounds alternating the paths), then 64 in flight; ` +
      `the load generator in Go (bench/loadgen, also Envoy's side of ext_proc). ` +
      `"Added" = the path's percentile minus the direct path's (round by round: of the same ` +
      `round, so that a stall of the machine in one round shows as such). ` +
      (a.pinned
        ? "Pinned (`--pin`): the picker alone on CPU 1; the load generator, the simulator (and " +
          "the Envoy stand-in) on CPU 0."
        : "All processes share the machine's cores."),
    "",
    "| path | one at a time p50 / p99 | added p50 / p99 | at 1,000 req/s p50 / p99 | added p50 / p99 | added p99 round by round | failed | highest throughput (64 in flight) |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const d of a.doors) {
    lines.push(
      `| ${d.door} | ${ms(d.single.p50)} / ${ms(d.single.p99)} ms | ` +
        `${added(d, x => x.single.p50)} / ${added(d, x => x.single.p99)} | ` +
        `${ms(d.at1000.p50)} / ${ms(d.at1000.p99)} ms | ` +
        `${added(d, x => x.at1000.p50)} / ${added(d, x => x.at1000.p99)} | ` +
        `${d === direct ? "–" : d.p99ByRound.map((p, k) => ms(p - direct.p99ByRound[k])).join(", ")} | ` +
        `${d.failedAt1000} | ` +
        `${d.maxThroughput.toFixed(0)} req/s (p50 ${ms(d.maxThroughputP50)} ms` +
        `${d.maxThroughputFailed ? `, ${d.maxThroughputFailed} failed` : ""}) |`,
    );
  }
  lines.push(
    "",
    "What the processes saw during the 1,000 req/s phases (the picker runs, and scrapes the " +
      "simulator every 50 ms, during the direct path's phases too; event-loop delay beyond the " +
      "sampling timer's interval, worst phase, from prom-client's monitor (10 ms); how late the " +
      "load generator began to send its requests, worst phase):",
    "",
    "| path | picker CPU per request (of it in the kernel) | picker GC pauses | picker GC time | picker event-loop delay p99 / max | load generator late to send p99 / max |",
    "|---|---|---|---|---|---|",
  );
  for (const d of a.doors) {
    const v = d.view;
    lines.push(
      `| ${d.door} | ${((1e6 * v.pickerCpuSeconds) / v.requests).toFixed(0)} µs ` +
        `(${((1e6 * v.pickerSystemSeconds) / v.requests).toFixed(0)} µs)` +
        (v.referenceCpuSeconds > 0
          ? `; the reference server: ${((1e6 * v.referenceCpuSeconds) / v.requests).toFixed(0)} µs ` +
            `(${((1e6 * v.referenceSystemSeconds) / v.requests).toFixed(0)} µs)`
          : "") +
        " | " +
        `${v.pickerGcPauses} | ${(1000 * v.pickerGcSeconds).toFixed(0)} ms | ` +
        `${ms(v.pickerLoopP99Ms)} / ${ms(v.pickerLoopMaxMs)} ms | ` +
        `${ms(v.loadSendLateP99Ms)} / ${ms(v.loadSendLateMaxMs)} ms |`,
    );
  }
  return `${lines.join("\n")}\n\n${a.decision}`;
}

const strategyNames: Record<Strategy, string> = {
  picker: "**picker** (defaults: flow control; capacity filter; queue, KV, prefix, LoRA scorers)",
  "queue-only": "queue scorer alone (join the shortest queue; reference)",
  "round-robin": "round-robin",
  random: "random",
};

function reportB(all: ScenarioResult[]): string {
  const lines: string[] = [];
  for (const r of all) {
    const s = r.scenario;
    const rr = r.results.find(x => x.strategy === "round-robin")!;
    const shared = s.shared;
    const sharedText = shared
      ? ` ${shared.groups} shared prefixes of ${shared.prefixWords} tokens chosen uniformly, ` +
        `each request one of them plus its own ${shared.questionWords}-token question; the pods ` +
        `simulate the prefix cache (\`--enable-kvcache\`, ${shared.kvCacheBlocks} blocks of 16 ` +
        `tokens each, about ${Math.floor((shared.kvCacheBlocks * 16) / shared.prefixWords)} ` +
        `prefixes) and prefill (TTFT = ${shared.prefillOverheadMs} ms + ` +
        `${shared.prefillPerTokenMs} ms per uncached prompt token); fresh pods for every ` +
        `scheduling, so every one starts with empty caches.`
      : "";
    lines.push(
      `**${s.name}** — ${s.what}: ${s.pods} pods × max-num-seqs ${s.maxNumSeqs}, ` +
        `${shared ? "" : `TTFT ${s.ttftMs} ms, `}ITL ${s.itlMs} ms; travel-helper split ` +
        `${s.weights[0]}/${s.weights[1]}; output lengths exponential, mean ${s.meanTokens} tokens ` +
        `(1–${s.maxTokens}), streamed; the pods served ${r.capacity.toFixed(1)} req/s when kept ` +
        `full, Poisson arrivals at ${r.rate} req/s (${((100 * r.rate) / r.capacity).toFixed(0)} %) ` +
        `for ${r.seconds} s (${r.requests} requests), the first 3 s not counted.${sharedText}`,
      "",
      "| scheduling | p50 latency | p95 latency | p99 latency | p50 TTFT | p95 TTFT | p95 latency vs round-robin | p95 TTFT vs round-robin | failed | requests per pod | held in the picker |" +
        (shared ? " prefix-cache hits (prompt tokens) |" : ""),
      "|---|---|---|---|---|---|---|---|---|---|---|" + (shared ? "---|" : ""),
    );
    for (const x of r.results) {
      lines.push(
        `| ${strategyNames[x.strategy]} | ` +
          `${ms(x.latency.p50)} ms | ${ms(x.latency.p95)} ms | ${ms(x.latency.p99)} ms | ` +
          `${ms(x.ttft.p50)} ms | ${ms(x.ttft.p95)} ms | ` +
          `${(x.latency.p95 / rr.latency.p95).toFixed(2)} × | ${(x.ttft.p95 / rr.ttft.p95).toFixed(2)} × | ` +
          `${x.failed} | ${x.perPod.join(" / ")} | ${x.held} |` +
          (shared ? ` ${(100 * x.prefixHitRate).toFixed(0)} % |` : ""),
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** What parts (c), (d) and (e) start their pickers with: the upstream binaries, the picker's flags. */
function sideBySide(part: string) {
  const bins = ensureBinaries(log);
  const { loadgen, epp, lwepp } = bins;
  return {
    quick,
    rates,
    log,
    loadgen,
    epp,
    lwepp,
    nodeArgs: pickerNodeArgs(part),
    pickerFlags,
    runtimeFlags,
  };
}

async function main(): Promise<void> {
  const { b, startedHere } = await openBench("picker-bench", msg => log(msg));
  const load = loadAverage;
  const started = new Date().toISOString();
  let output =
    `Picker benchmark, ${started}${quick ? " (--quick)" : ""}: ${os.cpus().length} × ` +
    `${os.cpus()[0]?.model ?? "CPU"}, Node ${process.version}; load average before ${load()}.\n`;
  try {
    if (parts.includes("a")) output += `\n#### (a) Front doors\n\n${reportA(await partA(b))}\n`;
    if (parts.includes("c")) {
      const side = await partC(b, sideBySide("c"));
      output += `\n#### (c) Side by side with the upstream EPP\n\n${side}\n`;
    }
    if (parts.includes("d")) {
      const cpuLimit = flag("--picker-cpu-limit");
      const overload = await partD(b, {
        ...sideBySide("d"),
        cpuLimit: cpuLimit ? Number(cpuLimit) : undefined,
      });
      output += `\n#### (d) Graceful overload, side by side with the upstream EPP\n\n${overload}\n`;
    }
    if (parts.includes("e")) {
      const scheduling = await partE(b, {
        ...sideBySide("e"),
        rounds: Number(flag("--rounds") ?? 3),
        workloads: flag("--workload")?.split(","),
        requestPhaseOnly: args.includes("--request-phase-only"),
      });
      output += `\n#### (e) Scheduling side by side with the upstream EPP\n\n${scheduling}\n`;
    }
    if (parts.includes("b")) {
      const results: ScenarioResult[] = [];
      const only = flag("--scenario");
      for (const sc of scenarios.filter(x => !only || x.name === only)) {
        results.push(await runScenario(b, sc));
      }
      output += `\n#### (b) Scheduling under load\n\n${reportB(results)}`;
    }
    output += `\nLoad average after: ${load()}.\n`;
    process.stdout.write(output);
    const file = path.join(b.info.logDir, `picker-bench-${started.replace(/[:.]/g, "-")}.md`);
    fs.writeFileSync(file, output);
    log(`results also in ${file}`);
  } finally {
    await closeBench(b, startedHere, msg => log(msg));
  }
}

main().catch(err => {
  process.stderr.write(`[bench] ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
