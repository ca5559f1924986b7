// Pure parts of the operator benchmark: the rollout plan, step-lag bookkeeping, the apiserver's
// request counters (parsing, deltas, classification) and the results table. No I/O, no clock.
import { isTerminalPhase } from "../../capabilities/api/constants";

/** The steps every benchmark rollout walks: setWeight w0, pause, setWeight w1, pause, ... */
export interface RolloutPlan {
  /** Canary weights in order, strictly increasing (so every write is recognisable). */
  weights: number[];
  pauseMs: number;
}

export type PlanStep = { setWeight: number } | { pause: { duration: string } };

export function planSteps(plan: RolloutPlan): PlanStep[] {
  validatePlan(plan);
  const seconds = plan.pauseMs / 1000;
  const steps: PlanStep[] = [];
  plan.weights.forEach((w, i) => {
    if (i > 0) steps.push({ pause: { duration: `${seconds}s` } });
    steps.push({ setWeight: w });
  });
  return steps;
}

export function validatePlan(plan: RolloutPlan): void {
  const { weights, pauseMs } = plan;
  if (weights.length < 2) throw new Error("a plan needs at least two weights");
  weights.forEach((w, i) => {
    if (!Number.isInteger(w) || w < 1 || w > 100) throw new Error(`weight ${w} must be 1..100`);
    if (i > 0 && w <= weights[i - 1]) throw new Error("weights must increase strictly");
  });
  if (!Number.isInteger(pauseMs / 1000) || pauseMs < 1000)
    throw new Error("pause must be a whole number of seconds, at least 1s");
}

/** Index in the step list of the pause that precedes weights[j] (j >= 1). */
export function pauseIndexBefore(j: number): number {
  return 2 * j - 1;
}

/** What one rollout's status shows (from the ModelRollout watch). */
export interface StatusView {
  phase?: string;
  currentStep?: number;
  stepStartedAt?: string;
}

interface RolloutTrack {
  createdAtMs?: number;
  /** stepStartedAt (epoch ms) of pause j-1, i.e. the pause before weights[j], by j. */
  pauseStartMs: Map<number, number>;
  /** Arrival time of the first InferenceModel version showing weights[j], by j. */
  weightSeenMs: Map<number, number>;
  lastWeight?: number;
  /** Steps entered so far (currentStep + 1; all of them once finished). */
  stepsStarted: number;
  finished: boolean;
  phase?: string;
}

export interface LagSummary {
  rollouts: number;
  finished: number;
  /** created (POST answered) → first weight visible, ms. */
  startLatenciesMs: number[];
  /** pause due (stepStartedAt + duration) → next weight visible, ms. */
  stepLagsMs: number[];
  /** Steps entered, summed over rollouts (setWeight and pause steps; all once finished). */
  stepsStarted: number;
  /** Weight changes observed (each is one setWeight step applied). */
  weightChanges: number;
  /** Timed transitions expected but not (yet) observed. */
  missingTransitions: number;
  /** Weight changes that are not the next weight of the plan (skipped, repeated or backwards). */
  unexpectedWeightChanges: number;
  /** Pause steps whose stepStartedAt changed after it was first seen (a restarted step). */
  restartedPauses: number;
}

/**
 * Collects, per rollout, when each pause started (status) and when each weight became visible
 * (InferenceModel watch), and turns them into lags. Keys are "namespace/name" of the rollout.
 */
export class LagTracker {
  readonly #plan: RolloutPlan;
  readonly #tracks = new Map<string, RolloutTrack>();
  #restartedPauses = 0;
  #unexpected = 0;

  constructor(plan: RolloutPlan) {
    validatePlan(plan);
    this.#plan = plan;
  }

