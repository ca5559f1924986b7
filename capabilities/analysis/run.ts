// Verdicts of an analysis run, with Argo Rollouts' semantics (analysis/analysis.go):
//
// - A measurement is Successful, Failed, Inconclusive or Error. Success only: false -> Failed;
//   failure only: false -> Successful; both: failure wins, neither true -> Inconclusive; none ->
//   Successful. Our addition: an empty vector or a NaN is never Successful — Failed only if the
//   failureCondition holds, otherwise Inconclusive (a cold canary waits, it is not rolled back).
// - Counters per metric; Error measurements do not count towards `count` and reset nothing but
//   are retried. A metric is Failed when failed > failureLimit (default 0), Inconclusive when
//   inconclusive > inconclusiveLimit (default 0), Error when consecutiveErrors >
//   consecutiveErrorLimit (default 4, so the 5th error in a row), checked in that order; it is
//   Successful when it reached its count with at least one Successful measurement (our addition:
//   a count reached with no success at all is Failed or Inconclusive, never Successful).
// - The run ends as soon as one deciding metric ends Failed / Error / Inconclusive (worst wins:
//   Failed > Error > Inconclusive), and is Successful when every deciding metric is. dryRun
//   metrics are measured and recorded, never decide (a run of only dryRun metrics succeeds when
//   they finished their counts).
// - Count: an explicit `count`, else 1 for a step gate (run.stepIndex set) and unlimited for the
//   background run (it ends Failed/Inconclusive/Error, or via concludeRun when the rollout ends).
// - Schedule: first measurement at startedAt + initialDelay, then every `interval` (default 30s)
//   after the previous one finished; after an Error, retry after `interval` if set, else 10s.
//
// Everything here is pure. validate.ts checks specs, measure.ts judges one measurement,
// queries.ts turns due measurements into queries and outcomes (the reconciler runs them).
import { durationMs } from "../duration";
import type {
  AnalysisRunStatus,
  AnalysisSpec,
  Measurement,
  MeasurementPhase,
  MetricPhase,
  MetricRunStatus,
  MetricSpec,
  RunPhase,
} from "./types";

export const DEFAULT_INTERVAL = "30s";
export const DEFAULT_MEASUREMENTS_TO_KEEP = 5;
export const MAX_MEASUREMENTS_TO_KEEP = 50;
export const DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4;
/** Retry delay after an Error when the metric has no explicit interval (Argo: 10s). */
export const ERROR_RETRY_MS = 10_000;
export const MAX_VALUES_SHOWN = 10;

const FINAL: ReadonlySet<MetricPhase> = new Set(["Successful", "Failed", "Inconclusive", "Error"]);
/** Worst last (Argo's analysisStatusOrder). */
const SEVERITY: Record<MeasurementPhase, number> = {
  Successful: 0,
  Inconclusive: 1,
  Error: 2,
  Failed: 3,
};

export const iso = (d: Date) => d.toISOString();
const isStepGate = (run: AnalysisRunStatus) =>
  run.stepIndex !== undefined && run.stepIndex !== null;

/** A fresh run, as the engine creates it. */
export function startRun(now: Date, stepIndex?: number): AnalysisRunStatus {
  return {
    startedAt: iso(now),
    ...(stepIndex !== undefined ? { stepIndex } : {}),
    phase: "Running",
    metrics: [],
  };
}

// ---------------------------------------------------------------------------------------------
// Scheduling

function intervalMs(metric: MetricSpec): number {
  return durationMs(metric.interval ?? DEFAULT_INTERVAL);
}

/** Measurements a metric needs, undefined = until the run ends. */
export function effectiveCount(metric: MetricSpec, run: AnalysisRunStatus): number | undefined {
  if (metric.count !== undefined) return metric.count;
  return isStepGate(run) ? 1 : undefined;
}

function findStatus(run: AnalysisRunStatus, name: string): MetricRunStatus | undefined {
  return run.metrics.find(m => m.name === name);
}

/** When the metric's next measurement is due (ms since epoch), undefined if it needs no more. */
function dueAt(
  metric: MetricSpec,
  status: MetricRunStatus | undefined,
  run: AnalysisRunStatus,
): number | undefined {
  if (status && FINAL.has(status.phase)) return undefined;
  if (!status?.lastMeasuredAt) {
    return Date.parse(run.startedAt) + (metric.initialDelay ? durationMs(metric.initialDelay) : 0);
  }
  const count = effectiveCount(metric, run);
  if (count !== undefined && status.count >= count) return undefined;
  const gap =
    status.consecutiveErrors > 0 && metric.interval === undefined
      ? ERROR_RETRY_MS
      : intervalMs(metric);
  return Date.parse(status.lastMeasuredAt) + gap;
}

