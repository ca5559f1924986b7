// Structural checks of crds/modelrollout.yaml (the apiserver itself is exercised by the
// integration tests): names, printer columns, structural schema, descriptions, CEL rules, that the
// repeated gate schemas are identical copies, and that the generated types cover the schema.
import { describe, expect, it } from "@jest/globals";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { MAX_TIMEOUT, MAX_WAIT, parseDuration } from "../duration";
import { BUILTIN_TEMPLATES, METRICS_SOURCES } from "../analysis/builtins";
import { NOTIFICATION_TRANSITIONS } from "./engine";
import { NOTIFICATION_WEBHOOK_LABEL } from "./notifications/webhooks";

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  "x-kubernetes-validations"?: { rule: string; message: string }[];
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  [key: string]: unknown;
}

const root = join(__dirname, "..", "..");
const crd = parse(readFileSync(join(root, "crds", "modelrollout.yaml"), "utf8"));
const version = crd.spec.versions[0];
const schema: Schema = version.schema.openAPIV3Schema;
const spec = schema.properties!.spec;
const status = schema.properties!.status;

/** Every schema node with its path. */
function walk(node: Schema, path: string, visit: (node: Schema, path: string) => void) {
  visit(node, path);
  for (const [key, child] of Object.entries(node.properties ?? {}))
    walk(child, `${path}.${key}`, visit);
  if (node.items) walk(node.items, `${path}[]`, visit);
  if (typeof node.additionalProperties === "object")
    walk(node.additionalProperties, `${path}{}`, visit);
}

function rules(node: Schema): string[] {
  return (node["x-kubernetes-validations"] ?? []).map(v => v.rule);
}

