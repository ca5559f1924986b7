// Part (d)'s figures and table (pure): what each picker did past capacity — goodput, the latency
// of the requests it admitted (critical and sheddable apart), its 429s and how fast they came,
// what failed or was never sent, and the most requests waiting (held in the picker, queued in
// the pods).

import { ms, summarize } from "./stats";

/** "unguarded": the picker with its overload guard off (the own-CPU workload only). */
export type Contender = "picker" | "unguarded" | "epp";

/** One request as the load generator saw it: status 0 = failed or never answered. */
export interface OverloadSample {
  status: number;
  /** From the intended send time; NaN when never answered. */
  latencyMs: number;
}

/** One picker at one offered rate, all rounds together. */
export interface OverloadRecord {
  contender: Contender;
  /** Offered load as a multiple of the knee. */
  multiple: number;
  rate: number;
  critical: OverloadSample[];
  sheddable: OverloadSample[];
  /** Not sent: the load generator's in-flight limit was reached (also in the samples, status 0). */
  unsent: number;
  /** How long the phases ran, sending and draining. */
  seconds: number;
  /** Most requests the picker held at once (its flow-control queue), sampled; NaN: not known. */
  mostHeld: number;
  /** Most requests waiting in the pods' own queues at once (summed over pods), sampled. */
  mostPodWaiting: number;
}

export interface OverloadFigures {
  goodput: number;
  criticalP50: number;
  criticalP99: number;
  sheddableP50: number;
  sheddableP99: number;
  /** Of all requests, and of each class, 0..1. */
  share429: number;
  criticalShare429: number;
  sheddableShare429: number;
  p50Of429: number;
  p99Of429: number;
  failedShare: number;
  unsentShare: number;
}

const okLatencies = (s: OverloadSample[]) => s.filter(x => x.status === 200).map(x => x.latencyMs);
const shareOf = (s: OverloadSample[], f: (x: OverloadSample) => boolean) =>
  s.length ? s.filter(f).length / s.length : NaN;

export function overloadFigures(r: OverloadRecord): OverloadFigures {
  const all = [...r.critical, ...r.sheddable];
  const critical = summarize(okLatencies(r.critical));
  const sheddable = summarize(okLatencies(r.sheddable));
  const is429 = (x: OverloadSample) => x.status === 429;
  const latency429 = summarize(all.filter(is429).map(x => x.latencyMs));
  const failed = all.length
    ? (all.filter(x => x.status !== 200 && x.status !== 429).length - r.unsent) / all.length
    : NaN;
  return {
    goodput: all.filter(x => x.status === 200).length / r.seconds,
    criticalP50: critical.p50,
    criticalP99: critical.p99,
    sheddableP50: sheddable.p50,
    sheddableP99: sheddable.p99,
    share429: shareOf(all, is429),
    criticalShare429: shareOf(r.critical, is429),
    sheddableShare429: shareOf(r.sheddable, is429),
    p50Of429: latency429.p50,
    p99Of429: latency429.p99,
    failedShare: failed,
    unsentShare: all.length ? r.unsent / all.length : NaN,
  };
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : "–");
const names: Record<Contender, string> = {
  picker: "picker",
  unguarded: "picker, guard off",
  epp: "EPP v1.5.0",
};

/** One table: a column per picker and offered rate, a row per measure. */
export function overloadTable(records: OverloadRecord[]): string {
  const columns = records.map(r => ({ r, f: overloadFigures(r) }));
  const row = (label: string, cell: (c: (typeof columns)[number]) => string) =>
    `| ${label} | ${columns.map(cell).join(" | ")} |`;
  return [
    `| measure | ${columns.map(({ r }) => `${names[r.contender]} at ${r.multiple}× (${r.rate.toFixed(0)} req/s)`).join(" | ")} |`,
    `|---|${columns.map(() => "---").join("|")}|`,
    row("goodput (answered 200 per s)", c => c.f.goodput.toFixed(1)),
    row("critical admitted p50 / p99 (ms)", c => `${ms(c.f.criticalP50)} / ${ms(c.f.criticalP99)}`),
    row(
      "sheddable admitted p50 / p99 (ms)",
      c => `${ms(c.f.sheddableP50)} / ${ms(c.f.sheddableP99)}`,
    ),
    row("429 share: all (critical / sheddable)", c =>
      [pct(c.f.share429), ` (${pct(c.f.criticalShare429)} / ${pct(c.f.sheddableShare429)})`].join(
        "",
      ),
    ),
    row("429 latency p50 / p99 (ms)", c => `${ms(c.f.p50Of429)} / ${ms(c.f.p99Of429)}`),
    row("failed / unsent", c => `${pct(c.f.failedShare)} / ${pct(c.f.unsentShare)}`),
    row("most held in the picker / waiting in the pods", c =>
      [
        Number.isFinite(c.r.mostHeld) ? c.r.mostHeld.toFixed(0) : "–",
        c.r.mostPodWaiting.toFixed(0),
      ].join(" / "),
    ),
  ].join("\n");
}
