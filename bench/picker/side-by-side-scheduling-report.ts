// Part (e)'s tables (pure): per workload and picker, the latency and TTFT percentiles over all
// rounds, p95 ÷ lwepp's (round-robin), p95 round by round, the pods' prefix-cache hit share,
// requests per pod, failed requests, and what the upstream EPP saw of the pods.

import { PickerKind } from "./side-by-side-report";
import { LatencySummary, ms, summarize } from "./stats";

/** What the EPP's own /metrics said during and after one run: proof it saw the pods' state. */
export interface EppView {
  /** Highest samples of its pool gauges during the run (from the pods' vLLM metrics). */
  queueMax: number;
  runningMax: number;
  kvMax: number;
  /** Its prefix index: lookups and the mean share of the prompt's blocks found (0..1). */
  prefixLookups: number;
  prefixMatchMean: number;
}

/** One picker's run of one workload in one round: fresh pods, the same arrivals as the others. */
export interface SchedulingRun {
  kind: PickerKind;
  round: number;
  /** Of the requests after the warm-up that were answered 200. */
  latenciesMs: number[];
  ttftsMs: number[];
  /** Requests after the warm-up, and of them not answered 200 (unsent included). */
  measured: number;
  failed: number;
  /** Requests each pod answered over the whole run (its own counter). */
  perPod: number[];
  /** Prompt tokens from the pods' prefix caches and all prompt tokens, summed over the pods. */
  prefixHits: number;
  prefixQueries: number;
  /** Requests the picker's flow control held until a pod had room (the picker only). */
  held?: number;
  epp?: EppView;
}

export interface WorkloadResult {
  name: string;
  what: string;
  capacity: number;
  rate: number;
  seconds: number;
  requests: number;
  runs: SchedulingRun[];
}

export const pickerNames: Record<PickerKind, string> = {
  picker: "**picker** (ext_proc, its defaults)",
  epp: "upstream EPP v1.5.0 (its default scorers)",
  lwepp: "lwepp v1.6.2 (round-robin)",
};

export interface PickerFigures {
  kind: PickerKind;
  latency: LatencySummary;
  ttft: LatencySummary;
  p95ByRound: number[];
  hitShare: number;
  perPod: number[];
  failed: number;
  measured: number;
  held?: number;
}

/** One picker's figures over all its rounds of a workload. */
export function figuresOf(runs: SchedulingRun[], kind: PickerKind): PickerFigures {
  const mine = runs.filter(r => r.kind === kind).sort((a, b) => a.round - b.round);
  const sum = (f: (r: SchedulingRun) => number) => mine.reduce((s, r) => s + f(r), 0);
  const pods = Math.max(0, ...mine.map(r => r.perPod.length));
  return {
    kind,
    latency: summarize(mine.flatMap(r => r.latenciesMs)),
    ttft: summarize(mine.flatMap(r => r.ttftsMs)),
    p95ByRound: mine.map(r => summarize(r.latenciesMs).p95),
    hitShare: sum(r => r.prefixHits) / (sum(r => r.prefixQueries) || NaN),
    perPod: Array.from({ length: pods }, (_, i) => sum(r => r.perPod[i] ?? 0)),
    failed: sum(r => r.failed),
    measured: sum(r => r.measured),
    held: mine.some(r => r.held !== undefined) ? sum(r => r.held ?? 0) : undefined,
  };
}

const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? (a / b).toFixed(2) : "–");
const percent = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)} %` : "–");

function row(f: PickerFigures, rr: PickerFigures | undefined): string {
  return [
    pickerNames[f.kind],
    `${ms(f.latency.p50)} / ${ms(f.latency.p95)} / ${ms(f.latency.p99)} ms`,
    `${ms(f.ttft.p50)} / ${ms(f.ttft.p95)} / ${ms(f.ttft.p99)} ms`,
    `${ratio(f.latency.p95, rr?.latency.p95 ?? NaN)} ×`,
    `${ratio(f.ttft.p95, rr?.ttft.p95 ?? NaN)} ×`,
    f.p95ByRound.map(ms).join(", "),
    percent(f.hitShare),
    f.perPod.join(" / "),
    `${f.failed} of ${f.measured}`,
    f.held === undefined ? "–" : String(f.held),
  ].join(" | ");
}

/** The EPP's view, summed up over its runs: the highest gauges and its prefix index's matches. */
export function eppViewLine(runs: SchedulingRun[]): string {
  const views = runs.flatMap(r => (r.kind === "epp" && r.epp ? [r.epp] : []));
  if (!views.length) return "";
  const max = (f: (v: EppView) => number) => Math.max(...views.map(f));
  const lookups = views.reduce((s, v) => s + v.prefixLookups, 0);
  const matched = views.reduce((s, v) => s + v.prefixLookups * v.prefixMatchMean, 0);
  return (
    `What the EPP saw (its /metrics, sampled every second during its runs): pool average ` +
    `queue up to ${max(v => v.queueMax).toFixed(2)}, running up to ` +
    `${max(v => v.runningMax).toFixed(2)}, KV-cache use up to ${percent(max(v => v.kvMax))}; ` +
    `its prefix index: ${lookups} lookups, on average ${percent(matched / (lookups || NaN))} of ` +
    `a prompt's blocks found on the pod it chose.`
  );
}

export function schedulingReport(results: WorkloadResult[], header: string): string {
  const lines = [header, ""];
  for (const w of results) {
    const kinds = (["picker", "epp", "lwepp"] as PickerKind[]).filter(k =>
      w.runs.some(r => r.kind === k),
    );
    const rounds = Math.max(0, ...w.runs.map(r => r.round + 1));
    const figures = kinds.map(k => figuresOf(w.runs, k));
    const rr = figures.find(f => f.kind === "lwepp");
    lines.push(
      `**${w.name}** — ${w.what}: the pods served ${w.capacity.toFixed(1)} req/s when kept ` +
        `full; Poisson arrivals at ${w.rate} req/s for ${w.seconds} s (${w.requests} requests), ` +
        `the same for every picker; ${rounds} rounds, fresh pods for every run.`,
      "",
      "| picker | latency p50 / p95 / p99 | TTFT p50 / p95 / p99 | p95 latency ÷ round-robin | " +
        "p95 TTFT ÷ round-robin | p95 latency round by round (ms) | prompt tokens from the " +
        "pods' prefix caches | requests per pod (all rounds) | failed | held in the picker |",
      "|---|---|---|---|---|---|---|---|---|---|",
      ...figures.map(f => `| ${row(f, rr)} |`),
      "",
    );
    const view = eppViewLine(w.runs);
    if (view) lines.push(view, "");
  }
  return lines.join("\n");
}