describe("crds/modelrollout.yaml", () => {
  it("declares the contract's names, scope, version and subresource", () => {
    expect(crd.metadata.name).toBe("modelrollouts.rollouts.inference.dev");
    expect(crd.spec.group).toBe("rollouts.inference.dev");
    expect(crd.spec.scope).toBe("Namespaced");
    expect(crd.spec.names).toMatchObject({
      kind: "ModelRollout",
      plural: "modelrollouts",
      shortNames: ["mro"],
    });
    expect(crd.spec.versions).toHaveLength(1);
    expect(version).toMatchObject({
      name: "v1alpha1",
      served: true,
      storage: true,
      subresources: { status: {} },
    });
  });

  it("prints Phase, Step, Canary, Age and Message", () => {
    const columns = version.additionalPrinterColumns.map(
      (c: { name: string; jsonPath: string }) => [c.name, c.jsonPath],
    );
    expect(columns).toEqual([
      ["Phase", ".status.phase"],
      ["Step", ".status.currentStep"],
      ["Canary", ".status.canaryWeight"],
      ["Age", ".metadata.creationTimestamp"],
      ["Message", ".status.message"],
    ]);
  });

  it("is structural: every node has a type unless it is int-or-string or free-form", () => {
    walk(schema, "", (node, path) => {
      if (node["x-kubernetes-int-or-string"]) {
        expect([path, node.type]).toEqual([path, undefined]);
        return;
      }
      expect([path, typeof node.type]).toEqual([path, "string"]);
      if (node.properties) expect([path, node.type]).toEqual([path, "object"]);
      if (node.type === "array") expect([path, typeof node.items]).toEqual([path, "object"]);
      for (const forbidden of ["$ref", "anyOf", "oneOf", "allOf", "not"]) {
        expect([path, node[forbidden]]).toEqual([path, undefined]);
      }
    });
  });

  it("describes every spec and status field", () => {
    walk(spec, "spec", (node, path) => {
      if (path.endsWith("[]") || path.endsWith("{}")) return;
      expect([path, (node.description ?? "").length > 10]).toEqual([path, true]);
    });
    for (const [key, node] of Object.entries(status.properties!)) {
      expect([key, (node.description ?? "").length > 5]).toEqual([key, true]);
    }
  });

  it("has CEL rules with readable messages for what the apiserver can check", () => {
    expect(rules(spec)).toContain("has(self.pools) != has(self.adapters)");
    expect(rules(spec.properties!.adapters)).toContain(
      "has(self.inferenceModel) != has(self.inferenceModelRewrite)",
    );
    expect(rules(spec.properties!.pools)).toContain("self.stable != self.canary");
    expect(spec.required).toContain("steps");
    expect(rules(spec.properties!.steps)).toContain("size(self) >= 1");
    const step = spec.properties!.steps.items!;
    expect(rules(step)[0]).toMatch(
      /has\(self.setWeight\).*has\(self.pause\).*has\(self.analysis\).*== 1/,
    );
    expect(rules(step.properties!.setWeight)).toEqual(["self >= 0 && self <= 100"]);
    walk(schema, "", (node, path) => {
      for (const v of node["x-kubernetes-validations"] ?? []) {
        expect([path, v.message.length > 20, /[{}]/.test(v.message)]).toEqual([path, true, false]);
      }
    });
    // CEL cost needs bounded lists.
    walk(schema, "", (node, path) => {
      if (node.type === "array" && rules(node).length)
        expect([path, typeof node.maxItems]).toEqual([path, "number"]);
    });
  });

  it("declares the setHeaderRoute step with the HTTPRoute's header limits, for pools only", () => {
    const step = spec.properties!.steps.items!;
    expect(rules(step)[0]).toContain("(has(self.setHeaderRoute) ? 1 : 0) == 1");
    expect(rules(spec)).toContain(
      "!has(self.adapters) || self.steps.all(s, !has(s.setHeaderRoute))",
    );
    const match = step.properties!.setHeaderRoute.properties!.match;
    expect(step.properties!.setHeaderRoute.required).toEqual(["match"]);
    expect(match.maxItems).toBeLessThanOrEqual(16);
    const upstream = parse(
      readFileSync(
        join(
          root,
          "crds",
          "upstream",
          "gateway-api-v1.6.1_standard_gateway.networking.k8s.io_httproutes.yaml",
        ),
        "utf8",
      ),
    );
    const v1 = upstream.spec.versions.find((v: { name: string }) => v.name === "v1");
    const header =
      v1.schema.openAPIV3Schema.properties.spec.properties.rules.items.properties.matches.items
        .properties.headers;
    const name = match.items!.properties!.headerName;
    expect([name.pattern, name.maxLength]).toEqual([
      header.items.properties.name.pattern,
      header.items.properties.name.maxLength,
    ]);
    const value = match.items!.properties!.headerValue;
    expect(rules(value)[0]).toMatch(
      /has\(self.exact\).*has\(self.prefix\).*has\(self.regex\).*== 1/,
    );
    for (const kind of ["exact", "prefix", "regex"]) {
      // a prefix becomes an escaped regular expression, at most twice as long plus ".*"
      expect((value.properties![kind].maxLength as number) * 2 + 2).toBeLessThanOrEqual(
        header.items.properties.value.maxLength,
      );
    }
    expect(Object.keys(status.properties!.headerRoute.properties!)).toEqual(["match", "step"]);
  });

  it("checks every duration field with the same pattern and a bound, which agree with the engine's parser", () => {
    const patterns = new Set<string>();
    const bounds = new Map<string, string>();
    walk(spec, "spec", (node, path) => {
      if (!/(duration|interval|initialDelay|timeout)$/.test(path)) return;
      const rule = rules(node).find(r => r.startsWith("self.matches("));
      expect([path, rule]).toEqual([path, expect.any(String)]);
      const m = /^self\.matches\('(.*)'\) && duration\(self\) <= duration\('(.*)'\)$/.exec(rule!);
      expect([path, m]).toEqual([path, expect.anything()]);
      patterns.add(m![1]);
      bounds.set(path.replace(/.*\./, ""), m![2]);
    });
    expect(patterns.size).toBe(1);
    // The bounds are the engine's: a value the apiserver accepts is one the engine accepts.
    expect(Object.fromEntries(bounds)).toEqual({
      duration: MAX_WAIT,
      interval: MAX_WAIT,
      initialDelay: MAX_WAIT,
      timeout: MAX_TIMEOUT,
    });
    const re = new RegExp([...patterns][0]);
    for (const good of ["30s", "5m", "1h", "1m30s", "500ms", "8760h", "999999ms"]) {
      expect([good, re.test(good), parseDuration(good) !== undefined]).toEqual([good, true, true]);
    }
    // Seven digits could overflow CEL's duration() (int64 nanoseconds) before the bound is checked.
    for (const bad of ["5", "5 m", "1d", "-1s", "1.5s", "", "9999999h", "9999999999999h"]) {
      expect([bad, re.test(bad)]).toEqual([bad, false]);
    }
  });

  it("has one gate schema: the background and step analysis, and every Prometheus provider, are identical copies", () => {
    const background = spec.properties!.analysis;
    const stepGate = spec.properties!.steps.items!.properties!.analysis;
    const { description: _a, ...backgroundRest } = background;
    const { description: _b, ...stepRest } = stepGate;
    expect(stepRest).toEqual(backgroundRest);
    const metric = background.properties!.metrics.items!;
    expect(metric.required).toEqual(["name"]);
    expect(rules(metric)).toContain(
      "(has(self.query) ? 1 : 0) + (has(self.template) ? 1 : 0) + (has(self.probe) ? 1 : 0) == 1",
    );
    expect(Object.keys(metric.properties!).sort()).toEqual(
      [
        "args",
        "consecutiveErrorLimit",
        "count",
        "dryRun",
        "failureCondition",
        "failureLimit",
        "inconclusiveLimit",
        "initialDelay",
        "interval",
        "metricsSource",
        "multipleSeries",
        "name",
        "probe",
        "prometheus",
        "query",
        "successCondition",
        "template",
      ].sort(),
    );
    // The probe gate: bounded requests, a TTFT bound only on streamed answers.
    const probe = metric.properties!.probe;
    expect(probe.required).toEqual(["url", "prompts"]);
    expect(rules(probe)).toEqual([
      "!has(self.expect) || !has(self.expect.maxTTFT) || (has(self.stream) && self.stream)",
    ]);
    const p = probe.properties!;
    expect([p.prompts.maxItems, p.prompts.items!.maxLength]).toEqual([8, 2000]);
    expect([p.requests.minimum, p.requests.maximum, p.rate.maximum]).toEqual([1, 50, 20]);
    expect(p.api.enum).toEqual(["chat", "completions"]);
    const e = p.expect.properties!;
    expect([e.regex.maxLength, e.jsonSchema.maxLength, e.contains.maxItems]).toEqual([
      256, 8192, 8,
    ]);
    // The CRD's choices are the ones the built-in gates know, "auto" by default.
    const source = metric.properties!.metricsSource;
    expect(source.enum).toEqual([...METRICS_SOURCES]);
    expect(source.default).toBe("auto");
    expect(source.description).toMatch(/upstream-epp.*llm-d.*vllm.*auto/s);
    expect(rules(metric)).toContain(
      "has(self.template) || !has(self.metricsSource) || self.metricsSource == 'auto'",
    );
    const { description: _c, ...provider } = spec.properties!.prometheus;
    const { description: _d, ...metricProvider } = metric.properties!.prometheus;
    expect(metricProvider).toEqual(provider);
    expect(Object.keys(provider.properties!).sort()).toEqual([
      "address",
      "bearerTokenSecretRef",
      "caSecretRef",
      "timeout",
    ]);
  });

  it("defaults and enums of the policy fields", () => {
    expect(spec.properties!.onInconclusive).toMatchObject({
      default: "Hold",
      enum: ["Hold", "Rollback"],
    });
    expect(spec.properties!.pools.properties!.poolGroup.enum).toEqual([
      "inference.networking.x-k8s.io",
      "inference.networking.k8s.io",
    ]);
    expect(spec.properties!.postRollout.properties!.unusedPool).toMatchObject({ default: "Keep" });
    expect(status.properties!.phase.enum).toEqual([
      "Pending",
      "Progressing",
      "Paused",
      "Succeeded",
      "Failed",
      "Aborted",
    ]);
  });

  it("declares spec.notifications: a bounded list by name, the engine's transitions, a labelled Secret ref", () => {
    const notifications = spec.properties!.notifications;
    expect(notifications).toMatchObject({
      type: "array",
      maxItems: 10,
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["name"],
    });
    const item = notifications.items!;
    expect(item.required).toEqual(["name", "urlSecretRef"]);
    expect(item.properties!.transitions.items!.enum).toEqual([...NOTIFICATION_TRANSITIONS]);
    expect(item.properties!.transitions).toMatchObject({
      maxItems: 6,
      "x-kubernetes-list-type": "set",
    });
    expect(item.properties!.format).toMatchObject({ default: "json", enum: ["json", "slack"] });
    // kubectl reads YAML 1.1, where an unquoted key `on` (or yes/no/off/y/n) becomes `true`.
    walk(schema, "", (_node, path) =>
      expect([path, /\.(on|off|yes|no|y|n)$/i.test(path)]).toEqual([path, false]),
    );
    // The Secret ref has the same shape and checks as the gates' bearerTokenSecretRef.
    expect(item.properties!.urlSecretRef).toEqual({
      ...spec.properties!.prometheus.properties!.bearerTokenSecretRef,
      description: item.properties!.urlSecretRef.description,
    });
    expect(item.properties!.urlSecretRef.description).toContain(
      `${NOTIFICATION_WEBHOOK_LABEL}=true`,
    );
  });

  it("adapter readiness: opt-in, load needs a path, unloads after a rollback by default", () => {
    const readiness = spec.properties!.adapters.properties!.readiness;
    expect(readiness.default).toBeUndefined();
    expect(readiness.description).toMatch(/\/v1\/models.*AdapterNotReady/s);
    expect(Object.keys(readiness.properties!).sort()).toEqual(["load", "timeout"]);
    const load = readiness.properties!.load;
    expect(load.required).toEqual(["path"]);
    expect(load.description).toMatch(/load_lora_adapter/);
    expect(load.properties!.unloadOnRollback).toMatchObject({ type: "boolean", default: true });
    expect(load.properties!.unloadOnRollback.description).toMatch(/unload_lora_adapter/);
    const loadedOn = status.properties!.adapterReadiness.properties!.loadedOn;
    expect(loadedOn).toMatchObject({ type: "array", items: { type: "string" } });
    expect(typeof loadedOn.maxItems).toBe("number");
  });

  it("declares conditions as a map list by type and the gate runs as free-form objects", () => {
    const conditions = status.properties!.conditions;
    expect(conditions).toMatchObject({
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
    });
    expect(conditions.items!.required).toEqual([
      "type",
      "status",
      "reason",
      "message",
      "lastTransitionTime",
    ]);
    for (const run of ["analysis", "stepAnalysis"]) {
      expect(status.properties![run]).toMatchObject({
        type: "object",
        "x-kubernetes-preserve-unknown-fields": true,
      });
    }
  });

  it("the generated types cover every spec and status field (run capabilities/api/generate.sh after a CRD change)", () => {
    const generated = readFileSync(
      join(__dirname, "generated", "modelrollout-v1alpha1.ts"),
      "utf8",
    );
    const fields = new Set<string>();
    walk(schema, "", (_node, path) => {
      const last = path
        .split(".")
        .pop()!
        .replace(/[[\]{}]/g, "");
      if (last && !["apiVersion", "kind", "metadata"].includes(last)) fields.add(last);
    });
    for (const field of fields) {
      expect([field, new RegExp(`\\b${field}\\??:`).test(generated)]).toEqual([field, true]);
    }
  });
});

