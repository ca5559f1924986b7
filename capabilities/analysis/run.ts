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
// Everything here is pure except measureDue, which runs the due queries.

import { BuiltinError, expandBuiltin, validateBuiltin } from "./builtins";
import {
  durationMs,
  durationProblem,
  isDuration,
  MAX_TIMEOUT,
  MAX_TIMEOUT_MS,
  MAX_WAIT,
  MAX_WAIT_MS,
} from "../duration";
import { ExpressionError, evaluate, parse, parseCached } from "./expr";
import { TemplateError, renderQuery, variablesFor, type QueryVariables } from "./promql";
import { isPermanentPrometheusError } from "./prometheus";
import { GateCredentialsError } from "./credentials";
import type {
  AnalysisRunStatus,
  AnalysisSpec,
  Measurement,
  MeasurementPhase,
  MetricPhase,
  MetricRunStatus,
  MetricSpec,
  ProviderSpec,
  QueryResult,
  ResolvedMetric,
  RunPhase,
  TemplateContext,
} from "./types";

export const DEFAULT_INTERVAL = "30s";
export const DEFAULT_MEASUREMENTS_TO_KEEP = 5;
export const MAX_MEASUREMENTS_TO_KEEP = 50;
export const DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4;
/** Retry delay after an Error when the metric has no explicit interval (Argo: 10s). */
export const ERROR_RETRY_MS = 10_000;
const MAX_VALUES_SHOWN = 10;

const FINAL: ReadonlySet<MetricPhase> = new Set(["Successful", "Failed", "Inconclusive", "Error"]);
/** Worst last (Argo's analysisStatusOrder). */
const SEVERITY: Record<MeasurementPhase, number> = {
  Successful: 0,
  Inconclusive: 1,
  Error: 2,
  Failed: 3,
};

const iso = (d: Date) => d.toISOString();
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
// Validation and resolution

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isWhole(value: unknown, min: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= min;
}

function validateProvider(provider: unknown, where: string): string[] {
  if (!isRecord(provider)) return [`${where} must be an object with an address`];
  const errors: string[] = [];
  if (typeof provider.address !== "string" || provider.address === "") {
    errors.push(`${where}.address is required`);
  } else {
    try {
      const url = new URL(provider.address);
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        errors.push(`${where}.address must start with http:// or https://`);
      }
    } catch {
      errors.push(`${where}.address ${JSON.stringify(provider.address)} is not a URL`);
    }
  }
  if (provider.timeout !== undefined) {
    const problem = durationProblem(
      `${where}.timeout`,
      provider.timeout,
      MAX_TIMEOUT_MS,
      MAX_TIMEOUT,
      true,
    );
    if (problem) errors.push(problem);
  }
  for (const ref of ["bearerTokenSecretRef", "caSecretRef"] as const) {
    const value = provider[ref];
    if (value === undefined) continue;
    if (
      !isRecord(value) ||
      typeof value.name !== "string" ||
      !value.name ||
      typeof value.key !== "string" ||
      !value.key
    ) {
      errors.push(`${where}.${ref} needs a name and a key`);
    }
  }
  return errors;
}

/** Placeholder values for checking a query template before the rollout's values are known. */
function sampleVariables(metric: MetricSpec): QueryVariables {
  const interval =
    typeof metric.interval === "string" && isDuration(metric.interval)
      ? metric.interval
      : DEFAULT_INTERVAL;
  return {
    canary: "canary",
    stable: "stable",
    namespace: "namespace",
    rollout: "rollout",
    modelName: "model",
    pool: "pool",
    weight: 0,
    interval,
    args: isRecord(metric.args) ? (metric.args as Record<string, string>) : {},
  };
}

