// Part (c)'s figures and tables (pure): what each picker did on the rate ladder, its throughput,
// memory and idle CPU, and the ratio picker ÷ upstream EPP for every measure.

import { ms, summarize } from "./stats";

export type PickerKind = "picker" | "epp" | "lwepp";
export type Phases = "request" | "both";

/** One path (a picker with or without the response phase, or direct) at one rate, all rounds. */
export interface RateRecord {
  /** Latencies of the requests answered 200, the first 500 ms of each phase left out. */
  latenciesMs: number[];
  /** Every request of the phases (sent or not). */
  requests: number;
  /** Not sent: the load generator's in-flight limit was reached. */
  unsent: number;
  /** Sent, but not answered 200 in time. */
  failed: number;
  /** The picker process' CPU during these phases (user + system). */
  cpuSeconds: number;
  /** How long these phases ran. */
  seconds: number;
}

export interface PathRecord {
  kind: PickerKind;
  phases: Phases;
  byRate: Map<number, RateRecord>;
  /** Requests per second answered 200 with 64 in flight, one per round. */
  throughput: number[];
  /** The picker process' CPU with 64 in flight (cores: CPU seconds ÷ seconds), one per round. */
  coresAt64: number[];
  /**
   * Decisions per second with 64 in flight, nothing sent to the pods, the picker alone on one
   * core (the request-phase path only), one per round: the picker's own ceiling.
   */
  oneCoreDecisions: number[];
  /** VmRSS of the picker's process sampled while this path's load ran (MiB). */
  rssMiB: number[];
}

export interface PickerRecord {
  kind: PickerKind;
  /** CPU over an idle window (no requests, the pods scraped as usual): ms per s, before / after the load. */
  idleCpuMsPerSecond: [number, number];
  /** VmHWM at the end: the process' peak resident memory (MiB). */
  peakMiB: number;
}

export interface SideBySide {
  rates: number[];
  rounds: number;
  sliceSeconds: number;
  idleSeconds: number;
  /** Straight to one pod (no picker): what "added" is measured against. */
  direct: Map<number, RateRecord>;
  paths: PathRecord[];
  pickers: PickerRecord[];
}

export interface RateFigures {
  addedP50: number;
  addedP99: number;
  /** Shares of all requests of the phases, 0..1. */
  unsentShare: number;
  failedShare: number;
  cpuPerRequestUs: number;
  /** Less what the process spends idle in as long (scraping the pods, watches, timers). */
  cpuAboveIdlePerRequestUs: number;
}

/** `idleMsPerSecond`: the process' CPU without requests (NaN when unknown). */
export function rateFigures(r: RateRecord, direct: RateRecord, idleMsPerSecond = NaN): RateFigures {
  const own = summarize(r.latenciesMs);
  const base = summarize(direct.latenciesMs);
  const sent = r.requests - r.unsent;
  return {
    addedP50: own.p50 - base.p50,
    addedP99: own.p99 - base.p99,
    unsentShare: r.requests ? r.unsent / r.requests : NaN,
    failedShare: r.requests ? r.failed / r.requests : NaN,
    cpuPerRequestUs: sent > 0 ? (1e6 * r.cpuSeconds) / sent : NaN,
    cpuAboveIdlePerRequestUs:
      sent > 0 ? (1e6 * (r.cpuSeconds - (idleMsPerSecond / 1000) * r.seconds)) / sent : NaN,
  };
}

/** a ÷ b for a table: "0.87"; "=" when both are 0; "–" when it has no meaning. */
export function ratio(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return "–";
  if (a === 0 && b === 0) return "=";
  if (b === 0) return "–";
  if (Math.sign(a) !== Math.sign(b)) return "–"; // an added latency below the direct path's
  const r = a / b;
  return r >= 10 ? r.toFixed(0) : r.toFixed(2);
}

export function median(values: readonly number[]): number {
  return summarize(values).p50;
}

export function highest(values: readonly number[]): number {
  return values.length ? Math.max(...values) : NaN;
}

const percent = (share: number) => (Number.isFinite(share) ? `${(100 * share).toFixed(1)} %` : "–");
const whole = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "–");

/** One measure: a value per picker and phases (request, both), and how to print it. */
interface Measure {
  name: string;
  value: (kind: PickerKind, phases: Phases) => number;
  format: (n: number) => string;
}

const kinds: PickerKind[] = ["picker", "epp", "lwepp"];