/**
 * Metrics to measure now, and the earliest time another one becomes due (for a requeue). Nothing
 * is due once the run has a verdict.
 */
export function dueMetrics(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  now: Date,
): { due: string[]; nextDueAt?: string } {
  if (run.phase !== "Running") return { due: [] };
  const due: string[] = [];
  let next: number | undefined;
  for (const metric of spec.metrics) {
    const at = dueAt(metric, findStatus(run, metric.name), run);
    if (at === undefined) continue;
    if (at <= now.getTime()) due.push(metric.name);
    else if (next === undefined || at < next) next = at;
  }
  return next === undefined ? { due } : { due, nextDueAt: iso(new Date(next)) };
}

// ---------------------------------------------------------------------------------------------
// Counters and phases

export interface NamedMeasurement {
  name: string;
  measurement: Measurement;
}

function emptyStatus(name: string): MetricRunStatus {
  return {
    name,
    phase: "Pending",
    count: 0,
    successful: 0,
    failed: 0,
    inconclusive: 0,
    error: 0,
    consecutiveErrors: 0,
    measurements: [],
  };
}

/** The metric's phase from its counters, and why. */
function assessMetric(
  metric: MetricSpec,
  status: MetricRunStatus,
  run: AnalysisRunStatus,
): { phase: MetricPhase; reason?: string } {
  if (FINAL.has(status.phase)) return { phase: status.phase };
  if (status.count === 0 && status.error === 0) return { phase: "Pending" };
  if (lastOf(status)?.permanent) {
    return {
      phase: "Error",
      reason: "a permanent error: the query or its configuration must be fixed",
    };
  }
  const failureLimit = metric.failureLimit ?? 0;
  const inconclusiveLimit = metric.inconclusiveLimit ?? 0;
  const errorLimit = metric.consecutiveErrorLimit ?? DEFAULT_CONSECUTIVE_ERROR_LIMIT;
  if (status.failed > failureLimit) {
    return { phase: "Failed", reason: `failed ${status.failed} > failureLimit ${failureLimit}` };
  }
  if (status.inconclusive > inconclusiveLimit) {
    return {
      phase: "Inconclusive",
      reason: `inconclusive ${status.inconclusive} > inconclusiveLimit ${inconclusiveLimit}`,
    };
  }
  if (status.consecutiveErrors > errorLimit) {
    return {
      phase: "Error",
      reason: `${status.consecutiveErrors} consecutive errors > consecutiveErrorLimit ${errorLimit}`,
    };
  }
  const count = effectiveCount(metric, run);
  if (count !== undefined && status.count >= count) {
    if (status.successful > 0) {
      return {
        phase: "Successful",
        reason: `${status.successful} of ${status.count} measurements successful`,
      };
    }
    return {
      phase: status.failed > 0 ? "Failed" : "Inconclusive",
      reason: `count ${count} reached without a successful measurement`,
    };
  }
  return { phase: "Running" };
}

function lastOf(status: MetricRunStatus): Measurement | undefined {
  return status.measurements[status.measurements.length - 1];
}

function describeMetricEnd(status: MetricRunStatus, reason: string | undefined): string {
  const last = lastOf(status);
  const detail = last
    ? `; last value ${last.value ?? "(none)"}: ${last.message ?? last.phase}`
    : "";
  return `metric ${status.name} ${status.phase}${reason ? ` (${reason})` : ""}${detail}`;
}

/** Run phase from metric phases: the worst deciding metric ends it; all deciding Successful passes. */
function assessRun(
  spec: AnalysisSpec,
  statuses: MetricRunStatus[],
  reasons: Map<string, string | undefined>,
): { phase: RunPhase; message?: string } {
  const deciding = statuses.filter(s => !spec.metrics.find(m => m.name === s.name)?.dryRun);
  let worst: MetricRunStatus | undefined;
  for (const status of deciding) {
    if (status.phase === "Failed" || status.phase === "Error" || status.phase === "Inconclusive") {
      if (!worst || SEVERITY[status.phase] > SEVERITY[worst.phase as MeasurementPhase])
        worst = status;
    }
  }
  if (worst) {
    return {
      phase: worst.phase as RunPhase,
      message: describeMetricEnd(worst, reasons.get(worst.name)),
    };
  }
  if (deciding.length > 0 && deciding.every(s => s.phase === "Successful")) {
    return {
      phase: "Successful",
      message: `all metrics successful: ${deciding.map(s => s.name).join(", ")}`,
    };
  }
  // Only dryRun metrics: nothing decides, the run passes once they finished measuring.
  if (deciding.length === 0 && statuses.length > 0 && statuses.every(s => FINAL.has(s.phase))) {
    return { phase: "Successful", message: "all metrics are dryRun: finished measuring" };
  }
  return { phase: "Running" };
}