function validateMetric(metric: unknown, where: string, defaultProvider?: ProviderSpec): string[] {
  if (!isRecord(metric)) return [`${where} must be an object`];
  const m = metric as unknown as MetricSpec;
  const errors: string[] = [];
  const add = (message: string) => errors.push(`${where}: ${message}`);

  if (typeof m.name !== "string" || m.name.trim() === "") add("name is required");
  const hasQuery = m.query !== undefined;
  const hasTemplate = m.template !== undefined;
  if (hasQuery === hasTemplate) add("set exactly one of query and template");

  if (m.args !== undefined) {
    if (!isRecord(m.args)) add("args must be a map of strings");
    else {
      for (const [k, v] of Object.entries(m.args)) {
        if (typeof v !== "string") add(`args.${k} must be a string (quote numbers: "1.2")`);
      }
    }
  }

  if (hasTemplate) {
    if (typeof m.template !== "string") add("template must be a string");
    else {
      const args = isRecord(m.args) ? (m.args as Record<string, string>) : {};
      for (const problem of validateBuiltin(m.template, args)) add(problem);
    }
    for (const key of ["successCondition", "failureCondition"] as const) {
      if (m[key] !== undefined)
        add(`${key} cannot be combined with template (it brings its own conditions)`);
    }
  } else if (hasQuery) {
    if (typeof m.query !== "string" || m.query.trim() === "")
      add("query must be a non-empty string");
    else {
      try {
        renderQuery(m.query, sampleVariables(m));
      } catch (err) {
        if (err instanceof TemplateError) add(`query: ${err.message}`);
        else throw err;
      }
    }
    for (const key of ["successCondition", "failureCondition"] as const) {
      const source = m[key];
      if (source === undefined) continue;
      if (typeof source !== "string") {
        add(`${key} must be a string`);
        continue;
      }
      try {
        parse(source);
      } catch (err) {
        if (err instanceof ExpressionError) add(`${key}: ${err.message}`);
        else throw err;
      }
    }
  }

  if (m.interval !== undefined) {
    const problem = durationProblem("interval", m.interval, MAX_WAIT_MS, MAX_WAIT, true);
    if (problem) add(problem);
  }
  if (m.initialDelay !== undefined) {
    const problem = durationProblem("initialDelay", m.initialDelay, MAX_WAIT_MS, MAX_WAIT);
    if (problem) add(problem);
  }
  if (m.count !== undefined && !isWhole(m.count, 1)) add("count must be a whole number >= 1");
  for (const key of ["failureLimit", "inconclusiveLimit", "consecutiveErrorLimit"] as const) {
    if (m[key] !== undefined && !isWhole(m[key], 0)) add(`${key} must be a whole number >= 0`);
  }
  for (const key of ["dryRun", "multipleSeries"] as const) {
    if (m[key] !== undefined && typeof m[key] !== "boolean") add(`${key} must be true or false`);
  }

  const provider = m.prometheus ?? defaultProvider;
  if (provider === undefined) {
    add("no Prometheus address: set spec.prometheus or this metric's prometheus");
  } else {
    for (const problem of validateProvider(
      provider,
      m.prometheus ? "prometheus" : "default prometheus",
    )) {
      add(problem);
    }
  }
  return errors;
}

/**
 * Everything wrong with an analysis spec, as readable messages (empty when valid): every
 * condition parsed, templates and args checked, durations and limits checked, a provider present
 * (the metric's own or `defaultProvider`, i.e. spec.prometheus).
 */
export function validateAnalysis(spec: AnalysisSpec, defaultProvider?: ProviderSpec): string[] {
  if (!isRecord(spec)) return ["analysis must be an object with metrics"];
  const errors: string[] = [];
  if (!Array.isArray(spec.metrics) || spec.metrics.length === 0) {
    return ["metrics: at least one metric is required"];
  }
  if (
    spec.measurementsToKeep !== undefined &&
    !(isWhole(spec.measurementsToKeep, 1) && spec.measurementsToKeep <= MAX_MEASUREMENTS_TO_KEEP)
  ) {
    errors.push(`measurementsToKeep must be a whole number from 1 to ${MAX_MEASUREMENTS_TO_KEEP}`);
  }
  const seen = new Set<string>();
  spec.metrics.forEach((metric: unknown, i) => {
    const name = isRecord(metric) && typeof metric.name === "string" ? metric.name : "";
    const where = name ? `metrics[${i}] (${name})` : `metrics[${i}]`;
    if (name && seen.has(name)) errors.push(`${where}: duplicate metric name`);
    if (name) seen.add(name);
    errors.push(...validateMetric(metric, where, defaultProvider));
  });
  return errors;
}

/**
 * The final query and conditions of one metric for this rollout. Throws TemplateError or
 * BuiltinError when the spec or the context does not allow it (validateAnalysis catches the
 * spec part up front).
 */