function measures(s: SideBySide): Measure[] {
  const path = (kind: PickerKind, phases: Phases) =>
    s.paths.find(p => p.kind === kind && p.phases === phases);
  const picker = (kind: PickerKind) => s.pickers.find(p => p.kind === kind);
  const at = (rate: number, f: (x: RateFigures) => number) => (k: PickerKind, ph: Phases) => {
    const r = path(k, ph)?.byRate.get(rate);
    const d = s.direct.get(rate);
    const idle = picker(k)?.idleCpuMsPerSecond[0];
    return r && d ? f(rateFigures(r, d, idle)) : NaN;
  };
  const list: Measure[] = [
    {
      name: "throughput with 64 in flight (req/s, median of rounds)",
      value: (k, ph) => median(path(k, ph)?.throughput ?? []),
      format: whole,
    },
    {
      // Near 1 for a single-threaded picker means its one thread, not the machine, bounds the throughput.
      name: "its CPU with 64 in flight (cores, median of rounds)",
      value: (k, ph) => median(path(k, ph)?.coresAt64 ?? []),
      format: n => (Number.isFinite(n) ? n.toFixed(2) : "–"),
    },
    {
      name: "decisions per second alone on one core, 64 in flight, no pods (median of rounds)",
      value: (k, ph) => median(path(k, ph)?.oneCoreDecisions ?? []),
      format: whole,
    },
    {
      name: "RSS while its load ran, highest sample (MiB)",
      value: (k, ph) => highest(path(k, ph)?.rssMiB ?? []),
      format: whole,
    },
    {
      name: "RSS while its load ran, median sample (MiB)",
      value: (k, ph) => median(path(k, ph)?.rssMiB ?? []),
      format: whole,
    },
    {
      name: `idle CPU over ${s.idleSeconds} s, before / after the load (ms/s)`,
      value: (k, ph) => picker(k)?.idleCpuMsPerSecond[ph === "request" ? 0 : 1] ?? NaN,
      format: n => (Number.isFinite(n) ? n.toFixed(1) : "–"),
    },
  ];
  for (const rate of s.rates) {
    list.push(
      { name: `added p50 at ${rate} req/s (ms)`, value: at(rate, x => x.addedP50), format: ms },
      { name: `added p99 at ${rate} req/s (ms)`, value: at(rate, x => x.addedP99), format: ms },
      {
        name: `unsent at ${rate} req/s`,
        value: at(rate, x => x.unsentShare),
        format: percent,
      },
      {
        name: `failed at ${rate} req/s`,
        value: at(rate, x => x.failedShare),
        format: percent,
      },
      {
        name: `CPU per request at ${rate} req/s (µs)`,
        value: at(rate, x => x.cpuPerRequestUs),
        format: whole,
      },
      {
        name: `CPU per request at ${rate} req/s above idle (µs)`,
        value: at(rate, x => x.cpuAboveIdlePerRequestUs),
        format: whole,
      },
    );
  }
  return list;
}

/**
 * The side-by-side table: per measure each picker's figure (request phase only / both phases)
 * and the ratio picker ÷ EPP (and picker ÷ lwepp).
 */
export function ratioTable(s: SideBySide): string {
  const lines = [
    "| measure | picker (request / both phases) | upstream EPP v1.5.0 | lwepp v1.6.2 | picker ÷ EPP | picker ÷ lwepp |",
    "|---|---|---|---|---|---|",
  ];
  for (const m of measures(s)) {
    const pair = (k: PickerKind) =>
      `${m.format(m.value(k, "request"))} / ${m.format(m.value(k, "both"))}`;
    const ratios = (k: PickerKind) =>
      `${ratio(m.value("picker", "request"), m.value(k, "request"))} / ` +
      `${ratio(m.value("picker", "both"), m.value(k, "both"))}`;
    lines.push(
      `| ${m.name} | ${kinds.map(pair).join(" | ")} | ${ratios("epp")} | ${ratios("lwepp")} |`,
    );
  }
  return lines.join("\n");
}

/** The direct path's own latencies per rate, the base of every "added". */
export function directLine(s: SideBySide): string {
  const parts = s.rates.map(rate => {
    const d = s.direct.get(rate);
    if (!d) return `${rate}: –`;
    const sum = summarize(d.latenciesMs);
    return `${rate} req/s ${ms(sum.p50)} / ${ms(sum.p99)} ms`;
  });
  return `Direct to one pod (no picker), p50 / p99: ${parts.join("; ")}.`;
}

export function sideBySideReport(s: SideBySide, header: string): string {
  return [header, "", ratioTable(s), "", directLine(s)].join("\n");
}
