// Built-in LLM gates, usable by name: `template: ttft-p95-ratio, args: {maxRatio: "1.2"}`.
// Each expands to a PromQL template (canary/stable stay {{placeholders}}, escaped by promql.ts)
// and a success and a failure condition. They query the picker's metrics; canary and stable are
// told apart by the `pool` label (scope "pools") or `target_model_name` (scope "adapters").
//
// `metricsSource` says whose metrics (see METRIC_SOURCES): our picker, the upstream endpoint
// picker (GIE v1.x `inference_objective_*`, pre-v1 `inference_model_*`), llm-d-router
// (`llm_d_epp_*`) or, where no picker metrics exist, the model servers' own vLLM metrics
// (`vllm:*`). The upstream pickers label requests by model_name / target_model_name only: a pool
// is one picker deployment, so in the pools scope the pool's name must come from the scrape (a
// target label, `poolLabel`, default `pool`). vLLM labels requests by the base model only, so it
// cannot tell adapters apart: not offered in the adapters scope. "auto" (the CRD's default) is one
// query trying the sources in that order: a source counts only while the ones before it have no
// series at all (`unless on() count(...)`), so a gate never mixes two sources.
//
// The picker's series carry no namespace: a `namespace` label, if any, comes from the scrape
// config (ServiceMonitor / PodMonitor add it, a hand-written scrape job may not). So scoping by
// namespace is opt-in (`namespaceLabel`), never assumed: a matcher on a missing label would make
// every gate empty, i.e. Inconclusive forever. `selector` adds any other matchers.
//
// Low traffic is never a success: every query is filtered to nothing (`>= minRequests`, `and on()`)
// while the canary has fewer than minRequests requests in the window, and both conditions require
// exactly one finite sample, so an empty result or NaN is Inconclusive.

import { durationMs, isDuration } from "../duration";
import {
  LABEL_NAME_RE,
  TemplateError,
  type LabelMatcher,
  formatLabelMatcher,
  parseLabelMatchers,
  placeholdersOf,
} from "./promql";
import type { Scope } from "./types";

export class BuiltinError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BuiltinError";
  }
}

type ArgKind =
  | "fraction"
  | "positive"
  | "count"
  | "duration"
  | "percent"
  | "labelName"
  | "selector"
  | "modelName";

const NUMERIC_KINDS: readonly ArgKind[] = ["fraction", "positive", "count", "percent"];

interface ArgSpec {
  kind: ArgKind;
  /** Default value; undefined means required (weight: taken from the rollout). */
  default?: string;
  help: string;
}

/** Which series a built-in reads, as PromQL matcher text (placeholders are rendered later). */
interface SeriesMatch {
  /** The label that tells canary from stable: pool or target_model_name. */
  label: string;
  /**
   * Matchers every series gets: the model_name matcher (traffic-split, when a model is known),
   * the namespace label, the selector arg.
   */
  common: string[];
}