describe("crds/analysistemplate.yaml and crds/clusteranalysistemplate.yaml", () => {
  const load = (file: string) => parse(readFileSync(join(root, "crds", file), "utf8"));
  const kinds: Array<[string, string, string, string]> = [
    ["analysistemplate.yaml", "AnalysisTemplate", "analysistemplates", "Namespaced"],
    [
      "clusteranalysistemplate.yaml",
      "ClusterAnalysisTemplate",
      "clusteranalysistemplates",
      "Cluster",
    ],
  ];
  const gateMetrics = spec.properties!.analysis.properties!.metrics;

  it.each(kinds)(
    "%s: names, scope, the metric schema of ModelRollout, args by name",
    (file, kind, plural, scope) => {
      const templateCrd = load(file);
      expect(templateCrd.metadata.name).toBe(`${plural}.rollouts.inference.dev`);
      expect(templateCrd.spec).toMatchObject({
        group: "rollouts.inference.dev",
        scope,
        names: { kind, plural },
      });
      expect(templateCrd.spec.versions.map((v: { name: string }) => v.name)).toEqual(["v1alpha1"]);
      const templateSpec: Schema =
        templateCrd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
      expect(templateSpec.required).toEqual(["metrics"]);
      const { description: _a, ...metrics } = templateSpec.properties!.metrics;
      const { description: _b, ...fromRollout } = gateMetrics;
      expect(metrics).toEqual(fromRollout);
      expect(templateSpec.properties!.args).toMatchObject({
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        items: { required: ["name"] },
      });
      walk(templateSpec, "spec", (node, path) => {
        if (path.endsWith("[]") || path.endsWith("{}")) return;
        expect([path, (node.description ?? "").length > 10]).toEqual([path, true]);
      });
      const generated = readFileSync(
        join(__dirname, "generated", `${kind.toLowerCase()}-v1alpha1.ts`),
        "utf8",
      );
      walk(templateSpec, "", (_node, path) => {
        const last = path
          .split(".")
          .pop()!
          .replace(/[[\]{}]/g, "");
        if (last)
          expect([last, new RegExp(`\\b${last}\\??:`).test(generated)]).toEqual([last, true]);
      });
    },
  );

  it("names every built-in gate in the description of `template` (kubectl explain lists them)", () => {
    const template = gateMetrics.items!.properties!.template;
    for (const name of BUILTIN_TEMPLATES) expect(template.description).toContain(name);
  });

  it("a rollout's gates take templates and args besides or instead of metrics", () => {
    for (const gate of [
      spec.properties!.analysis,
      spec.properties!.steps.items!.properties!.analysis,
    ]) {
      expect(gate.required).toBeUndefined();
      expect(rules(gate)).toEqual(["has(self.metrics) || has(self.templates)"]);
      const templates = gate.properties!.templates;
      expect(templates.items!.required).toEqual(["templateName"]);
      expect(Object.keys(templates.items!.properties!).sort()).toEqual([
        "clusterScope",
        "templateName",
      ]);
      expect(rules(templates)[0]).toMatch(/exists_one/);
      expect(gate.properties!.args).toMatchObject({
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        items: { required: ["name", "value"] },
      });
    }
  });
});
