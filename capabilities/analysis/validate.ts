// Validation and resolution of gate specs: every problem as a readable message (pure).
import {
  MAX_TIMEOUT,
  MAX_TIMEOUT_MS,
  MAX_WAIT,
  MAX_WAIT_MS,
  durationProblem,
  isDuration,
} from "../duration";
import { expandBuiltin, metricsSourceProblem, validateBuiltin } from "./builtins";
import { ExpressionError } from "./expr/ast";
import { parse } from "./expr/parser";
import { QueryVariables, TemplateError, renderQuery, variablesFor } from "./promql";
import { DEFAULT_INTERVAL, MAX_MEASUREMENTS_TO_KEEP } from "./run";
import type {
  AnalysisSpec,
  MetricSpec,
  ProviderSpec,
  ResolvedMetric,
  Scope,
  TemplateContext,
} from "./types";
import { isRecord } from "../api/objects";
import { probeProblems } from "./probe/validate";

// ---------------------------------------------------------------------------------------------
// Validation and resolution

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

function validateMetric(
  metric: unknown,
  where: string,
  defaultProvider?: ProviderSpec,
  scope?: Scope,
): string[] {
  if (!isRecord(metric)) return [`${where} must be an object`];
  const m = metric as unknown as MetricSpec;
  const problems: string[] = [];
  if (typeof m.name !== "string" || m.name.trim() === "") problems.push("name is required");
  const hasQuery = m.query !== undefined;
  const hasTemplate = m.template !== undefined;
  const hasProbe = m.probe !== undefined;
  if ([hasQuery, hasTemplate, hasProbe].filter(Boolean).length !== 1)
    problems.push("set exactly one of query, template and probe");
  problems.push(...argsProblems(m));
  const sourceProblem = metricsSourceProblem(m.metricsSource, { template: hasTemplate, scope });
  if (sourceProblem) problems.push(sourceProblem);
  if (hasTemplate) problems.push(...templateProblems(m));
  else if (hasQuery) problems.push(...queryProblems(m));
  else if (hasProbe) problems.push(...probeProblems(m.probe), ...conditionProblems(m));
  problems.push(...scheduleProblems(m));
  // A probe asks the model servers, not Prometheus.
  if (!hasProbe) problems.push(...metricProviderProblems(m, defaultProvider));
  return problems.map(problem => `${where}: ${problem}`);
}

function argsProblems(m: MetricSpec): string[] {
  if (m.args === undefined) return [];
  if (!isRecord(m.args)) return ["args must be a map of strings"];
  return Object.entries(m.args)
    .filter(([, v]) => typeof v !== "string")
    .map(([k]) => `args.${k} must be a string (quote numbers: "1.2")`);
}

/** A built-in template: its args checked, no conditions of the metric's own. */
function templateProblems(m: MetricSpec): string[] {
  const problems: string[] = [];
  if (typeof m.template !== "string") problems.push("template must be a string");
  else {
    const args = isRecord(m.args) ? (m.args as Record<string, string>) : {};
    problems.push(...validateBuiltin(m.template, args));
  }
  for (const key of ["successCondition", "failureCondition"] as const) {
    if (m[key] !== undefined)
      problems.push(`${key} cannot be combined with template (it brings its own conditions)`);
  }
  return problems;
}

/** A PromQL query: it renders with sample values, and its conditions parse. */
function queryProblems(m: MetricSpec): string[] {
  const problems: string[] = [];
  if (typeof m.query !== "string" || m.query.trim() === "")
    problems.push("query must be a non-empty string");
  else {
    try {
      renderQuery(m.query, sampleVariables(m));
    } catch (err) {
      if (err instanceof TemplateError) problems.push(`query: ${err.message}`);
      else throw err;
    }
  }
  return [...problems, ...conditionProblems(m)];
}

/** The metric's own conditions parse. */
function conditionProblems(m: MetricSpec): string[] {
  const problems: string[] = [];
  for (const key of ["successCondition", "failureCondition"] as const) {
    const source = m[key];
    if (source === undefined) continue;
    if (typeof source !== "string") {
      problems.push(`${key} must be a string`);
      continue;
    }
    try {
      parse(source);
    } catch (err) {
      if (err instanceof ExpressionError) problems.push(`${key}: ${err.message}`);
      else throw err;
    }
  }
  return problems;
}

/** When and how often it is measured, its limits and flags. */
function scheduleProblems(m: MetricSpec): string[] {
  const problems: string[] = [];
  if (m.interval !== undefined) {
    const problem = durationProblem("interval", m.interval, MAX_WAIT_MS, MAX_WAIT, true);
    if (problem) problems.push(problem);
  }
  if (m.initialDelay !== undefined) {
    const problem = durationProblem("initialDelay", m.initialDelay, MAX_WAIT_MS, MAX_WAIT);
    if (problem) problems.push(problem);
  }
  if (m.count !== undefined && !isWhole(m.count, 1))
    problems.push("count must be a whole number >= 1");
  for (const key of ["failureLimit", "inconclusiveLimit", "consecutiveErrorLimit"] as const) {
    if (m[key] !== undefined && !isWhole(m[key], 0))
      problems.push(`${key} must be a whole number >= 0`);
  }
  for (const key of ["dryRun", "multipleSeries"] as const) {
    if (m[key] !== undefined && typeof m[key] !== "boolean")
      problems.push(`${key} must be true or false`);
  }
  return problems;
}

function metricProviderProblems(m: MetricSpec, defaultProvider?: ProviderSpec): string[] {
  const provider = m.prometheus ?? defaultProvider;
  if (provider === undefined) {
    return ["no Prometheus address: set spec.prometheus or this metric's prometheus"];
  }
  return validateProvider(provider, m.prometheus ? "prometheus" : "default prometheus");
}

/**
 * Everything wrong with an analysis spec, as readable messages (empty when valid): every
 * condition parsed, templates and args checked, durations and limits checked, a provider present
 * (the metric's own or `defaultProvider`, i.e. spec.prometheus).
 */
export function validateAnalysis(
  spec: AnalysisSpec,
  defaultProvider?: ProviderSpec,
  scope?: Scope,
): string[] {
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
    errors.push(...validateMetric(metric, where, defaultProvider, scope));
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
      metricsSource: metric.metricsSource,
    });
    query = renderQuery(expansion.query, vars);
    successCondition = expansion.successCondition;
    failureCondition = expansion.failureCondition;
  } else if (typeof metric.query === "string") {
    query = renderQuery(metric.query, vars);
  } else if (metric.probe !== undefined) {
    throw new TemplateError(`metric ${metric.name} is a probe: it has no query`);
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
