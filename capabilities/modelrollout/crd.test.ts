// Structural checks of crds/modelrollout.yaml (the apiserver itself is exercised by the
// integration tests): names, printer columns, structural schema, descriptions, CEL rules, that the
// repeated gate schemas are identical copies, and that the generated types cover the schema.
import { describe, expect, it } from "@jest/globals";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { MAX_TIMEOUT, MAX_WAIT, parseDuration } from "../duration";
import { METRICS_SOURCES } from "../analysis/builtins";

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
    expect(rules(metric)).toContain("has(self.query) != has(self.template)");
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
        "prometheus",
        "query",
        "successCondition",
        "template",
      ].sort(),
    );
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
