// Built-in LLM gates, usable by name: `template: ttft-p95-ratio, args: {maxRatio: "1.2"}`.
// Each expands to a PromQL template (canary/stable stay {{placeholders}}, escaped by promql.ts)
// and a success and a failure condition. They query the picker's metrics; canary and stable are
// told apart by the `pool` label (scope "pools") or `target_model_name` (scope "adapters").
//
// Low traffic is never a success: every query is filtered to nothing (`>= minRequests`, `and on()`)
// while the canary has fewer than minRequests requests in the window, and both conditions require
// exactly one finite sample, so an empty result or NaN is Inconclusive.

import { durationMs, isDuration } from "../duration";
import type { Scope } from "./types";

export class BuiltinError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BuiltinError";
  }
}

type ArgKind = "fraction" | "positive" | "count" | "duration" | "percent";

interface ArgSpec {
  kind: ArgKind;
  /** Default value; undefined means required (weight: taken from the rollout). */
  default?: string;
  help: string;
}

interface Builtin {
  description: string;
  args: Record<string, ArgSpec>;
  build(
    a: Record<string, string>,
    label: string,
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

/** `{label="{{who}}"}` — the value is substituted and escaped later by renderQuery. */
function selector(label: string, who: "canary" | "stable"): string {
  return `{${label}="{{${who}}}"}`;
}

function increase(metric: string, label: string, who: "canary" | "stable", window: string) {
  return `sum(increase(${metric}${selector(label, who)}[${window}]))`;
}

function p95(histogram: string, label: string, who: "canary" | "stable", window: string) {
  return `histogram_quantile(0.95, sum by (le) (rate(${histogram}_bucket${selector(label, who)}[${window}])))`;
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
    },
    build: (a, label) => ({
      query:
        `(${p95(histogram, label, "canary", a.window)} / ${p95(histogram, label, "stable", a.window)})` +
        ` and on() (${increase(`${histogram}_count`, label, "canary", a.window)} >= ${a.minRequests})` +
        ` and on() (${increase(`${histogram}_count`, label, "stable", a.window)} >= ${a.minRequests})`,
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
    },
    build: (a, label) => ({
      // No error series at all means no errors: `or on() vector(0)`.
      query:
        `(${increase(PICKER_METRICS.errors, label, "canary", a.window)} or on() vector(0))` +
        ` / (${increase(PICKER_METRICS.requests, label, "canary", a.window)} >= ${a.minRequests})`,
      successCondition: single(`result[0] < ${a.maxRatio}`),
      failureCondition: single(`result[0] >= ${a.maxRatio}`),
    }),
  },
  "latency-p95-ratio": p95Ratio(PICKER_METRICS.duration, "latency"),
  "ttft-p95-ratio": p95Ratio(PICKER_METRICS.ttft, "time to first token"),
  "min-request-count": {
    description: "canary requests in the window >= minRequests (else Inconclusive, never Failed)",
    args: { minRequests: MIN_REQUESTS, window: WINDOW },
    build: (a, label) => ({
      query: increase(PICKER_METRICS.requests, label, "canary", a.window),
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
    },
    build: (a, label) => {
      const canary = `(${increase(PICKER_METRICS.requests, label, "canary", a.window)} or on() vector(0))`;
      const stable = `(${increase(PICKER_METRICS.requests, label, "stable", a.window)} or on() vector(0))`;
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

/** A readable error for one arg value, or undefined when valid. */
function checkArg(name: string, spec: ArgSpec, value: string): string | undefined {
  if (spec.kind === "duration") {
    return isDuration(value) && durationMs(value) > 0
      ? undefined
      : `args.${name} must be a positive duration like 30s or 2m, got ${JSON.stringify(value)}`;
  }
  const n = NUMBER_RE.test(value.trim()) ? Number(value) : NaN;
  switch (spec.kind) {
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
  /** PromQL template: {{canary}} / {{stable}} are still placeholders. */
  query: string;
  successCondition: string;
  failureCondition: string;
}

/**
 * Expand a built-in gate. `weight` is the current canary weight, the default of traffic-split's
 * weight arg. Throws BuiltinError for an unknown template or invalid args.
 */
export function expandBuiltin(
  template: string,
  args: Record<string, string> | undefined,
  opts: { scope: Scope; weight?: number },
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
    if (values[name] !== undefined && spec.kind !== "duration") {
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
  const label = opts.scope === "adapters" ? "target_model_name" : "pool";
  return builtin.build(values, label);
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