  #track(key: string): RolloutTrack {
    let t = this.#tracks.get(key);
    if (!t) {
      t = { pauseStartMs: new Map(), weightSeenMs: new Map(), stepsStarted: 0, finished: false };
      this.#tracks.set(key, t);
    }
    return t;
  }

  created(key: string, atMs: number): void {
    this.#track(key).createdAtMs = atMs;
  }

  status(key: string, status: StatusView): void {
    const t = this.#track(key);
    t.phase = status.phase;
    if (isTerminalPhase(status.phase)) t.finished = true;
    const step = status.currentStep;
    const total = 2 * this.#plan.weights.length - 1;
    if (t.finished) t.stepsStarted = total;
    else if (step !== undefined)
      t.stepsStarted = Math.max(t.stepsStarted, Math.min(step + 1, total));
    if (step === undefined || step % 2 === 0 || !status.stepStartedAt) return;
    const j = (step + 1) / 2; // the pause at step 2j-1 precedes weights[j]
    const started = Date.parse(status.stepStartedAt);
    if (Number.isNaN(started)) return;
    const known = t.pauseStartMs.get(j);
    if (known === undefined) t.pauseStartMs.set(j, started);
    else if (known !== started) {
      this.#restartedPauses++;
      t.pauseStartMs.set(j, started);
    }
  }

  /** The canary weight an InferenceModel watch event showed (0 when the canary entry is absent). */
  weight(key: string, canaryWeight: number, atMs: number): void {
    const t = this.#track(key);
    if (t.lastWeight === canaryWeight) return;
    const previous = t.lastWeight;
    t.lastWeight = canaryWeight;
    const j = this.#plan.weights.indexOf(canaryWeight);
    const expected = this.#nextIndex(t);
    if (canaryWeight === 0 && previous === undefined) return; // the initial object, before any write
    if (j === -1 || j !== expected) {
      this.#unexpected++;
      return;
    }
    if (!t.weightSeenMs.has(j)) t.weightSeenMs.set(j, atMs);
  }

  #nextIndex(t: RolloutTrack): number {
    let j = 0;
    while (t.weightSeenMs.has(j)) j++;
    return j;
  }

  /** Per rollout: steps entered, weights seen, finished (for the details file). */
  perRollout(): Record<string, { stepsStarted: number; weights: number; finished: boolean }> {
    const out: Record<string, { stepsStarted: number; weights: number; finished: boolean }> = {};
    for (const [key, t] of this.#tracks)
      out[key] = {
        stepsStarted: t.stepsStarted,
        weights: t.weightSeenMs.size,
        finished: t.finished,
      };
    return out;
  }

  isFinished(key: string): boolean {
    return this.#tracks.get(key)?.finished ?? false;
  }

  finishedCount(): number {
    let n = 0;
    for (const t of this.#tracks.values()) if (t.finished) n++;
    return n;
  }

  summary(): LagSummary {
    const startLatenciesMs: number[] = [];
    const stepLagsMs: number[] = [];
    let missing = 0;
    let stepsStarted = 0;
    let weightChanges = 0;
    for (const t of this.#tracks.values()) {
      stepsStarted += t.stepsStarted;
      weightChanges += t.weightSeenMs.size;
      const first = t.weightSeenMs.get(0);
      if (first !== undefined && t.createdAtMs !== undefined)
        startLatenciesMs.push(first - t.createdAtMs);
      for (let j = 1; j < this.#plan.weights.length; j++) {
        const seen = t.weightSeenMs.get(j);
        const pauseStart = t.pauseStartMs.get(j);
        if (seen === undefined || pauseStart === undefined) {
          missing++;
          continue;
        }
        stepLagsMs.push(seen - (pauseStart + this.#plan.pauseMs));
      }
    }
    return {
      rollouts: this.#tracks.size,
      finished: this.finishedCount(),
      startLatenciesMs,
      stepLagsMs,
      stepsStarted,
      weightChanges,
      missingTransitions: missing,
      unexpectedWeightChanges: this.#unexpected,
      restartedPauses: this.#restartedPauses,
    };
  }
}

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN for no values. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

// --- the apiserver's request counters -------------------------------------------------------------

export interface RequestCount {
  verb: string;
  group: string;
  resource: string;
  subresource: string;
  code: string;
  count: number;
}

const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Samples of one metric (with labels) from Prometheus text. */
export function parseMetric(
  metricsText: string,
  name: string,
): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of metricsText.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.lastIndexOf("}");
    const labels: Record<string, string> = {};
    for (const m of line.slice(0, close).matchAll(LABEL)) labels[m[1]] = m[2];
    const value = Number(line.slice(close + 1).trim());
    if (Number.isFinite(value)) out.push({ labels, value });
  }
  return out;
}

/** `apiserver_request_total` samples from the apiserver's /metrics text. */
export function parseRequestCounts(metricsText: string): RequestCount[] {
  const out: RequestCount[] = [];
  for (const { labels, value: count } of parseMetric(metricsText, "apiserver_request_total")) {
    out.push({
      verb: labels.verb ?? "",
      group: labels.group ?? "",
      resource: labels.resource ?? "",
      subresource: labels.subresource ?? "",
      code: labels.code ?? "",
      count,
    });
  }
  return out;
}

/** Time the apiserver spent on requests, by "resource[/subresource] VERB" (sum and count). */
export type ServerTimes = Record<string, { seconds: number; count: number }>;

export function parseServerTimes(metricsText: string): ServerTimes {
  const out: ServerTimes = {};
  const key = (l: Record<string, string>) =>
    `${l.resource}${l.subresource ? `/${l.subresource}` : ""} ${l.verb}`;
  for (const suffix of ["sum", "count"] as const) {
    for (const { labels, value } of parseMetric(
      metricsText,
      `apiserver_request_duration_seconds_${suffix}`,
    )) {
      if (!labels.resource || labels.verb === "WATCH") continue;
      const e = (out[key(labels)] ??= { seconds: 0, count: 0 });
      if (suffix === "sum") e.seconds += value;
      else e.count += value;
    }
  }
  return out;
}

/** Mean apiserver time per request (ms) between two readings, for kinds that saw requests. */
export function meanServerMs(before: ServerTimes, after: ServerTimes): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, a] of Object.entries(after)) {
    const b = before[k] ?? { seconds: 0, count: 0 };
    const n = a.count - b.count;
    if (n > 0) out[k] = Math.round(((a.seconds - b.seconds) * 1000) / n);
  }
  return out;
}

