// paired-comparison: canary against stable over the same window on time to first token (per
// uncached prompt token), inter-token latency and error rate. The math is in
// capabilities/analysis/README.md ("paired-comparison").
//
// One query, one number: the worst signal's score, each score being "observed / allowed", so the
// gate passes at <= 1 and fails above. It is empty — Inconclusive, never Successful — while either
// side has fewer than minRequests requests in the window, or while any chosen signal has no finite
// value on both sides (`count(...) == N`; NaN scores are dropped first because max() skips them).

import { type ArgSpec, MIN_REQUESTS, type PairedSignal, parseSignals, SCOPE_ARGS } from "./args";
import type { Builtin, SeriesMatch } from "./gates";
import { type SourceMetrics, VLLM_PREFIX_CACHE } from "./metric-sources";

type Side = "canary" | "stable";

/**
 * What a counter gained in the window, summed over who's series: one label-less sample, or none.
 * Not increase(): it extrapolates each series by its own first value, so on series younger than
 * the window (a new canary pool's) two counters' increases are off by different factors and
 * their ratio (cache hits / queries) is biased. The value now minus the value a window ago, or
 * the whole value for a series younger than the window, is exact and alike for every counter; a
 * counter reset in the window (a restarted server) counts 0 for that series.
 */
function sumGained(metric: string, m: SeriesMatch, who: Side, window: string, extra?: string) {
  const matchers = [`${m.label}="{{${who}}}"`, ...m.common, ...(extra ? [extra] : [])];
  const series = `${metric}{${matchers.join(",")}}`;
  return `sum(clamp_min(${series} - ${series} offset ${window}, 0) or ${series})`;
}

/** The PromQL of one side's quantities; undefined where the source lacks a metric. */
function sideQuantities(metrics: SourceMetrics, m: SeriesMatch, who: Side, window: string) {
  const inc = (metric: string, extra?: string) => sumGained(metric, m, who, window, extra);
  // Means over each histogram's own count: a server records TTFT, prompt length and duration at
  // different moments of a request, so sums over one window can disagree while requests run.
  const mean = (histogram: string) => `(${inc(`${histogram}_sum`)} / ${inc(`${histogram}_count`)})`;
  const requests = inc(metrics.requests);
  // Cached share of prompt tokens from vLLM's prefix cache counters; none (prefix caching off,
  // servers not scraped with this label, adapters) counts as 0: prompt length alone normalises.
  const cachedShare =
    `((${inc(VLLM_PREFIX_CACHE.hits)} / (${inc(VLLM_PREFIX_CACHE.queries)} > 0))` +
    ` or on() vector(0))`;
  // At least one uncached token per request (vLLM always computes the last prompt token), so a
  // fully cached window never divides by zero.
  const uncachedPerRequest =
    metrics.promptTokens && `clamp_min(${mean(metrics.promptTokens)} * (1 - ${cachedShare}), 1)`;
  const ttftPerToken =
    metrics.ttft && uncachedPerRequest && `(${mean(metrics.ttft)} / ${uncachedPerRequest})`;
  let itl: string | undefined;
  if (metrics.itl) {
    itl = mean(metrics.itl);
  } else if (metrics.ttft && metrics.outputTokens) {
    // Mean time after the first token over the mean gaps between tokens (n - 1 per request).
    itl =
      `((${mean(metrics.duration)} - ${mean(metrics.ttft)})` +
      ` / ((${mean(metrics.outputTokens)} - 1) > 0))`;
  }
  // No error series at all means no errors.
  const errorRate = `((${inc(metrics.errors, metrics.errorMatcher)} or on() vector(0)) / ${requests})`;
  return { requests, ttftPerToken, itl, errorRate };
}

/** Each chosen signal's score (observed / allowed) as PromQL, or undefined if one is unavailable. */
function scores(
  a: Record<string, string>,
  signals: PairedSignal[],
  canary: ReturnType<typeof sideQuantities>,
  stable: ReturnType<typeof sideQuantities>,
): Map<PairedSignal, string> | undefined {
  const out = new Map<PairedSignal, string>();
  for (const signal of signals) {
    let score: string | undefined;
    if (signal === "ttft" && canary.ttftPerToken && stable.ttftPerToken) {
      score = `(${canary.ttftPerToken} / ${stable.ttftPerToken}) / ${a.maxTtftRatio}`;
    } else if (signal === "itl" && canary.itl && stable.itl) {
      score = `(${canary.itl} / ${stable.itl}) / ${a.maxItlRatio}`;
    } else if (signal === "errors") {
      score = `(${canary.errorRate} - ${stable.errorRate}) / ${a.maxErrorRateDelta}`;
    }
    if (score === undefined) return undefined;
    out.set(signal, score);
  }
  return out;
}

const args: Record<string, ArgSpec> = {
  signals: {
    kind: "signals",
    default: "ttft,itl,errors",
    help: "what to compare, a comma list of ttft (per uncached prompt token), itl (mean inter-token latency), errors (error rate)",
  },
  maxTtftRatio: {
    kind: "positive",
    default: "1.2",
    help: "allowed canary/stable ratio of mean TTFT per uncached prompt token",
  },
  maxItlRatio: {
    kind: "positive",
    default: "1.2",
    help: "allowed canary/stable ratio of mean inter-token latency",
  },
  maxErrorRateDelta: {
    kind: "fraction",
    default: "0.01",
    help: "allowed canary error rate minus stable error rate (0.01: one percentage point)",
  },
  minRequests: {
    ...MIN_REQUESTS,
    default: "50",
    help: "requests in the window on EACH side (canary and stable) below which the gate is Inconclusive",
  },
  window: { kind: "duration", default: "5m", help: "the window both sides are measured over" },
  ...SCOPE_ARGS,
};

export const PAIRED_COMPARISON: Builtin = {
  description:
    "canary vs stable over the same window: TTFT per uncached prompt token, inter-token latency, error rate (Inconclusive while either side has fewer than minRequests)",
  args,
  build: (a, match, metrics) => {
    const parsed = parseSignals(a.signals);
    if ("error" in parsed) return undefined; // validated before: unreachable
    const canary = sideQuantities(metrics, match, "canary", a.window);
    const stable = sideQuantities(metrics, match, "stable", a.window);
    const byName = scores(a, parsed.signals, canary, stable);
    if (byName === undefined) return undefined; // this source lacks a chosen signal's metrics
    // A label per signal keeps them apart in `or`; `>= -Inf` drops NaN (0/0), keeps +Inf.
    const all = [...byName]
      .map(([signal, score]) => `label_replace((${score}) >= -Inf, "signal", "${signal}", "", "")`)
      .join(" or ");
    return {
      query:
        `max(${all}) and on() (count(${all}) == ${byName.size})` +
        ` and on() (${canary.requests} >= ${a.minRequests})` +
        ` and on() (${stable.requests} >= ${a.minRequests})`,
      successCondition: "len(result) == 1 and result[0] <= 1",
      failureCondition: "len(result) == 1 and result[0] > 1",
    };
  },
};
