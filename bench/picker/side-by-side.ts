// Part (c), side by side (issue 19): the picker, the upstream EPP v1.5.0 and lwepp v1.6.2 on the
// same pool of 3 simulated pods that answer at once, under the same Go load generator playing
// Envoy's side of ext_proc (bench/loadgen), with the request phase only and with both phases. All
// three run at once (each scraping the pods as it does, lwepp scraping nothing); rounds alternate
// the paths at every rate of a ladder, so that background load hits them alike.

import os from "node:os";
import { cpuTimes } from "../operator/procstat";
import { delay } from "../../hack/env/procs";
import { Bench, deployPods, removePods, loadAverage, pinToCpus } from "./env";
import { GoLoadPhase, GoLoadResult, GoLoadTarget, goLoad } from "./load";
import {
  PathRecord,
  Phases,
  PickerKind,
  PickerRecord,
  RateRecord,
  SideBySide,
  sideBySideReport,
} from "./side-by-side-report";
import {
  SidePicker,
  SidePickerOptions,
  memoryOf,
  sampleRss,
  startSidePickers,
  v1PoolYaml,
} from "./side-by-side-pickers";

export interface PartCOptions extends SidePickerOptions {
  quick: boolean;
  /** The ladder of rates instead of the default one. */
  rates?: number[];
  log: (message: string) => void;
}

interface Setup {
  rates: number[];
  rounds: number;
  sliceSeconds: number;
  throughputMs: number;
  idleSeconds: number;
  /** The first part of every open phase is not counted (connections, the picker's warm-up). */
  warmupMs: number;
}

function setupOf(quick: boolean, rates?: number[]): Setup {
  return {
    rates: rates ?? [250, 500, 1000, 1500, 2000, 3000],
    rounds: 3,
    sliceSeconds: quick ? 2 : 4,
    throughputMs: quick ? 2000 : 4000,
    idleSeconds: 10,
    warmupMs: 500,
  };
}

/** A path of the comparison: a picker with or without the response phase, or straight to a pod. */
interface Path {
  name: string;
  target: GoLoadTarget;
  picker?: SidePicker;
  record?: PathRecord;
  direct?: Map<number, RateRecord>;
}

const names: Record<PickerKind, string> = {
  picker: "picker",
  epp: "upstream EPP v1.5.0",
  lwepp: "lwepp v1.6.2",
};

function pathsOf(pickers: SidePicker[], directUrl: string): Path[] {
  const paths: Path[] = [
    { name: "direct", target: { kind: "http", url: directUrl }, direct: new Map() },
  ];
  for (const phases of ["request", "both"] as Phases[]) {
    for (const picker of pickers) {
      paths.push({
        name: `${names[picker.kind]}, ${phases === "both" ? "both phases" : "request phase"}`,
        target: {
          kind: "extproc",
          addr: `127.0.0.1:${picker.grpcPort}`,
          path: "/v1/completions",
          responsePhase: phases === "both",
        },
        picker,
        record: {
          kind: picker.kind,
          phases,
          byRate: new Map(),
          throughput: [],
          coresAt64: [],
          oneCoreDecisions: [],
          rssMiB: [],
        },
      });
    }
  }
  return paths;
}

const body = {
  bodies: [Buffer.from(JSON.stringify({ model: "mymodel", prompt: "Hi there", max_tokens: 1 }))],
  weights: [1],
};

/** Runs one phase on a path, with the picker's CPU (from /proc) and RSS samples meanwhile. */
async function observedPhase(
  o: PartCOptions,
  path: Path,
  phase: GoLoadPhase,
  oneCore?: { loadgenCpus: string },
): Promise<{ result: GoLoadResult; cpuSeconds: number; seconds: number }> {
  const pid = path.picker?.pid;
  const stopSampling = pid ? sampleRss(pid) : () => [];
  const before = pid ? cpuTimes(pid) : undefined;
  const started = performance.now();
  const target: GoLoadTarget =
    oneCore && path.target.kind === "extproc"
      ? { ...path.target, decisionOnly: true }
      : path.target;
  const result = await goLoad(o.loadgen, target, body, phase, 0, {}, oneCore?.loadgenCpus);
  const after = pid ? cpuTimes(pid) : undefined;
  path.record?.rssMiB.push(...stopSampling());
  if (result.errors.length) o.log(`(c) ${path.name}: errors: ${result.errors.join("; ")}`);
  const cpuSeconds = before && after ? after.user + after.system - before.user - before.system : 0;
  return { result, cpuSeconds, seconds: (performance.now() - started) / 1000 };
}