interface Builtin {
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

/** The picker's metric names (agreed with the picker issue). */
export const PICKER_METRICS = {
  requests: "inference_objective_request_total",
  errors: "inference_objective_request_error_total",
  duration: "inference_objective_request_duration_seconds",
  ttft: "inference_objective_request_ttft_seconds",
} as const;

/** Metric names of one source; `errors` is a counter, or a filter on `requests` (vLLM). */
interface SourceMetrics {
  requests: string;
  /** An error counter, or `requests` with `errorMatcher`. */
  errors: string;
  /** A matcher on `errors` that selects failed requests (vLLM: finished_reason="abort"). */
  errorMatcher?: string;
  duration: string;
  /** Absent: the source has no TTFT histogram (pre-v1 pickers). */
  ttft?: string;
}

export type MetricsSource = "picker" | "upstream-epp" | "llm-d" | "vllm";
export const METRICS_SOURCES = ["auto", "picker", "upstream-epp", "llm-d", "vllm"] as const;

/**
 * Whose metrics a built-in reads. upstream-epp is GIE v1.x (same names as ours; requests carry no
 * pool label) and, when no v1 series exist, the pre-v1 `inference_model_*` names.
 */
export const METRIC_SOURCES: Record<MetricsSource, SourceMetrics[]> = {
  picker: [PICKER_METRICS],
  "upstream-epp": [
    PICKER_METRICS,
    {
      requests: "inference_model_request_total",
      errors: "inference_model_request_error_total",
      duration: "inference_model_request_duration_seconds",
    },
  ],
  "llm-d": [
    {
      requests: "llm_d_epp_request_total",
      errors: "llm_d_epp_request_error_total",
      duration: "llm_d_epp_request_duration_seconds",
      ttft: "llm_d_epp_request_ttft_seconds",
    },
  ],
  vllm: [
    {
      // Every finished request, by finished_reason (stop, length, abort); aborts are the errors.
      requests: "vllm:request_success_total",
      errors: "vllm:request_success_total",
      errorMatcher: 'finished_reason="abort"',
      duration: "vllm:e2e_request_latency_seconds",
      ttft: "vllm:time_to_first_token_seconds",
    },
  ],
};

const WINDOW: ArgSpec = { kind: "duration", default: "2m", help: "query window" };
const MIN_REQUESTS: ArgSpec = {
  kind: "count",
  default: "20",
  help: "canary requests (observations) in the window below which the gate is Inconclusive",
};

/** Labels the gates set themselves; a user matcher on them would break canary/stable or p95. */
const RESERVED_LABELS = ["__name__", "pool", "target_model_name", "le"];

/** Placeholders a selector value may use (names, escaped like the rest). */
const SELECTOR_PLACEHOLDERS = ["namespace", "rollout", "modelName", "pool", "canary", "stable"];

const SCOPE_ARGS: Record<string, ArgSpec> = {
  namespaceLabel: {
    kind: "labelName",
    help: "label carrying the scraped picker's namespace (usually namespace); when set, every series must have the rollout's namespace in it (default: not matched)",
  },
  selector: {
    kind: "selector",
    help: 'extra label matchers for every series, e.g. {cluster="eu-1", job=~"picker.*"}; values may use {{namespace}}, {{rollout}}, {{modelName}}, {{pool}}',
  },
  poolLabel: {
    kind: "labelName",
    default: "pool",
    help: "pools scope, metricsSource upstream-epp, llm-d or vllm: the target label the scrape puts the pool's name in (those metrics carry no pool label of their own)",
  },
};

/** `{label="{{who}}",...}` — values are substituted and escaped later by renderQuery. */
function selector(m: SeriesMatch, who: "canary" | "stable"): string {
  return `{${[`${m.label}="{{${who}}}"`, ...m.common].join(",")}}`;
}

function increase(
  metric: string,
  m: SeriesMatch,
  who: "canary" | "stable",
  window: string,
  extra?: string,
) {
  const sel = extra ? selector(m, who).replace(/}$/, `,${extra}}`) : selector(m, who);
  return `sum(increase(${metric}${sel}[${window}]))`;
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

const BUILTINS: Record<string, Builtin> = {
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
};

/** 3 sigma of the share of n requests split at random with probability weight%, >= 2 points. */
function defaultTolerance(weightPercent: number, n: number): string {
  const p = weightPercent / 100;
  const sigma = 100 * Math.sqrt((p * (1 - p)) / n);
  return String(Math.max(2, Math.ceil(3 * sigma * 10) / 10));
}

export const BUILTIN_TEMPLATES = Object.keys(BUILTINS);

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function checkLabelName(name: string, label: string): string | undefined {
  if (!LABEL_NAME_RE.test(label)) {
    return `args.${name}: ${JSON.stringify(label)} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`;
  }
  if (RESERVED_LABELS.includes(label)) {
    return `args.${name} cannot match ${label}: the gate sets it itself`;
  }
  return undefined;
}

/** The selector arg's matchers, or a readable error. */
function selectorMatchers(value: string): { matchers: LabelMatcher[] } | { error: string } {
  let matchers: LabelMatcher[];
  try {
    matchers = parseLabelMatchers(value);
  } catch (err) {
    if (err instanceof TemplateError) {
      return { error: `args.selector: ${err.message} (want label matchers like {cluster="eu-1"})` };
    }
    throw err;
  }
  for (const matcher of matchers) {
    const problem = checkLabelName("selector", matcher.label);
    if (problem) return { error: problem };
    let used: string[];
    try {
      used = placeholdersOf(formatLabelMatcher(matcher));
    } catch (err) {
      if (err instanceof TemplateError) return { error: `args.selector: ${err.message}` };
      throw err;
    }
    const wrong = used.find(p => !SELECTOR_PLACEHOLDERS.includes(p));
    if (wrong !== undefined) {
      const allowed = SELECTOR_PLACEHOLDERS.map(n => `{{${n}}}`).join(", ");
      return { error: `args.selector: {{${wrong}}} cannot be used here (${allowed} can)` };
    }
  }
  return { matchers };
}

/** A readable error for one arg value, or undefined when valid. */
function checkArg(name: string, spec: ArgSpec, value: string): string | undefined {
  const n = NUMBER_RE.test(value.trim()) ? Number(value) : NaN;
  switch (spec.kind) {
    case "duration":
      return isDuration(value) && durationMs(value) > 0
        ? undefined
        : `args.${name} must be a positive duration like 30s or 2m, got ${JSON.stringify(value)}`;
    case "fraction":
      return n > 0 && n <= 1
        ? undefined
        : `args.${name} must be a number in (0, 1], got ${JSON.stringify(value)}`;
    case "positive":
      return n > 0 && Number.isFinite(n)
        ? undefined
        : `args.${name} must be a positive number, got ${JSON.stringify(value)}`;
    case "count":
      return Number.isInteger(n) && n >= 1
        ? undefined
        : `args.${name} must be a whole number >= 1, got ${JSON.stringify(value)}`;
    case "percent":
      return n >= 0 && n <= 100
        ? undefined
        : `args.${name} must be a number from 0 to 100, got ${JSON.stringify(value)}`;
    case "labelName":
      return checkLabelName(name, value);
    case "selector": {
      const parsed = selectorMatchers(value);
      return "error" in parsed ? parsed.error : undefined;
    }
    case "modelName":
      return value === ""
        ? `args.${name} must not be empty (use "*" to count every model)`
        : undefined;
  }
}

/**
 * Problems with a template name and its args (empty when valid). `weight` of traffic-split may be
 * absent: the reconciler supplies the current canary weight.
 */
export function validateBuiltin(template: string, args: Record<string, string> = {}): string[] {
  const builtin = Object.prototype.hasOwnProperty.call(BUILTINS, template)
    ? BUILTINS[template]
    : undefined;
  if (!builtin) {
    return [
      `unknown template ${JSON.stringify(template)} (built-in templates: ${BUILTIN_TEMPLATES.join(", ")})`,
    ];
  }
  const errors: string[] = [];
  for (const [name, value] of Object.entries(args)) {
    const spec = builtin.args[name];
    if (!spec) {
      errors.push(
        `template ${template} has no arg ${JSON.stringify(name)} (args: ${Object.keys(builtin.args).join(", ")})`,
      );
      continue;
    }
    const problem =
      typeof value === "string" ? checkArg(name, spec, value) : `args.${name} must be a string`;
    if (problem) errors.push(problem);
  }
  return errors;
}

export type MetricsSourceName = (typeof METRICS_SOURCES)[number];

/**
 * What is wrong with a metric's metricsSource (undefined when fine): not one of METRICS_SOURCES,
 * set on a query (which names its metrics itself), or vllm where adapters must be told apart.
 */
export function metricsSourceProblem(
  source: unknown,
  opts: { template: boolean; scope?: Scope },
): string | undefined {
  if (source === undefined) return undefined;
  if (typeof source !== "string" || !(METRICS_SOURCES as readonly string[]).includes(source)) {
    return `metricsSource must be one of ${METRICS_SOURCES.join(", ")}, got ${JSON.stringify(source)}`;
  }
  if (!opts.template && source !== "auto") {
    return `metricsSource ${source} applies to built-in gates (template) only: a query names its metrics itself (remove metricsSource)`;
  }
  if (opts.template && source === "vllm" && opts.scope === "adapters") {
    return "metricsSource vllm cannot tell LoRA adapters apart (vLLM labels requests by the base model only): use auto, picker, upstream-epp or llm-d";
  }
  return undefined;
}

export interface BuiltinExpansion {
  /** PromQL template: {{canary}}, {{stable}} (and {{namespace}}, {{modelName}}, {{args.X}}…) are still placeholders. */
  query: string;
  successCondition: string;
  failureCondition: string;
}

export interface BuiltinContext {
  scope: Scope;
  /** The current canary weight, the default of traffic-split's weight arg. */
  weight?: number;
  /** The rollout's model name, when known: traffic-split counts only its requests (pools). */
  modelName?: string;
  /**
   * Whose metrics the gate reads (the gate's metricsSource; the CRD defaults it to "auto").
   * Absent: the picker's, the shape callers that know no source had before the field existed.
   */
  metricsSource?: MetricsSourceName;
}

function seriesMatch(
  builtin: Builtin,
  values: Record<string, string>,
  opts: BuiltinContext,
): SeriesMatch {
  const common: string[] = [];
  // Values stay placeholders: renderQuery escapes them like every other name.
  if (values.namespaceLabel !== undefined) common.push(`${values.namespaceLabel}="{{namespace}}"`);
  // The args were validated (selectorMatchers) before: the selector parses.
  const userMatchers = values.selector === undefined ? [] : parseLabelMatchers(values.selector);
  common.push(...userMatchers.map(formatLabelMatcher));
  let model: string | undefined;
  if ("modelName" in builtin.args) {
    // A model_name matcher in the selector already says which models count.
    const selectsModel = userMatchers.some(m => m.label === "model_name");
    if (values.modelName !== undefined) {
      if (values.modelName !== "*") model = `model_name="{{args.modelName}}"`;
    } else if (opts.scope === "pools" && opts.modelName !== undefined && !selectsModel) {
      // In the adapters scenario target_model_name already singles out the adapters.
      model = `model_name="{{modelName}}"`;
    }
  }
  if (model) common.unshift(model);
  return {
    label: opts.scope === "adapters" ? "target_model_name" : (values.poolLabel ?? "pool"),
    common,
  };
}

/** The sources "auto" tries, in order: the picker's names first (ours and GIE v1.x share them). */
const AUTO_ORDER: MetricsSource[] = ["upstream-epp", "llm-d", "vllm"];

/** `count(metric{common matchers})`: the source has series at all (whatever canary/stable). */
function presence(metric: string, m: SeriesMatch): string {
  return `count(${metric}${m.common.length ? `{${m.common.join(",")}}` : ""})`;
}

/**
 * Expand a built-in gate. Throws BuiltinError for an unknown template or invalid args.
 */
export function expandBuiltin(
  template: string,
  args: Record<string, string> | undefined,
  opts: BuiltinContext,
): BuiltinExpansion {
  const errors = validateBuiltin(template, args);
  if (errors.length) throw new BuiltinError(`template ${template}: ${errors.join("; ")}`);
  const builtin = BUILTINS[template];
  const values: Record<string, string> = {};
  for (const [name, spec] of Object.entries(builtin.args)) {
    const given = args?.[name];
    if (given !== undefined) values[name] = given;
    else if (spec.default !== undefined) values[name] = spec.default;
  }
  // Numbers go into conditions in canonical form ("0.050" -> "0.05").
  for (const [name, spec] of Object.entries(builtin.args)) {
    if (values[name] !== undefined && NUMERIC_KINDS.includes(spec.kind)) {
      values[name] = String(Number(values[name]));
    }
  }
  if ("weight" in builtin.args && values.weight === undefined) {
    if (opts.weight === undefined || !(opts.weight >= 0 && opts.weight <= 100)) {
      throw new BuiltinError(
        `template ${template}: the canary weight is not known (set args.weight or pass the current weight)`,
      );
    }
    values.weight = String(opts.weight);
  }
  const source = opts.metricsSource ?? "picker";
  if (!(METRICS_SOURCES as readonly string[]).includes(source)) {
    throw new BuiltinError(
      `metricsSource ${JSON.stringify(source)} is not one of ${METRICS_SOURCES.join(", ")}`,
    );
  }
  if (source === "vllm" && opts.scope === "adapters") {
    throw new BuiltinError(
      `template ${template}: metricsSource vllm cannot tell adapters apart (vLLM labels requests by the base model only); use a picker's metrics`,
    );
  }
  const match = seriesMatch(builtin, values, opts);
  const sources: MetricsSource[] =
    source === "auto"
      ? AUTO_ORDER.filter(s => s !== "vllm" || opts.scope !== "adapters")
      : [source];
  // Each metric set in order; a later one only while the earlier ones have no series at all.
  const parts: Array<{ query: string; successCondition: string; failureCondition: string }> = [];
  const before: string[] = [];
  for (const metrics of sources.flatMap(s => METRIC_SOURCES[s])) {
    const built = builtin.build(values, match, metrics);
    if (built === undefined) continue; // this source lacks the metric (pre-v1 TTFT)
    parts.push(
      before.length === 0
        ? built
        : { ...built, query: `(${built.query}) unless on() (${before.join(" or ")})` },
    );
    before.push(presence(metrics.requests, match));
  }
  if (parts.length === 0) {
    throw new BuiltinError(`template ${template}: metricsSource ${source} has no such metric`);
  }
  if (parts.length === 1) return parts[0];
  return { ...parts[0], query: parts.map(p => `(${p.query})`).join(" or ") };
}

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
