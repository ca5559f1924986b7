// Due measurements as queries, their outcomes judged into the run, and the check of every
// query before the first weight. The reconciler runs the queries (runDueQueries, checkQueries).
import { BuiltinError } from "./builtins";
import { GateCredentialsError } from "./credentials";
import { errorMeasurement, measurementFrom } from "./measure";
import { isPermanentPrometheusError } from "./prometheus/errors";
import { TemplateError } from "./promql";
import { applyMeasurements, dueMetrics } from "./run";
import { resolveMetric } from "./validate";
import { ProbeRefusedError } from "./probe/errors";
import { probeMeasurement } from "./probe/judge";
import { ProbeTemplateError, resolveProbe } from "./probe/render";
import type { ProbeObservation, ResolvedProbe } from "./probe/types";
import type {
  AnalysisRunStatus,
  AnalysisSpec,
  Measurement,
  MetricSpec,
  ProviderSpec,
  QueryResult,
  ResolvedMetric,
  TemplateContext,
} from "./types";

// ---------------------------------------------------------------------------------------------
// Due queries and their outcomes (the reconciler runs the queries; everything else is here)

export interface MeasureContext extends TemplateContext {
  /** spec.prometheus, used by metrics without their own provider. */
  defaultProvider?: ProviderSpec;
}

export type QueryFunction = (promql: string, provider: ProviderSpec) => Promise<QueryResult>;

/** Sends a probe's requests and returns the answers (the reconciler's; throws ProbeRefusedError). */
export type ProbeFunction = (probe: ResolvedProbe) => Promise<ProbeObservation>;

/** A measurement due now: the query to run, the probe to send, or why it cannot be built. */
export type DueQuery =
  | { metric: string; query: string; provider: ProviderSpec }
  | { metric: string; probe: ResolvedProbe }
  | { metric: string; error: string };

/** What came of one due query or probe. */
export type QueryOutcome =
  | { result: QueryResult }
  | { probe: ProbeObservation }
  | { error: string; permanent: boolean };

export interface ObservedOutcome {
  metric: string;
  outcome: QueryOutcome;
  startedAt: string;
  finishedAt: string;
}

/** The queries of every metric due now (none once the run has a verdict). */
export function dueQueries(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  ctx: MeasureContext,
  now: Date,
): DueQuery[] {
  if (run.phase !== "Running") return [];
  return dueMetrics(spec, run, now).due.map(name => {
    const metric = spec.metrics.find(m => m.name === name) as MetricSpec;
    if (metric.probe) return dueProbe(metric, ctx);
    try {
      const resolved = resolveMetric(metric, ctx, ctx.defaultProvider);
      if (!resolved.provider) return { metric: name, error: "no Prometheus provider configured" };
      return { metric: name, query: resolved.query, provider: resolved.provider };
    } catch (err) {
      const kind =
        err instanceof BuiltinError || err instanceof TemplateError
          ? "cannot build the query"
          : "error";
      return { metric: name, error: `${kind}: ${(err as Error).message}` };
    }
  });
}

/** A probe metric's requests, or why they cannot be built for this rollout. */
export function dueProbe(metric: MetricSpec, ctx: TemplateContext): DueQuery {
  try {
    return { metric: metric.name, probe: resolveProbe(metric.probe!, ctx) };
  } catch (err) {
    if (!(err instanceof ProbeTemplateError)) throw err;
    return { metric: metric.name, error: `cannot build the probe: ${err.message}` };
  }
}

/** A probe's answers judged (an Error measurement when the expectations cannot be rendered). */
export function probeOutcomeMeasurement(
  metric: MetricSpec,
  observation: ProbeObservation,
  ctx: TemplateContext,
  finished: Date,
  started: Date,
): Measurement {
  if (!metric.probe)
    return errorMeasurement("probe answers for a metric that has no probe", finished, started);
  try {
    return probeMeasurement(
      { ...metric, probe: metric.probe },
      observation,
      ctx,
      finished,
      started,
    );
  } catch (err) {
    if (!(err instanceof ProbeTemplateError)) throw err;
    return errorMeasurement(`cannot judge the probe: ${err.message}`, finished, started);
  }
}

/** Judges each outcome against its metric's conditions and records it in the run. */
export function recordOutcomes(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  ctx: TemplateContext,
  outcomes: readonly ObservedOutcome[],
): AnalysisRunStatus {
  if (run.phase !== "Running" || outcomes.length === 0) return run;
  const measurements = outcomes.flatMap(({ metric: name, outcome, startedAt, finishedAt }) => {
    const metric = spec.metrics.find(m => m.name === name);
    if (!metric) return [];
    const started = new Date(startedAt);
    const finished = new Date(finishedAt);
    let measurement: Measurement;
    if ("error" in outcome) {
      measurement = errorMeasurement(outcome.error, finished, started);
      if (outcome.permanent) measurement.permanent = true;
    } else if ("probe" in outcome) {
      measurement = probeOutcomeMeasurement(metric, outcome.probe, ctx, finished, started);
    } else {
      let resolved: Pick<
        ResolvedMetric,
        "successCondition" | "failureCondition" | "multipleSeries"
      >;
      try {
        resolved = resolveMetric(metric, ctx);
      } catch (err) {
        measurement = errorMeasurement(
          `cannot build the query: ${(err as Error).message}`,
          finished,
          started,
        );
        return [{ name, measurement }];
      }
      measurement = measurementFrom(resolved, outcome.result, finished, started);
    }
    return [{ name, measurement }];
  });
  return applyMeasurements(spec, run, measurements);
}

/** Runs due queries (the reconciler's only gate I/O): a query that throws is an error outcome. */
export async function runDueQueries(
  due: readonly DueQuery[],
  query: QueryFunction,
  now: Date,
  probe?: ProbeFunction,
): Promise<ObservedOutcome[]> {
  const started = performance.now();
  const finishedAt = () =>
    new Date(now.getTime() + Math.round(performance.now() - started)).toISOString();
  return Promise.all(
    due.map(async (d): Promise<ObservedOutcome> => {
      const base = { metric: d.metric, startedAt: now.toISOString() };
      if ("error" in d) {
        return {
          ...base,
          outcome: { error: d.error, permanent: true },
          finishedAt: base.startedAt,
        };
      }
      try {
        if ("probe" in d) {
          if (!probe) throw new Error("probes cannot be sent here");
          return { ...base, outcome: { probe: await probe(d.probe) }, finishedAt: finishedAt() };
        }
        const result = await query(d.query, d.provider);
        return { ...base, outcome: { result }, finishedAt: finishedAt() };
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        const outcome = { error: message, permanent: isPermanentQueryError(err) };
        return { ...base, outcome, finishedAt: finishedAt() };
      }
    }),
  );
}

/**
 * An error that retrying alone will not fix: Prometheus refused the query for good (a parse
 * error, bad_data, an unknown function), the address is refused, or the gate's credentials are
 * unusable. Such a measurement ends its metric at once (reason InvalidAnalysis).
 */
export function isPermanentQueryError(err: unknown): boolean {
  return (
    isPermanentPrometheusError(err) ||
    err instanceof GateCredentialsError ||
    err instanceof ProbeRefusedError
  );
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
      if (metric.probe) return; // no query: probes are checked by checkProbes
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