async function ratePhase(o: PartCOptions, s: Setup, path: Path, rate: number): Promise<void> {
  const count = Math.round(rate * s.sliceSeconds);
  const { result, cpuSeconds, seconds } = await observedPhase(o, path, {
    phase: "open",
    count,
    rate,
    maxInflight: 2000,
    drainMs: 5000,
  });
  const byRate = path.record?.byRate ?? path.direct!;
  const r = byRate.get(rate) ?? {
    latenciesMs: [],
    requests: 0,
    unsent: 0,
    failed: 0,
    cpuSeconds: 0,
    seconds: 0,
  };
  const ok = result.samples.filter(x => x.status === 200);
  r.latenciesMs.push(...ok.filter(x => x.offsetMs >= s.warmupMs).map(x => x.latencyMs));
  r.requests += result.samples.length;
  r.unsent += result.unsent;
  r.failed += result.samples.length - ok.length - result.unsent;
  r.cpuSeconds += cpuSeconds;
  r.seconds += seconds;
  byRate.set(rate, r);
}

/**
 * Each picker's own ceiling: decisions only (nothing goes to the pods), the picker under test
 * alone on CPU 1, the load generator and the other pickers on CPU 0 — with 64 in flight, the
 * picker and not the load generator or the pods sets the pace. Request phase only (the response
 * phase needs a request to the pod).
 */
async function oneCoreDecisions(
  o: PartCOptions,
  s: Setup,
  paths: Path[],
  pickers: SidePicker[],
  round: number,
): Promise<void> {
  const all = `0-${os.cpus().length - 1}`;
  for (const path of rotated(
    paths.filter(p => p.record?.phases === "request"),
    round,
  )) {
    o.log(`(c) round ${round + 1}/${s.rounds}: ${path.name}, alone on one core, decisions only`);
    for (const p of pickers) pinToCpus(p.pid, p === path.picker ? "1" : "0");
    try {
      const phase = { phase: "closed", concurrency: 64, durationMs: s.throughputMs } as const;
      const { result } = await observedPhase(o, path, phase, { loadgenCpus: "0" });
      const ok = result.samples.filter(x => x.status === 200).length;
      path.record?.oneCoreDecisions.push(ok / result.seconds);
    } finally {
      for (const p of pickers) pinToCpus(p.pid, all);
    }
  }
}

/** CPU of every picker over a window without requests (the pods scraped as usual), ms per s. */
async function idleCpu(pickers: SidePicker[], seconds: number): Promise<number[]> {
  const total = (pid: number) => {
    const t = cpuTimes(pid);
    return t.user + t.system;
  };
  const before = pickers.map(p => total(p.pid));
  await delay(seconds * 1000); // the measurement window itself
  return pickers.map((p, i) => (1000 * (total(p.pid) - before[i])) / seconds);
}

/** Rotates the paths by `k`: each round starts with another one. */
function rotated<T>(list: T[], k: number): T[] {
  const n = k % list.length;
  return [...list.slice(n), ...list.slice(0, n)];
}