function counterKey(c: Omit<RequestCount, "count">): string {
  return [c.verb, c.group, c.resource, c.subresource, c.code].join("|");
}

/** after − before, per label set; label sets that did not change are left out. */
export function deltaCounts(before: RequestCount[], after: RequestCount[]): RequestCount[] {
  const base = new Map(before.map(c => [counterKey(c), c.count]));
  return after
    .map(c => ({ ...c, count: c.count - (base.get(counterKey(c)) ?? 0) }))
    .filter(c => c.count > 0);
}

export const WRITE_VERBS = ["POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"];
export const READ_VERBS = ["GET", "LIST"];

const TARGET_RESOURCES = ["inferencemodels", "httproutes", "inferencemodelrewrites"];

/**
 * Everything the operator may write (its RBAC in package.json, plus Pepr's store). Writes to other
 * resources are the apiserver's own housekeeping (lease renewals, the `kubernetes` Service's
 * endpoints) and are reported as background.
 */
export const OPERATOR_RESOURCES = [
  ...TARGET_RESOURCES,
  "modelrollouts",
  "inferencepools",
  "inferenceobjectives",
  "events",
  "peprstores",
];

export function isOperatorWrite(c: RequestCount): boolean {
  return WRITE_VERBS.includes(c.verb) && OPERATOR_RESOURCES.includes(c.resource);
}

export interface WriteBreakdown {
  /** Traffic target writes (InferenceModel / HTTPRoute / InferenceModelRewrite patches). */
  target: number;
  /** modelrollouts/status patches. */
  status: number;
  /** Event creations. */
  events: number;
  /** modelrollouts patches (the action annotation). */
  rollout: number;
  /** Anything else an operator could have written (pools, objectives, Pepr store...). */
  other: number;
  /** Writes answered with a non-2xx code (conflicts, invalid), included in the counts above. */
  failed: number;
  total: number;
  /** Writes to resources the operator never writes (the apiserver's housekeeping), not in total. */
  background: number;
}

/** Subtract writes the benchmark itself made (its creates) from a delta. */
export interface OwnWrites {
  verb: string;
  resource: string;
  count: number;
}

export function classifyWrites(delta: RequestCount[], own: OwnWrites[] = []): WriteBreakdown {
  const b: WriteBreakdown = {
    target: 0,
    status: 0,
    events: 0,
    rollout: 0,
    other: 0,
    failed: 0,
    total: 0,
    background: 0,
  };
  const mine = new Map(own.map(o => [`${o.verb}|${o.resource}`, o.count]));
  for (const c of delta) {
    if (!WRITE_VERBS.includes(c.verb)) continue;
    if (!isOperatorWrite(c)) {
      b.background += c.count;
      continue;
    }
    let count = c.count;
    const ownKey = `${c.verb}|${c.resource}`;
    const ownLeft = c.subresource === "" ? (mine.get(ownKey) ?? 0) : 0;
    if (ownLeft > 0 && c.code.startsWith("2")) {
      const taken = Math.min(ownLeft, count);
      mine.set(ownKey, ownLeft - taken);
      count -= taken;
    }
    if (count === 0) continue;
    if (!c.code.startsWith("2")) b.failed += count;
    if (TARGET_RESOURCES.includes(c.resource) && c.subresource === "") b.target += count;
    else if (c.resource === "modelrollouts" && c.subresource === "status") b.status += count;
    else if (c.resource === "modelrollouts") b.rollout += count;
    else if (c.resource === "events") b.events += count;
    else b.other += count;
    b.total += count;
  }
  return b;
}

/** GET/LIST requests per "resource[/subresource] VERB", e.g. "modelrollouts LIST". */
export function readsByResource(delta: RequestCount[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of delta) {
    if (!READ_VERBS.includes(c.verb) || !c.resource) continue;
    const key = `${c.resource}${c.subresource ? `/${c.subresource}` : ""} ${c.verb}`;
    out[key] = (out[key] ?? 0) + c.count;
  }
  return out;
}

