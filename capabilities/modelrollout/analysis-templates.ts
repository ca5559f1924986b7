// AnalysisTemplate / ClusterAnalysisTemplate references in gates (as in Argo Rollouts), resolved
// into the inline metrics the engine runs. Pure: the reconciler reads the templates
// (targets/analysis-templates.ts) and hands them in; the engine only ever sees resolved gates, so
// a template edit changes the step's / background gate's fingerprint and restarts that gate, like
// an edit of inline metrics.
import { validateAnalysis, type MetricSpec, type ProviderSpec } from "../analysis";
import type { AnalysisSpec, ModelRolloutSpec, WrittenAnalysisSpec, WrittenSpec } from "./types";

/** A reference in analysis.templates[]. */
export interface TemplateRef {
  templateName: string;
  clusterScope?: boolean;
}

/** The spec of an AnalysisTemplate / ClusterAnalysisTemplate (the same schema for both). */
export interface TemplateSpec {
  args?: Array<{ name: string; value?: string }>;
  metrics: MetricSpec[];
}

/** The template a reference names, or undefined when it does not exist. */
export type TemplateLookup = (ref: TemplateRef) => TemplateSpec | undefined;

export interface SpecProblem {
  reason: string;
  message: string;
}

export interface Resolution {
  /** The spec with every gate's templates merged in (inline metrics only where one failed). */
  spec: ModelRolloutSpec;
  /** Why the gates cannot run: AnalysisTemplateNotFound or InvalidAnalysis. */
  problem?: SpecProblem;
}

/** Metrics one gate may hold after merging: each keeps measurements in status. */
export const MAX_GATE_METRICS = 32;

const ARG_PLACEHOLDER = /\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}/g;
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** "AnalysisTemplate ns/name" or "ClusterAnalysisTemplate name": a stable key and a message. */
export function describeTemplateRef(ref: TemplateRef, namespace: string): string {
  return ref.clusterScope
    ? `ClusterAnalysisTemplate ${ref.templateName}`
    : `AnalysisTemplate ${namespace}/${ref.templateName}`;
}

function gatesOf(spec: WrittenSpec): Array<[string, WrittenAnalysisSpec]> {
  const gates: Array<[string, WrittenAnalysisSpec]> = [];
  if (spec.analysis) gates.push(["analysis", spec.analysis]);
  (spec.steps ?? []).forEach((step, i) => {
    if (step.analysis) gates.push([`steps[${i}].analysis`, step.analysis]);
  });
  return gates;
}

/** Every template the spec references, once each. */
export function templateRefsOf(spec: WrittenSpec): TemplateRef[] {
  const refs = new Map<string, TemplateRef>();
  for (const [, gate] of gatesOf(spec))
    for (const ref of gate.templates ?? [])
      refs.set(describeTemplateRef(ref, ""), {
        templateName: ref.templateName,
        clusterScope: ref.clusterScope === true,
      });
  return [...refs.values()];
}

/** Whether a template (a created, changed or deleted one) is referenced by the spec. */
export function referencesTemplate(spec: WrittenSpec, ref: TemplateRef): boolean {
  const key = describeTemplateRef(ref, "");
  return templateRefsOf(spec).some(r => describeTemplateRef(r, "") === key);
}

/**
 * `{{args.NAME}}` of a template's metric, NAME a template arg. In a query the value goes through
 * the query renderer (added to the metric's args: escaped in quotes, a duration in ranges, else a
 * number) so it can never change the query's structure; in a condition it must be a number; in an
 * arg of a built-in gate it is inserted as is (the built-in checks its args).
 */
function substituteMetric(
  metric: MetricSpec,
  values: Map<string, string>,
): { metric: MetricSpec; errors: string[] } {
  const errors: string[] = [];
  const fill = (text: string, field: string, numbersOnly: boolean) =>
    text.replace(ARG_PLACEHOLDER, (whole, name: string) => {
      const value = values.get(name);
      if (value === undefined) return whole;
      if (numbersOnly && !NUMBER.test(value.trim())) {
        errors.push(`${field} uses {{args.${name}}}, which must be a number there, got "${value}"`);
        return whole;
      }
      return numbersOnly ? value.trim() : value;
    });
  const out: MetricSpec = { ...metric };
  for (const field of ["successCondition", "failureCondition"] as const) {
    const text = metric[field];
    if (typeof text === "string") out[field] = fill(text, field, true);
  }
  const ownArgs = metric.args ?? {};
  const args: Record<string, string> = {};
  if (typeof metric.query === "string")
    for (const [, name] of metric.query.matchAll(ARG_PLACEHOLDER))
      if (values.has(name)) args[name] = values.get(name)!;
  for (const [key, value] of Object.entries(ownArgs))
    args[key] = typeof value === "string" ? fill(value, `args.${key}`, false) : value;
  if (metric.args !== undefined || Object.keys(args).length) out.args = args;
  return { metric: out, errors };
}

interface GateResolution {
  gate: AnalysisSpec;
  notFound: string[];
  invalid: string[];
}

interface GateInput {
  where: string;
  namespace: string;
  provider?: ProviderSpec;
  scope: "pools" | "adapters";
}