async function measure(
  o: PartCOptions,
  s: Setup,
  pickers: SidePicker[],
  directUrl: string,
): Promise<SideBySide> {
  const paths = pathsOf(pickers, directUrl);
  for (const path of paths) {
    o.log(`(c) warm-up: ${path.name}`);
    await goLoad(
      o.loadgen,
      path.target,
      body,
      { phase: "closed", concurrency: 16, durationMs: 1000 },
      0,
    );
  }
  o.log(`(c) idle CPU over ${s.idleSeconds} s`);
  const idleBefore = await idleCpu(pickers, s.idleSeconds);
  for (let round = 0; round < s.rounds; round++) {
    for (const rate of s.rates) {
      o.log(`(c) round ${round + 1}/${s.rounds}: ${rate} req/s on every path`);
      for (const path of rotated(paths, round)) await ratePhase(o, s, path, rate);
    }
    for (const path of rotated(paths, round)) {
      o.log(`(c) round ${round + 1}/${s.rounds}: ${path.name}, 64 in flight`);
      const phase = { phase: "closed", concurrency: 64, durationMs: s.throughputMs } as const;
      const { result, cpuSeconds, seconds } = await observedPhase(o, path, phase);
      const ok = result.samples.filter(x => x.status === 200).length;
      path.record?.throughput.push(ok / result.seconds);
      path.record?.coresAt64.push(cpuSeconds / seconds);
    }
    if (os.cpus().length >= 2) await oneCoreDecisions(o, s, paths, pickers, round);
  }
  o.log(`(c) idle CPU over ${s.idleSeconds} s, after the load`);
  const idleAfter = await idleCpu(pickers, s.idleSeconds);
  const records: PickerRecord[] = pickers.map((p, i) => ({
    kind: p.kind,
    idleCpuMsPerSecond: [idleBefore[i], idleAfter[i]],
    peakMiB: memoryOf(p.pid)?.peakMiB ?? NaN,
  }));
  return {
    rates: s.rates,
    rounds: s.rounds,
    sliceSeconds: s.sliceSeconds,
    idleSeconds: s.idleSeconds,
    direct: paths[0].direct!,
    paths: paths.flatMap(p => (p.record ? [p.record] : [])),
    pickers: records,
  };
}

function header(s: Setup, result: SideBySide, load: [string, string]): string {
  const peaks = result.pickers.map(p => `${names[p.kind]} ${p.peakMiB.toFixed(0)} MiB`).join(", ");
  return (
    `The picker, the upstream EPP v1.5.0 (\`cmd/epp\`, its default scorers) and lwepp v1.6.2 ` +
    `(\`cmd/lwepp\`, round-robin), their per-request logs off (EPP \`--v=1\`, lwepp ` +
    `\`--zap-log-level=error\`), serve one v1 InferencePool of 3 ` +
    `simulated pods that answer at once, all three running at once; the Go load generator plays ` +
    `Envoy's side of ext_proc (FULL_DUPLEX_STREAMED) with the request phase only or with both ` +
    `phases. ${s.rounds} rounds; in each, every rate of the ladder runs ${s.sliceSeconds} s on ` +
    `every path in turn (the order rotated per round; open loop, latency from the intended send ` +
    `time, the first ${s.warmupMs} ms of a phase not counted), then ${s.throughputMs / 1000} s ` +
    `with 64 in flight per path. "Added" = the path's percentile minus that of requests sent ` +
    `straight to one pod, over all rounds. Unsent: the load generator had 2,000 in flight; ` +
    `failed: not answered 200 within 5 s after the last was due. CPU per request: the picker ` +
    `process' CPU during its phases (from /proc, its scraping included) ÷ requests sent. RSS: ` +
    `VmRSS sampled every 200 ms during the path's phases (one process serves both phase modes, ` +
    `alternately); peak resident memory of each process over the whole part (VmHWM): ${peaks}. ` +
    `Load average before ${load[0]}, after ${load[1]}.`
  );
}

export async function partC(b: Bench, o: PartCOptions): Promise<string> {
  const pool = "bench-c";
  const s = setupOf(o.quick, o.rates);
  b.kubectl(["apply", "-f", "-"], v1PoolYaml(pool));
  const servers = await deployPods(b, pool, 3, { maxNumSeqs: 4096, ttftMs: 0, itlMs: 0 });
  let pickers: SidePicker[] = [];
  try {
    pickers = await startSidePickers(b, pool, servers, o);
    const before = loadAverage();
    const result = await measure(o, s, pickers, `${servers[0].url}/v1/completions`);
    return sideBySideReport(result, header(s, result, [before, loadAverage()]));
  } finally {
    for (const p of pickers) await p.stop();
    await removePods(b, servers);
    b.kubectl(["delete", "inferencepools.inference.networking.k8s.io", pool, "--ignore-not-found"]);
  }
}