export function resolveMetric(
  metric: MetricSpec,
  ctx: TemplateContext,
  defaultProvider?: ProviderSpec,
): ResolvedMetric {
  const vars = variablesFor(ctx, metric);
  let query: string;
  let successCondition = metric.successCondition;
  let failureCondition = metric.failureCondition;
  if (metric.template !== undefined) {
    const expansion = expandBuiltin(metric.template, metric.args, {
      scope: ctx.scope,
      weight: ctx.weight,
      modelName: ctx.modelName,
    });
    query = renderQuery(expansion.query, vars);
    successCondition = expansion.successCondition;
    failureCondition = expansion.failureCondition;
  } else if (typeof metric.query === "string") {
    query = renderQuery(metric.query, vars);
  } else {
    throw new TemplateError(`metric ${metric.name} has neither query nor template`);
  }
  return {
    name: metric.name,
    query,
    successCondition,
    failureCondition,
    multipleSeries: metric.multipleSeries === true,
    dryRun: metric.dryRun === true,
    provider: metric.prometheus ?? defaultProvider,
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
// One measurement

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

function formatLabels(labels: Record<string, string>): string {
  return `{${Object.entries(labels)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(", ")}}`;
}

type Outcome = boolean | Error;

function judge(
  source: string | undefined,
  result: number | readonly number[],
): Outcome | undefined {
  if (source === undefined) return undefined;
  try {
    return evaluate(parseCached(source), { result });
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** A measurement of an error that happened before or instead of a query result. */
export function errorMeasurement(message: string, now: Date, startedAt: Date = now): Measurement {
  return { phase: "Error", message, startedAt: iso(startedAt), finishedAt: iso(now) };
}

/**
 * Judge one query outcome (a result, or the error the query threw) against the metric's
 * conditions. Several series without multipleSeries, a condition that cannot be evaluated and a
 * failed query are Error; an empty vector or a NaN is never Successful.
 */
export function measurementFrom(
  metric: Pick<ResolvedMetric, "successCondition" | "failureCondition" | "multipleSeries">,
  outcome: QueryResult | Error,
  now: Date,
  startedAt: Date = now,
): Measurement {
  const base = { startedAt: iso(startedAt), finishedAt: iso(now) };
  if (outcome instanceof Error) return { phase: "Error", message: outcome.message, ...base };

  let result: number | readonly number[];
  let value: string;
  if (outcome.kind === "scalar") {
    result = outcome.value;
    value = formatNumber(outcome.value);
  } else {
    // Prometheus does not order a vector; sort by labels so result[i] is stable between runs.
    const series = outcome.series
      .map(s => ({ key: formatLabels(s.labels), ...s }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    result = series.map(s => s.value);
    // Keep status small: a long vector is shown by its first elements.
    const shownValues = result.slice(0, MAX_VALUES_SHOWN).map(formatNumber);
    if (result.length > MAX_VALUES_SHOWN)
      shownValues.push(`… ${result.length - MAX_VALUES_SHOWN} more`);
    value = `[${shownValues.join(", ")}]`;
    if (series.length > 1 && !metric.multipleSeries) {
      const shown = series
        .slice(0, 3)
        .map(s => s.key)
        .join(", ");
      return {
        phase: "Error",
        value,
        message:
          `query returned ${series.length} series where at most 1 was expected (aggregate it, e.g. sum(...), or set multipleSeries: true): ` +
          shown +
          (series.length > 3 ? `, … ${series.length - 3} more` : ""),
        ...base,
      };
    }
  }

  const values = typeof result === "number" ? [result] : result;
  const noData =
    values.length === 0
      ? "empty result"
      : values.some(Number.isNaN)
        ? "NaN in the result"
        : undefined;
  const { successCondition: success, failureCondition: failure } = metric;
  const s = judge(success, result);
  const f = judge(failure, result);
  const quote = (text: string | undefined) => JSON.stringify(text);

  if (noData) {
    if (f === true) {
      return {
        phase: "Failed",
        value,
        message: `failureCondition ${quote(failure)} is true (${noData})`,
        ...base,
      };
    }
    return {
      phase: "Inconclusive",
      value,
      message: `no data (${noData}): never a success`,
      ...base,
    };
  }
  for (const [key, source, judged] of [
    ["successCondition", success, s],
    ["failureCondition", failure, f],
  ] as const) {
    if (judged instanceof Error) {
      return {
        phase: "Error",
        value,
        message: `${key} ${quote(source)}: ${judged.message}`,
        ...base,
      };
    }
  }
  if (success === undefined && failure === undefined) {
    return { phase: "Successful", value, message: "no conditions: recorded only", ...base };
  }
  if (f === true) {
    return {
      phase: "Failed",
      value,
      message: `failureCondition ${quote(failure)} is true`,
      ...base,
    };
  }
  if (failure === undefined && s === false) {
    return {
      phase: "Failed",
      value,
      message: `successCondition ${quote(success)} is false`,
      ...base,
    };
  }
  if (success === undefined) {
    return {
      phase: "Successful",
      value,
      message: `failureCondition ${quote(failure)} is false`,
      ...base,
    };
  }
  if (s === false) {
    return {
      phase: "Inconclusive",
      value,
      message: `neither successCondition ${quote(success)} nor failureCondition ${quote(failure)} is true`,
      ...base,
    };
  }
  return {
    phase: "Successful",
    value,
    message: `successCondition ${quote(success)} is true`,
    ...base,
  };
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
// Reading the verdict

export type Decision = "Pending" | "Pass" | "Fail" | "Inconclusive";

export interface Verdict {
  /** Pending: keep waiting; Pass: may proceed; Fail: roll back (Failed or Error); Inconclusive: policy. */
  decision: Decision;
  phase: RunPhase;
  message: string;
}

/** What the engine should do with a run. Error counts as Fail. */
export function verdictOf(run: AnalysisRunStatus): Verdict {
  const decision: Decision =
    run.phase === "Running"
      ? "Pending"
      : run.phase === "Successful"
        ? "Pass"
        : run.phase === "Inconclusive"
          ? "Inconclusive"
          : "Fail";
  return { decision, phase: run.phase, message: run.message ?? summarize(run) };
}

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

// ---------------------------------------------------------------------------------------------
// The only I/O: run the due queries

export interface MeasureContext extends TemplateContext {
  /** spec.prometheus, used by metrics without their own provider. */
  defaultProvider?: ProviderSpec;
}

export type QueryFunction = (promql: string, provider: ProviderSpec) => Promise<QueryResult>;

/**
 * Measure every due metric concurrently and return the updated run (unchanged when nothing is
 * due or the run has a verdict). A query that throws becomes an Error measurement.
 */
export async function measureDue(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  ctx: MeasureContext,
  now: Date,
  query: QueryFunction,
): Promise<AnalysisRunStatus> {
  if (run.phase !== "Running") return run;
  const { due } = dueMetrics(spec, run, now);
  const started = performance.now();
  const finishedAt = () => new Date(now.getTime() + Math.round(performance.now() - started));
  const measurements = await Promise.all(
    due.map(async (name): Promise<NamedMeasurement> => {
      const metric = spec.metrics.find(m => m.name === name) as MetricSpec;
      let resolved: ResolvedMetric;
      try {
        resolved = resolveMetric(metric, ctx, ctx.defaultProvider);
      } catch (err) {
        const kind =
          err instanceof BuiltinError || err instanceof TemplateError
            ? "cannot build the query"
            : "error";
        return { name, measurement: errorMeasurement(`${kind}: ${(err as Error).message}`, now) };
      }
      if (!resolved.provider) {
        return { name, measurement: errorMeasurement("no Prometheus provider configured", now) };
      }
      let outcome: QueryResult | Error;
      try {
        outcome = await query(resolved.query, resolved.provider);
      } catch (err) {
        outcome = err instanceof Error ? err : new Error(String(err));
      }
      const measurement = measurementFrom(resolved, outcome, finishedAt(), now);
      if (isPermanentQueryError(outcome)) measurement.permanent = true;
      return { name, measurement };
    }),
  );
  return applyMeasurements(spec, run, measurements);
}

/**
 * An error that retrying alone will not fix: Prometheus refused the query for good (a parse
 * error, bad_data, an unknown function), the address is refused, or the gate's credentials are
 * unusable. Such a measurement ends its metric at once (reason InvalidAnalysis).
 */
export function isPermanentQueryError(err: unknown): boolean {
  return isPermanentPrometheusError(err) || err instanceof GateCredentialsError;
}

/** The gates of a rollout to check before any traffic moves, each with where it is in the spec. */
export interface GateToCheck {
  where: string;
  spec: AnalysisSpec;
}

/** What Prometheus said of every query: refused for good (invalid) or not reachable now. */
export interface QueryCheck {
  invalid: string[];
  unavailable: string[];
}

/**
 * Runs every metric's query once, rendered with the rollout's values, so that a query Prometheus
 * refuses is found while all traffic is still on stable. Results are not judged (a canary without
 * traffic has no data yet): only whether Prometheus accepts the query.
 */
export async function checkQueries(
  gates: readonly GateToCheck[],
  ctx: MeasureContext,
  query: QueryFunction,
): Promise<QueryCheck> {
  const check: QueryCheck = { invalid: [], unavailable: [] };
  const jobs = gates.flatMap(gate =>
    gate.spec.metrics.map(async (metric, i) => {
      const where = `${gate.where}.metrics[${i}] (${metric.name})`;
      let resolved: ResolvedMetric;
      try {
        resolved = resolveMetric(metric, ctx, ctx.defaultProvider);
      } catch (err) {
        check.invalid.push(`${where}: cannot build the query: ${(err as Error).message}`);
        return;
      }
      if (!resolved.provider) {
        check.invalid.push(`${where}: no Prometheus provider configured`);
        return;
      }
      try {
        await query(resolved.query, resolved.provider);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        (isPermanentQueryError(err) ? check.invalid : check.unavailable).push(
          `${where}: ${message}`,
        );
      }
    }),
  );
  await Promise.all(jobs);
  // Same input, same message: the status is not rewritten for an ordering difference.
  check.invalid.sort();
  check.unavailable.sort();
  return check;
}