/** The arg values for one template: the rollout's, else the template's default. */
function argValues(
  template: TemplateSpec,
  given: Map<string, string>,
  what: string,
  where: string,
): { values: Map<string, string>; missing: string[] } {
  const values = new Map<string, string>();
  const missing: string[] = [];
  for (const arg of template.args ?? []) {
    const value = given.get(arg.name) ?? arg.value;
    if (value === undefined)
      missing.push(
        `${what} needs arg ${arg.name}, which has no default: give it in ${where}.args ` +
          `(- name: ${arg.name}, value: "...")`,
      );
    else values.set(arg.name, value);
  }
  return { values, missing };
}

function resolveGate(gate: WrittenAnalysisSpec, lookup: TemplateLookup, input: GateInput) {
  const { templates = [], args = [], metrics = [], ...rest } = gate;
  if (!gate.templates && !gate.args)
    return { gate: gate as AnalysisSpec, notFound: [], invalid: [] };
  const { where, namespace } = input;
  const result: GateResolution = {
    gate: { ...rest, metrics: [...metrics] },
    notFound: [],
    invalid: [],
  };
  const origin = new Map<string, string>(metrics.map(m => [m.name, "the inline metrics"]));
  const given = new Map(args.map(a => [a.name, a.value]));
  const declared = new Set<string>();
  templates.forEach((ref, i) => {
    const what = describeTemplateRef(ref, namespace);
    const template = lookup(ref);
    if (!template) {
      const fix = ref.clusterScope ? "create it" : `create it in namespace ${namespace}`;
      result.notFound.push(
        `${where}.templates[${i}]: ${what} not found; ${fix} or fix templateName`,
      );
      return;
    }
    template.args?.forEach(a => declared.add(a.name));
    const { values, missing } = argValues(template, given, what, where);
    const substituted = (template.metrics ?? []).map(m => substituteMetric(m, values));
    const errors = [
      ...missing,
      ...substituted.flatMap(s => s.errors.map(e => `${what}: metric ${s.metric.name}: ${e}`)),
    ];
    if (!errors.length) {
      const checked = { metrics: substituted.map(s => s.metric) };
      errors.push(
        ...validateAnalysis(checked, input.provider, input.scope).map(e => `${what}: ${e}`),
      );
    }
    if (errors.length) return void result.invalid.push(...errors.map(e => `${where}: ${e}`));
    for (const { metric } of substituted) {
      const first = origin.get(metric.name);
      if (first)
        result.invalid.push(
          `${where}: metric name ${metric.name} is in both ${first} and ${what}; ` +
            "metric names must be unique in one analysis",
        );
      origin.set(metric.name, what);
      result.gate.metrics.push(metric);
    }
  });
  if (!result.notFound.length)
    for (const name of given.keys())
      if (!declared.has(name))
        result.invalid.push(
          `${where}.args: ${name} is declared by none of the templates; remove it or fix its name`,
        );
  if (result.gate.metrics.length > MAX_GATE_METRICS)
    result.invalid.push(
      `${where}: ${result.gate.metrics.length} metrics after merging the templates, at most ${MAX_GATE_METRICS}`,
    );
  return result;
}

/**
 * The spec the engine runs: each gate's templates looked up, their args substituted, their metrics
 * merged after the inline ones. A missing template wins over other problems (reason
 * AnalysisTemplateNotFound: creating it lets the rollout go on); everything else is
 * InvalidAnalysis. Without references the spec comes back unchanged (same fingerprints).
 */
export function resolveAnalysisTemplates(
  spec: WrittenSpec,
  lookup: TemplateLookup,
  namespace: string,
): Resolution {
  const input = {
    namespace,
    provider: spec.prometheus,
    scope: spec.adapters ? "adapters" : "pools",
  } as const;
  const notFound: string[] = [];
  const invalid: string[] = [];
  const resolve = (gate: WrittenAnalysisSpec, where: string): AnalysisSpec => {
    const r = resolveGate(gate, lookup, { ...input, where });
    notFound.push(...r.notFound);
    invalid.push(...r.invalid);
    return r.gate;
  };
  const resolved = {
    ...spec,
    ...(spec.analysis ? { analysis: resolve(spec.analysis, "analysis") } : {}),
    steps: (spec.steps ?? []).map((step, i) =>
      step.analysis ? { ...step, analysis: resolve(step.analysis, `steps[${i}].analysis`) } : step,
    ),
  } as ModelRolloutSpec;
  if (spec.steps === undefined) delete (resolved as Partial<ModelRolloutSpec>).steps;
  if (notFound.length)
    return {
      spec: resolved,
      problem: { reason: "AnalysisTemplateNotFound", message: notFound.join("; ") },
    };
  if (invalid.length)
    return { spec: resolved, problem: { reason: "InvalidAnalysis", message: invalid.join("; ") } };
  return { spec: resolved };
}

/** The spec with its inline metrics only, for what does not run gates (claims, failure reports). */
export function inlineSpecOf(spec: WrittenSpec): ModelRolloutSpec {
  return resolveAnalysisTemplates(spec, () => undefined, "").spec;
}
