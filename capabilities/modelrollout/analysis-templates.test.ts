import { describe, expect, it } from "@jest/globals";
import {
  MAX_GATE_METRICS,
  inlineSpecOf,
  referencesTemplate,
  resolveAnalysisTemplates,
  templateRefsOf,
  type TemplateRef,
  type TemplateSpec,
} from "./analysis-templates";
import { reconcileRollout } from "./engine";
import { fingerprint } from "./fingerprint";
import type { WrittenSpec } from "./types";

const prometheus = { address: "http://prometheus.monitoring:9090" };

const errorRate: TemplateSpec = {
  args: [
    { name: "service" },
    { name: "threshold", value: "0.05" },
    { name: "window", value: "2m" },
  ],
  metrics: [
    {
      name: "errors",
      query: 'sum(rate(errors_total{service="{{args.service}}"}[{{args.window}}]))',
      successCondition: "result[0] < {{args.threshold}}",
    },
  ],
};
const ttft: TemplateSpec = {
  args: [{ name: "maxRatio", value: "1.2" }],
  metrics: [{ name: "ttft", template: "ttft-p95-ratio", args: { maxRatio: "{{args.maxRatio}}" } }],
};

function lookupOf(namespaced: Record<string, TemplateSpec>, cluster: Record<string, TemplateSpec>) {
  return (ref: TemplateRef) =>
    (ref.clusterScope ? cluster : namespaced)[ref.templateName] as TemplateSpec | undefined;
}

function specWith(
  gate: NonNullable<WrittenSpec["analysis"]>,
  background?: WrittenSpec["analysis"],
) {
  return {
    pools: { httpRoute: "route", stable: "v1", canary: "v2" },
    prometheus,
    steps: [{ setWeight: 10 }, { analysis: gate }, { setWeight: 50 }],
    ...(background ? { analysis: background } : {}),
  } as WrittenSpec;
}

const lookup = lookupOf({ "error-rate": errorRate }, { ttft });