// --- the results table ----------------------------------------------------------------------------

export interface BenchResult {
  rollouts: number;
  namespaces: number;
  weights: number[];
  pauseSeconds: number;
  /** Steps in each rollout's spec (setWeight and pause). */
  stepsPerRollout: number;
  lag: LagSummary;
  writes: WriteBreakdown;
  reads: Record<string, number>;
  operator: {
    rssPeakMiB: number;
    rssIdleMiB: number;
    cpuActivePercent: number;
    cpuPeakPercent: number;
    cpuIdlePercent: number;
    socketsPeak: number;
    socketsIdle: number;
  };
  activeSeconds: number;
  /** Mean apiserver time per request during the active phase, ms. */
  serverMs: Record<string, number>;
  /** CPU (percent of one core) of the apiserver and etcd during the active phase. */
  controlPlaneCpuPercent: { apiserver: number; etcd: number };
  /** CPU of everything else on the machine (other workloads, the benchmark itself), percent of one core. */
  otherCpuPercent: number;
  /** Cores of the machine. */
  cores: number;
  /** valid: every rollout finished and the operator had stopped writing before the idle window. */
  idle: { seconds: number; writes: WriteBreakdown; reads: number; valid: boolean };
}

function ms(v: number): string {
  if (Number.isNaN(v)) return "–";
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

function num(v: number, digits = 2): string {
  return Number.isFinite(v) ? v.toFixed(digits) : "–";
}

/** Operator writes per step entered (a run that did not finish counts the steps it reached). */
export function writesPerStep(r: BenchResult): number {
  return r.writes.total / r.lag.stepsStarted;
}

export function writesPerWeightChange(r: BenchResult): number {
  return r.writes.total / r.lag.weightChanges;
}

export function idleWritesPerMinute(r: BenchResult): number {
  return r.idle.seconds > 0 ? (r.idle.writes.total * 60) / r.idle.seconds : NaN;
}

export interface GoalCheck {
  lag: boolean;
  writes: boolean;
  idle: boolean;
}

export function goals(r: BenchResult): GoalCheck {
  const p99 = percentile(r.lag.stepLagsMs, 99);
  return {
    lag: r.lag.missingTransitions === 0 && p99 < 1000,
    writes: writesPerStep(r) <= 3,
    idle: r.idle.valid && r.idle.writes.total === 0,
  };
}

export const TABLE_HEADER = [
  "| rollouts (namespaces) | steps | step lag p50 / p99 / max | start latency p50 / p99 | writes per step (per weight change) | writes per rollout: target + status + events + other | operator RSS peak / idle | operator CPU avg / peak / idle | apiserver CPU / other load | idle writes per min | goals (lag, writes, idle) |",
  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
];

/** One markdown table row per run; rows of several runs share TABLE_HEADER. */
export function tableRow(r: BenchResult): string {
  const lag = r.lag.stepLagsMs;
  const start = r.lag.startLatenciesMs;
  const per = (n: number) => num(n / r.rollouts, 1);
  const g = goals(r);
  const mark = (ok: boolean) => (ok ? "✅" : "❌");
  const missing = r.lag.missingTransitions ? ` (${r.lag.missingTransitions} missing)` : "";
  return (
    "| " +
    [
      `${r.rollouts} (${r.namespaces})`,
      `${r.stepsPerRollout}: ${r.weights.join("→")}%, pauses ${r.pauseSeconds} s`,
      `${ms(percentile(lag, 50))} / ${ms(percentile(lag, 99))} / ${ms(Math.max(...lag))}${missing}`,
      `${ms(percentile(start, 50))} / ${ms(percentile(start, 99))}`,
      `${num(writesPerStep(r))} (${num(writesPerWeightChange(r))})`,
      `${per(r.writes.total)}: ${per(r.writes.target)} + ${per(r.writes.status)} + ${per(r.writes.events)} + ${per(r.writes.rollout + r.writes.other)}`,
      `${num(r.operator.rssPeakMiB, 0)} / ${num(r.operator.rssIdleMiB, 0)} MiB`,
      `${num(r.operator.cpuActivePercent, 0)} % / ${num(r.operator.cpuPeakPercent, 0)} % / ${num(r.operator.cpuIdlePercent, 1)} %`,
      `${num(r.controlPlaneCpuPercent.apiserver, 0)} % / ${num(r.otherCpuPercent, 0)} %`,
      r.idle.valid
        ? num(idleWritesPerMinute(r), 1)
        : `not idle (${r.lag.finished}/${r.rollouts} finished)`,
      `${mark(g.lag)} ${mark(g.writes)} ${mark(g.idle)}`,
    ].join(" | ") +
    " |"
  );
}
