// The built-in gates themselves: per template, its args and how it builds a PromQL query and a
// success and a failure condition from one metric source's names.
//
// Low traffic is never a success: every query is filtered to nothing (`>= minRequests`, `and on()`)
// while the canary has fewer than minRequests requests in the window, and both conditions require
// exactly one finite sample, so an empty result or NaN is Inconclusive.

import { type ArgSpec, MIN_REQUESTS, SCOPE_ARGS, WINDOW } from "./args";
import type { SourceMetrics } from "./metric-sources";
import { PAIRED_COMPARISON } from "./paired";

/** Which series a built-in reads, as PromQL matcher text (placeholders are rendered later). */
export interface SeriesMatch {
  /** The label that tells canary from stable: pool or target_model_name. */
  label: string;
  /**
   * Matchers every series gets: the model_name matcher (traffic-split, when a model is known),
   * the namespace label, the selector arg.
   */
  common: string[];
}

export interface Builtin {
  description: string;
  args: Record<string, ArgSpec>;
  build(
    a: Record<string, string>,
    match: SeriesMatch,
    metrics: SourceMetrics,
  ):
    | {
        query: string;
        successCondition: string;
        failureCondition: string;
      }
    | undefined;
}

/** `{label="{{who}}",...}` — values are substituted and escaped later by renderQuery. */
function selector(m: SeriesMatch, who: "canary" | "stable", extra?: string): string {
  return `{${[`${m.label}="{{${who}}}"`, ...m.common, ...(extra ? [extra] : [])].join(",")}}`;
}

function increase(
  metric: string,
  m: SeriesMatch,
  who: "canary" | "stable",
  window: string,
  extra?: string,
) {
  return `sum(increase(${metric}${selector(m, who, extra)}[${window}]))`;
}

function p95(histogram: string, m: SeriesMatch, who: "canary" | "stable", window: string) {
  return `histogram_quantile(0.95, sum by (le) (rate(${histogram}_bucket${selector(m, who)}[${window}])))`;
}

/** One sample and it satisfies `check` (NaN satisfies no comparison). */
function single(check: string): string {
  return `len(result) == 1 and ${check}`;
}

function p95Ratio(histogramOf: (s: SourceMetrics) => string | undefined, what: string): Builtin {
  return {
    description: `canary p95 ${what} <= maxRatio x stable p95 ${what}`,
    args: {
      maxRatio: { kind: "positive", default: "1.2", help: "allowed canary/stable p95 ratio" },
      minRequests: MIN_REQUESTS,
      window: WINDOW,
      ...SCOPE_ARGS,
    },
    build: (a, match, metrics) => {
      const histogram = histogramOf(metrics);
      if (histogram === undefined) return undefined;
      return {
        query:
          `(${p95(histogram, match, "canary", a.window)} / ${p95(histogram, match, "stable", a.window)})` +
          ` and on() (${increase(`${histogram}_count`, match, "canary", a.window)} >= ${a.minRequests})` +
          ` and on() (${increase(`${histogram}_count`, match, "stable", a.window)} >= ${a.minRequests})`,
        successCondition: single(`result[0] <= ${a.maxRatio}`),
        failureCondition: single(`result[0] > ${a.maxRatio}`),
      };
    },
  };
}

export const BUILTINS: Record<string, Builtin> = {
  "error-rate": {
    description: "canary error ratio (errors / requests) < maxRatio",
    args: {
      maxRatio: { kind: "fraction", default: "0.05", help: "highest tolerated error ratio" },
      minRequests: MIN_REQUESTS,
      window: WINDOW,
      ...SCOPE_ARGS,
    },
    build: (a, match, metrics) => ({
      // No error series at all means no errors: `or on() vector(0)`.
      query:
        `(${increase(metrics.errors, match, "canary", a.window, metrics.errorMatcher)} or on() vector(0))` +
        ` / (${increase(metrics.requests, match, "canary", a.window)} >= ${a.minRequests})`,
      successCondition: single(`result[0] < ${a.maxRatio}`),
      failureCondition: single(`result[0] >= ${a.maxRatio}`),
    }),
  },
  "latency-p95-ratio": p95Ratio(m => m.duration, "latency"),
  "ttft-p95-ratio": p95Ratio(m => m.ttft, "time to first token"),
  "min-request-count": {
    description: "canary requests in the window >= minRequests (else Inconclusive, never Failed)",
    args: { minRequests: MIN_REQUESTS, window: WINDOW, ...SCOPE_ARGS },
    build: (a, match, metrics) => ({
      query: increase(metrics.requests, match, "canary", a.window),
      successCondition: single(`result[0] >= ${a.minRequests}`),
      // Too little traffic is a reason to wait, not to roll back.
      failureCondition: "false",
    }),
  },
  "traffic-split": {
    description:
      "observed canary share of requests (percent) within tolerance of the configured weight",
    args: {
      weight: { kind: "percent", help: "expected canary weight in percent (default: current)" },
      tolerance: {
        kind: "percent",
        help: "allowed deviation in percentage points (default: 3 standard deviations of a random split of minRequests requests, at least 2)",
      },
      minRequests: { ...MIN_REQUESTS, default: "200" },
      window: { ...WINDOW, default: "1m" },
      modelName: {
        kind: "modelName",
        help: 'count only requests for this model_name (default: the rollout\'s model name in the pools scenario when known, else every model; "*" counts every model)',
      },
      ...SCOPE_ARGS,
    },
    build: (a, match, metrics) => {
      // A pool may serve several models; only the rolled-out one's requests are split (the
      // model_name matcher is in match.common then).
      const canary = `(${increase(metrics.requests, match, "canary", a.window)} or on() vector(0))`;
      const stable = `(${increase(metrics.requests, match, "stable", a.window)} or on() vector(0))`;
      const weight = Number(a.weight);
      const tolerance = a.tolerance ?? defaultTolerance(weight, Number(a.minRequests));
      const deviation = `abs(result[0] - ${weight})`;
      return {
        query: `100 * ${canary} / ((${canary} + ${stable}) >= ${a.minRequests})`,
        successCondition: single(`${deviation} <= ${tolerance}`),
        failureCondition: single(`${deviation} > ${tolerance}`),
      };
    },
  },
  "paired-comparison": PAIRED_COMPARISON,
};

/** 3 sigma of the share of n requests split at random with probability weight%, >= 2 points. */
function defaultTolerance(weightPercent: number, n: number): string {
  const p = weightPercent / 100;
  const sigma = 100 * Math.sqrt((p * (1 - p)) / n);
  return String(Math.max(2, Math.ceil(3 * sigma * 10) / 10));
}

export const BUILTIN_TEMPLATES = Object.keys(BUILTINS);

/** Name, description and args of every built-in, for documentation and `kubectl explain`-like help. */
export function describeBuiltins(): Array<{
  name: string;
  description: string;
  args: Record<string, { default?: string; help: string }>;
}> {
  return Object.entries(BUILTINS).map(([name, b]) => ({
    name,
    description: b.description,
    args: Object.fromEntries(
      Object.entries(b.args).map(([arg, spec]) => [
        arg,
        { default: spec.default, help: spec.help },
      ]),
    ),
  }));
}
