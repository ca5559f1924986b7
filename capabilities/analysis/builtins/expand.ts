// A use of a built-in gate: its template name and args validated, then expanded into one PromQL
// template and two conditions for the gate's scope and metricsSource ("auto": a chain of sources).

import { formatLabelMatcher, parseLabelMatchers } from "../promql";
import type { Scope } from "../types";
import { checkArg, NUMERIC_KINDS } from "./args";
import { type Builtin, BUILTIN_TEMPLATES, BUILTINS, type SeriesMatch } from "./gates";
import {
  AUTO_ORDER,
  METRIC_SOURCES,
  METRICS_SOURCES,
  type MetricsSource,
  type MetricsSourceName,
} from "./metric-sources";

export class BuiltinError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BuiltinError";
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
