import { describe, expect, it } from "@jest/globals";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { modelToGroupVersionKind } from "kubernetes-fluent-client";
import { parseAllDocuments } from "yaml";
import {
  ACTION_ANNOTATION,
  gvk,
  INFERENCE_POOL_GROUPS,
  isTerminalPhase,
  MANUAL_ACTIONS,
  ROLLOUT_PHASES,
  SUCCESSOR_GROUPS,
  TERMINAL_PHASES,
} from "./constants";
import * as kinds from "./kinds";

const root = join(__dirname, "..", "..");

interface Crd {
  kind: string;
  spec: {
    group: string;
    names: { kind: string; plural: string };
    versions: { name: string; served: boolean; schema?: { openAPIV3Schema?: unknown } }[];
  };
}

function crds(dir: string): Crd[] {
  return readdirSync(dir)
    .filter(f => f.endsWith(".yaml"))
    .flatMap(f => parseAllDocuments(readFileSync(join(dir, f), "utf8")).map(d => d.toJS() as Crd))
    .filter(d => d?.kind === "CustomResourceDefinition");
}

describe("the API vocabulary", () => {
  const upstream = crds(join(root, "crds", "upstream"));
  const ours = crds(join(root, "crds"));

  it("names every kind as its upstream CRD serves it", () => {
    for (const [key, k] of Object.entries(gvk)) {
      const crd = upstream.find(c => c.spec.group === k.group && c.spec.names.kind === k.kind);
      expect({ key, group: crd?.spec.group, plural: crd?.spec.names.plural }).toEqual({
        key,
        group: k.group,
        plural: k.plural,
      });
      expect(crd!.spec.versions.find(v => v.name === k.version)?.served).toBe(true);
    }
  });

  it("registers each generated class under the kind the table names", () => {
    const classes: Record<keyof typeof gvk, { name: string }> = {
      httpRoute: kinds.HTTPRoute,
      inferencePoolV1alpha2: kinds.InferencePoolV1alpha2,
      inferencePoolV1: kinds.InferencePoolV1,
      inferenceModel: kinds.InferenceModel,
      inferenceObjective: kinds.InferenceObjective,
      inferenceObjectiveLlmd: kinds.InferenceObjectiveLlmd,
      inferenceModelRewrite: kinds.InferenceModelRewrite,
      inferenceModelRewriteLlmd: kinds.InferenceModelRewriteLlmd,
    };
    for (const [key, cls] of Object.entries(classes)) {
      expect({ key, ...modelToGroupVersionKind(cls.name) }).toEqual({
        key,
        ...gvk[key as keyof typeof gvk],
      });
    }
    expect(kinds.inferencePoolClass("inference.networking.k8s.io")).toBe(kinds.InferencePoolV1);
    expect(kinds.inferencePoolClass("inference.networking.x-k8s.io")).toBe(
      kinds.InferencePoolV1alpha2,
    );
    expect(kinds.inferenceModelRewriteClass("llm-d.ai")).toBe(kinds.InferenceModelRewriteLlmd);
    expect(kinds.inferenceObjectiveClass("inference.networking.x-k8s.io")).toBe(
      kinds.InferenceObjective,
    );
  });

  it("lists the groups and phases the ModelRollout CRD allows", () => {
    const schema = ours.find(c => c.spec.names.kind === "ModelRollout")!.spec.versions[0].schema!
      .openAPIV3Schema as {
      properties: {
        spec: { properties: Record<string, { properties: Record<string, { enum?: string[] }> }> };
        status: { properties: { phase: { enum: string[] } } };
      };
    };
    const spec = schema.properties.spec.properties;
    expect([...ROLLOUT_PHASES].sort()).toEqual(
      [...schema.properties.status.properties.phase.enum].sort(),
    );
    expect([...INFERENCE_POOL_GROUPS].sort()).toEqual(
      [...spec.pools.properties.poolGroup.enum!].sort(),
    );
    const rewrite = spec.adapters.properties.inferenceModelRewrite as unknown as {
      properties: { group: { enum: string[] } };
    };
    expect([...SUCCESSOR_GROUPS].sort()).toEqual([...rewrite.properties.group.enum].sort());
  });

  it("tells the terminal phases and the manual actions", () => {
    expect(TERMINAL_PHASES.filter(isTerminalPhase)).toEqual(["Succeeded", "Failed", "Aborted"]);
    expect(ROLLOUT_PHASES.filter(p => !isTerminalPhase(p))).toEqual([
      "Pending",
      "Progressing",
      "Paused",
    ]);
    expect(isTerminalPhase(undefined)).toBe(false);
    expect(ACTION_ANNOTATION).toBe("rollouts.inference.dev/action");
    expect(MANUAL_ACTIONS).toEqual(["promote", "promote-full", "abort", "retry"]);
  });
});
