// Built-in LLM gates, usable by name: `template: ttft-p95-ratio, args: {maxRatio: "1.2"}`.
// Each expands to a PromQL template (canary/stable stay {{placeholders}}, escaped by promql.ts)
// and a success and a failure condition. They query the picker's metrics; canary and stable are
// told apart by the `pool` label (scope "pools") or `target_model_name` (scope "adapters").
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
  ): {
    query: string;
    successCondition: string;
    failureCondition: string;
  };
}

/** The picker's metric names (agreed with the picker issue). */
export const PICKER_METRICS = {
  requests: "inference_objective_request_total",
  errors: "inference_objective_request_error_total",
  duration: "inference_objective_request_duration_seconds",
  ttft: "inference_objective_request_ttft_seconds",
} as const;

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
};

/** `{label="{{who}}",...}` — values are substituted and escaped later by renderQuery. */
function selector(m: SeriesMatch, who: "canary" | "stable"): string {
  return `{${[`${m.label}="{{${who}}}"`, ...m.common].join(",")}}`;
}

function increase(metric: string, m: SeriesMatch, who: "canary" | "stable", window: string) {
  return `sum(increase(${metric}${selector(m, who)}[${window}]))`;
}

function p95(histogram: string, m: SeriesMatch, who: "canary" | "stable", window: string) {
  return `histogram_quantile(0.95, sum by (le) (rate(${histogram}_bucket${selector(m, who)}[${window}])))`;
}

/** One sample and it satisfies `check` (NaN satisfies no comparison). */
function single(check: string): string {
  return `len(result) == 1 and ${check}`;
}

function p95Ratio(histogram: string, what: string): Builtin {
  return {
    description: `canary p95 ${what} <= maxRatio x stable p95 ${what}`,
    args: {
      maxRatio: { kind: "positive", default: "1.2", help: "allowed canary/stable p95 ratio" },
      minRequests: MIN_REQUESTS,
      window: WINDOW,
      ...SCOPE_ARGS,
    },
    build: (a, match) => ({
      query:
        `(${p95(histogram, match, "canary", a.window)} / ${p95(histogram, match, "stable", a.window)})` +
        ` and on() (${increase(`${histogram}_count`, match, "canary", a.window)} >= ${a.minRequests})` +
        ` and on() (${increase(`${histogram}_count`, match, "stable", a.window)} >= ${a.minRequests})`,
      successCondition: single(`result[0] <= ${a.maxRatio}`),
      failureCondition: single(`result[0] > ${a.maxRatio}`),
    }),
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
    build: (a, match) => ({
      // No error series at all means no errors: `or on() vector(0)`.
      query:
        `(${increase(PICKER_METRICS.errors, match, "canary", a.window)} or on() vector(0))` +
        ` / (${increase(PICKER_METRICS.requests, match, "canary", a.window)} >= ${a.minRequests})`,
      successCondition: single(`result[0] < ${a.maxRatio}`),
      failureCondition: single(`result[0] >= ${a.maxRatio}`),
    }),
  },
  "latency-p95-ratio": p95Ratio(PICKER_METRICS.duration, "latency"),
  "ttft-p95-ratio": p95Ratio(PICKER_METRICS.ttft, "time to first token"),
  "min-request-count": {
    description: "canary requests in the window >= minRequests (else Inconclusive, never Failed)",
    args: { minRequests: MIN_REQUESTS, window: WINDOW, ...SCOPE_ARGS },
    build: (a, match) => ({
      query: increase(PICKER_METRICS.requests, match, "canary", a.window),
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
    build: (a, match) => {
      // A pool may serve several models; only the rolled-out one's requests are split (the
      // model_name matcher is in match.common then).
      const canary = `(${increase(PICKER_METRICS.requests, match, "canary", a.window)} or on() vector(0))`;
      const stable = `(${increase(PICKER_METRICS.requests, match, "stable", a.window)} or on() vector(0))`;
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
  return { label: opts.scope === "adapters" ? "target_model_name" : "pool", common };
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
  return builtin.build(values, seriesMatch(builtin, values, opts));
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