/**
 * Record measurements (in order) and recompute counters, metric phases and the run phase.
 * Returns a new run; a run that already has a verdict is returned unchanged (verdicts never flip).
 * Measurements for unknown or finished metrics are ignored. `now` is accepted for symmetry with
 * the other functions: measurements carry their own times.
 */
export function applyMeasurements(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  measurements: readonly NamedMeasurement[],
  _now?: Date,
): AnalysisRunStatus {
  if (run.phase !== "Running") return run;
  const keep = spec.measurementsToKeep ?? DEFAULT_MEASUREMENTS_TO_KEEP;
  const statuses = spec.metrics.map(metric => {
    const existing = findStatus(run, metric.name);
    return existing ? structuredClone(existing) : emptyStatus(metric.name);
  });
  const byName = new Map(statuses.map(s => [s.name, s]));

  const reasons = new Map<string, string | undefined>();
  const assess = (metric: MetricSpec, status: MetricRunStatus) => {
    if (FINAL.has(status.phase)) return;
    const { phase, reason } = assessMetric(metric, status, run);
    status.phase = phase;
    reasons.set(metric.name, reason);
  };
  for (const { name, measurement } of measurements) {
    const status = byName.get(name);
    const metric = spec.metrics.find(m => m.name === name);
    if (!status || !metric || FINAL.has(status.phase)) continue;
    switch (measurement.phase) {
      case "Successful":
        status.successful++;
        break;
      case "Failed":
        status.failed++;
        break;
      case "Inconclusive":
        status.inconclusive++;
        break;
      case "Error":
        status.error++;
        status.consecutiveErrors++;
        break;
    }
    if (measurement.phase !== "Error") {
      status.count++;
      status.consecutiveErrors = 0;
    }
    status.lastMeasuredAt = measurement.finishedAt;
    status.measurements.push({ ...measurement });
    if (status.measurements.length > keep) {
      status.measurements.splice(0, status.measurements.length - keep);
    }
    // Assess after each measurement: a later success must not hide an error streak that
    // already crossed its limit.
    assess(metric, status);
  }
  spec.metrics.forEach((metric, i) => assess(metric, statuses[i]));

  const { phase, message } = assessRun(spec, statuses, reasons);
  const next: AnalysisRunStatus = { ...run, phase, metrics: statuses };
  if (message !== undefined && phase !== "Running") next.message = message;
  else delete next.message;
  return next;
}

/**
 * End a run whose metrics may still be measuring (the rollout finished while the background
 * analysis ran). A deciding metric that is not final becomes Successful if it had at least one
 * Successful measurement, else Inconclusive ("no successful measurement"): a missing analysis
 * never lets a rollout pass.
 */
export function concludeRun(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  now: Date,
): AnalysisRunStatus {
  const current = applyMeasurements(spec, run, [], now);
  if (current.phase !== "Running") return current;
  const reasons = new Map<string, string | undefined>();
  const statuses = current.metrics.map(status => {
    if (FINAL.has(status.phase)) return status;
    const metric = spec.metrics.find(m => m.name === status.name);
    if (metric?.dryRun) return status;
    const phase: MetricPhase = status.successful > 0 ? "Successful" : "Inconclusive";
    reasons.set(
      status.name,
      phase === "Successful"
        ? `concluded after ${status.successful} of ${status.count} measurements successful`
        : "no successful measurement before the analysis ended",
    );
    return { ...status, phase };
  });
  const { phase, message } = assessRun(spec, statuses, reasons);
  const finalPhase: RunPhase = phase === "Running" ? "Successful" : phase;
  return {
    ...current,
    phase: finalPhase,
    message: message ?? "concluded",
    metrics: statuses,
  };
}

// ---------------------------------------------------------------------------------------------
// Summaries

/**
 * One line for status messages and Events: the run phase, then per metric its phase, counters,
 * the last value and the condition that decided it.
 */
export function summarize(run: AnalysisRunStatus): string {
  const parts = run.metrics.map(status => {
    const last = lastOf(status);
    const counters = `${status.successful} ok, ${status.failed} failed, ${status.inconclusive} inconclusive, ${status.error} errors`;
    const detail = last
      ? `, last ${last.value ?? "(no value)"}: ${last.message ?? last.phase}`
      : "";
    return `${status.name} ${status.phase} (${counters}${detail})`;
  });
  return `analysis ${run.phase}${parts.length ? ": " + parts.join("; ") : ""}`;
}