describe("resolveAnalysisTemplates", () => {
  it("merges namespaced and cluster templates after the inline metrics, args substituted", () => {
    const spec = specWith(
      {
        templates: [{ templateName: "error-rate" }, { templateName: "ttft", clusterScope: true }],
        args: [
          { name: "service", value: 'a"b' },
          { name: "maxRatio", value: "1.5" },
        ],
        metrics: [{ name: "inline", query: "vector(1)", successCondition: "result[0] == 1" }],
        measurementsToKeep: 3,
      },
      { templates: [{ templateName: "ttft", clusterScope: true }] },
    );
    const { spec: resolved, problem } = resolveAnalysisTemplates(spec, lookup, "team-a");
    expect(problem).toBeUndefined();
    expect(resolved.steps[1].analysis).toEqual({
      measurementsToKeep: 3,
      metrics: [
        { name: "inline", query: "vector(1)", successCondition: "result[0] == 1" },
        {
          name: "errors",
          // The query keeps its placeholders: the renderer escapes the values from args.
          query: 'sum(rate(errors_total{service="{{args.service}}"}[{{args.window}}]))',
          args: { service: 'a"b', window: "2m" },
          successCondition: "result[0] < 0.05",
        },
        { name: "ttft", template: "ttft-p95-ratio", args: { maxRatio: "1.5" } },
      ],
    });
    expect(resolved.analysis).toEqual({
      metrics: [{ name: "ttft", template: "ttft-p95-ratio", args: { maxRatio: "1.2" } }],
    });
  });

  it("leaves a spec without references unchanged, fingerprints included", () => {
    const spec = specWith({ metrics: [{ name: "m", query: "vector(1)" }] });
    const { spec: resolved, problem } = resolveAnalysisTemplates(spec, lookup, "ns");
    expect(problem).toBeUndefined();
    expect(resolved).toEqual(spec);
    expect(fingerprint(resolved.steps[1])).toBe(fingerprint(spec.steps[1]));
  });

  it("a changed template changes the resolved step's fingerprint (the running gate restarts)", () => {
    const spec = specWith({
      templates: [{ templateName: "error-rate" }],
      args: [{ name: "service", value: "s" }],
    });
    const before = resolveAnalysisTemplates(spec, lookup, "ns").spec;
    const changed = {
      ...errorRate,
      args: [
        { name: "service" },
        { name: "threshold", value: "0.01" },
        { name: "window", value: "2m" },
      ],
    };
    const after = resolveAnalysisTemplates(
      spec,
      lookupOf({ "error-rate": changed }, {}),
      "ns",
    ).spec;
    expect(fingerprint(after.steps[1])).not.toBe(fingerprint(before.steps[1]));
  });

  it("a missing template: AnalysisTemplateNotFound naming it, its namespace and the fix", () => {
    const spec = specWith(
      { templates: [{ templateName: "nope" }] },
      { templates: [{ templateName: "gone", clusterScope: true }] },
    );
    expect(resolveAnalysisTemplates(spec, lookup, "team-a").problem).toEqual({
      reason: "AnalysisTemplateNotFound",
      message:
        "analysis.templates[0]: ClusterAnalysisTemplate gone not found; create it or fix templateName; " +
        "steps[1].analysis.templates[0]: AnalysisTemplate team-a/nope not found; create it in namespace team-a or fix templateName",
    });
  });

  it("a required arg not given: InvalidAnalysis naming the arg and where to give it", () => {
    const spec = specWith({ templates: [{ templateName: "error-rate" }] });
    const { problem } = resolveAnalysisTemplates(spec, lookup, "ns");
    expect(problem?.reason).toBe("InvalidAnalysis");
    expect(problem?.message).toBe(
      "steps[1].analysis: AnalysisTemplate ns/error-rate needs arg service, which has no default: " +
        'give it in steps[1].analysis.args (- name: service, value: "...")',
    );
  });

  it("refuses a non-number in a condition, an unknown arg, duplicate names and a bad template metric", () => {
    const cases: Array<
      [NonNullable<WrittenSpec["analysis"]>, Record<string, TemplateSpec>, RegExp]
    > = [
      [
        {
          templates: [{ templateName: "error-rate" }],
          args: [
            { name: "service", value: "s" },
            { name: "threshold", value: "0 or true" },
          ],
        },
        { "error-rate": errorRate },
        /metric errors: successCondition uses \{\{args.threshold\}\}, which must be a number there, got "0 or true"/,
      ],
      [
        {
          templates: [{ templateName: "error-rate" }],
          args: [
            { name: "service", value: "s" },
            { name: "servce", value: "x" },
          ],
        },
        { "error-rate": errorRate },
        /steps\[1\]\.analysis\.args: servce is declared by none of the templates/,
      ],
      [
        {
          templates: [{ templateName: "error-rate" }],
          args: [{ name: "service", value: "s" }],
          metrics: [{ name: "errors", query: "vector(1)" }],
        },
        { "error-rate": errorRate },
        /metric name errors is in both the inline metrics and AnalysisTemplate ns\/error-rate/,
      ],
      [
        { templates: [{ templateName: "bad" }] },
        { bad: { metrics: [{ name: "b", query: "up", successCondition: "result[0] <" }] } },
        /steps\[1\]\.analysis: AnalysisTemplate ns\/bad: metrics\[0\] \(b\): successCondition/,
      ],
      [
        { templates: [{ templateName: "many" }] },
        {
          many: {
            metrics: Array.from({ length: MAX_GATE_METRICS + 1 }, (_, i) => ({
              name: `m${i}`,
              query: "up",
            })),
          },
        },
        /33 metrics after merging the templates, at most 32/,
      ],
    ];
    for (const [gate, templates, message] of cases) {
      const { problem } = resolveAnalysisTemplates(specWith(gate), lookupOf(templates, {}), "ns");
      expect(problem?.reason).toBe("InvalidAnalysis");
      expect(problem?.message).toMatch(message);
    }
  });

  it("the engine refuses an unresolvable spec before any weight: Pending, Ready=False, no traffic action", () => {
    const spec = specWith({ templates: [{ templateName: "nope" }] });
    const { spec: resolved, problem } = resolveAnalysisTemplates(spec, lookup, "ns");
    const now = new Date("2026-01-01T00:00:00Z");
    const result = reconcileRollout(
      resolved,
      undefined,
      { generation: 1, targets: { ready: true }, specError: problem },
      now,
    );
    expect(result.status.phase).toBe("Pending");
    expect(result.status.canaryWeight).toBeUndefined();
    expect(result.actions.filter(a => a.type !== "event")).toEqual([]);
    expect(result.status.conditions?.find(c => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "AnalysisTemplateNotFound",
    });
  });
});

describe("template references", () => {
  const spec = specWith(
    { templates: [{ templateName: "a" }, { templateName: "b", clusterScope: true }] },
    { templates: [{ templateName: "a", clusterScope: false }] },
  );

  it("lists each template once and tells which ones a spec uses", () => {
    expect(templateRefsOf(spec)).toEqual([
      { templateName: "a", clusterScope: false },
      { templateName: "b", clusterScope: true },
    ]);
    expect(referencesTemplate(spec, { templateName: "b", clusterScope: true })).toBe(true);
    expect(referencesTemplate(spec, { templateName: "b" })).toBe(false);
    expect(referencesTemplate(spec, { templateName: "c" })).toBe(false);
  });

  it("inlineSpecOf keeps the inline metrics only", () => {
    const inline = inlineSpecOf(spec);
    expect(inline.steps[1].analysis).toEqual({ metrics: [] });
    expect(inline.analysis).toEqual({ metrics: [] });
  });
});
