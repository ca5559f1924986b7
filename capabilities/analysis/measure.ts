// One measurement: a query outcome judged against the metric's conditions (pure).
import { evaluate } from "./expr/evaluate";
import { parseCached } from "./expr/parser";
import { MAX_VALUES_SHOWN, iso } from "./run";
import type { Measurement, QueryResult, ResolvedMetric } from "./types";

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
 * The result as the conditions see it (`result`, a vector sorted by labels so result[i] is stable
 * between runs) and as status shows it (`value`, the first few elements); several series where
 * one was expected is an error.
 */
function readResult(
  outcome: QueryResult,
  multipleSeries: boolean | undefined,
): { result: number | readonly number[]; value: string } | { value: string; error: string } {
  if (outcome.kind === "scalar")
    return { result: outcome.value, value: formatNumber(outcome.value) };
  const series = outcome.series
    .map(s => ({ key: formatLabels(s.labels), ...s }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const result = series.map(s => s.value);
  const shownValues = result.slice(0, MAX_VALUES_SHOWN).map(formatNumber);
  if (result.length > MAX_VALUES_SHOWN)
    shownValues.push(`… ${result.length - MAX_VALUES_SHOWN} more`);
  const value = `[${shownValues.join(", ")}]`;
  if (series.length <= 1 || multipleSeries) return { result, value };
  const shown = series
    .slice(0, 3)
    .map(s => s.key)
    .join(", ");
  return {
    value,
    error:
      `query returned ${series.length} series where at most 1 was expected (aggregate it, e.g. sum(...), or set multipleSeries: true): ` +
      shown +
      (series.length > 3 ? `, … ${series.length - 3} more` : ""),
  };
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

  const read = readResult(outcome, metric.multipleSeries);
  if ("error" in read) return { phase: "Error", value: read.value, message: read.error, ...base };
  const { result, value } = read;

  return judgeResult(metric, result, value, base);
}

/** The phase of a measurement from its result: the conditions, never a success without data. */
function judgeResult(
  metric: Pick<ResolvedMetric, "successCondition" | "failureCondition">,
  result: number | readonly number[],
  value: string,
  base: { startedAt: string; finishedAt: string },
): Measurement {
  const values = typeof result === "number" ? [result] : result;
  const noData =
    values.length === 0
      ? "empty result"
      : values.some(Number.isNaN)
        ? "NaN in the result"
        : undefined;
  const { successCondition: success, failureCondition: failure } = metric;
  const judged = { success, failure, s: judge(success, result), f: judge(failure, result) };
  const { phase, message } = noData ? noDataVerdict(judged, noData) : conditionsVerdict(judged);
  return { phase, value, message, ...base };
}

/** Both conditions and what each said on the result (undefined: not given). */
interface Judged {
  success: string | undefined;
  failure: string | undefined;
  s: Outcome | undefined;
  f: Outcome | undefined;
}

type Verdict = Pick<Measurement, "phase" | "message">;

const quote = (text: string | undefined) => JSON.stringify(text);

/** Without data only a failure can be concluded. */
function noDataVerdict({ failure, f }: Judged, noData: string): Verdict {
  if (f === true) {
    return { phase: "Failed", message: `failureCondition ${quote(failure)} is true (${noData})` };
  }
  return { phase: "Inconclusive", message: `no data (${noData}): never a success` };
}

function conditionsVerdict({ success, failure, s, f }: Judged): Verdict {
  for (const [key, source, judged] of [
    ["successCondition", success, s],
    ["failureCondition", failure, f],
  ] as const) {
    if (judged instanceof Error) {
      return { phase: "Error", message: `${key} ${quote(source)}: ${judged.message}` };
    }
  }
  if (success === undefined && failure === undefined) {
    return { phase: "Successful", message: "no conditions: recorded only" };
  }
  if (f === true) return { phase: "Failed", message: `failureCondition ${quote(failure)} is true` };
  if (failure === undefined && s === false) {
    return { phase: "Failed", message: `successCondition ${quote(success)} is false` };
  }
  if (success === undefined) {
    return { phase: "Successful", message: `failureCondition ${quote(failure)} is false` };
  }
  if (s === false) {
    return {
      phase: "Inconclusive",
      message: `neither successCondition ${quote(success)} nor failureCondition ${quote(failure)} is true`,
    };
  }
  return { phase: "Successful", message: `successCondition ${quote(success)} is true` };
}
