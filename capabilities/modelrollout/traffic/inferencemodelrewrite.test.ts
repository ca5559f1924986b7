import { describe, expect, it } from "@jest/globals";
import {
  finalizeInferenceModelRewrite,
  type InferenceModelRewrite,
  inspectInferenceModelRewrite,
  setInferenceModelRewriteWeight,
} from "./inferencemodelrewrite";

const SPLIT = { stable: "travel-helper-v1", canary: "travel-helper-v2" };

function rewrite(group: string): InferenceModelRewrite {
  return {
    apiVersion: `${group}/v1alpha2`,
    kind: "InferenceModelRewrite",
    metadata: { name: "travel", namespace: "default" },
    spec: {
      poolRef: { name: "mymodel-pool-v1" },
      rules: [
        {
          matches: [{ model: { type: "Exact", value: "travelhelper" } }],
          targets: [{ modelRewrite: "travel-helper-v1" }],
        },
        {
          matches: [{ model: { value: "food" } }],
          targets: [
            { modelRewrite: "food-v1", weight: 3 },
            { modelRewrite: "food-v2", weight: 1 },
          ],
        },
      ],
      futureField: 1,
    },
  };
}

describe.each(["llm-d.ai", "inference.networking.x-k8s.io"])(
  "InferenceModelRewrite (%s)",
  group => {
    it("splits the rule that lists the stable target and keeps other rules, matches and fields", () => {
      const before = rewrite(group);
      const after = setInferenceModelRewriteWeight(before, SPLIT, 10)!;
      expect(after.spec!.rules![0].targets).toEqual([
        { modelRewrite: "travel-helper-v1", weight: 90 },
        { modelRewrite: "travel-helper-v2", weight: 10 },
      ]);
      expect(after.spec!.rules![0].matches).toEqual(before.spec!.rules![0].matches);
      expect(after.spec!.rules![1]).toEqual(before.spec!.rules![1]);
      expect(after.spec!.futureField).toBe(1);
      expect(setInferenceModelRewriteWeight(after, SPLIT, 10)).toBeNull();
    });

    it("finalizes to one target (targets keep minItems 1, weights ≥ 1)", () => {
      const at10 = setInferenceModelRewriteWeight(rewrite(group), SPLIT, 10)!;
      expect(
        finalizeInferenceModelRewrite(at10, SPLIT, "Promoted")!.spec!.rules![0].targets,
      ).toEqual([{ modelRewrite: "travel-helper-v2", weight: 100 }]);
      expect(
        finalizeInferenceModelRewrite(at10, SPLIT, "RolledBack")!.spec!.rules![0].targets,
      ).toEqual([{ modelRewrite: "travel-helper-v1", weight: 100 }]);
    });

    it("inspects rules, split and claims, and reports a missing target", () => {
      const at10 = setInferenceModelRewriteWeight(rewrite(group), SPLIT, 10)!;
      expect(inspectInferenceModelRewrite(at10, SPLIT)).toEqual({
        hasStable: true,
        hasCanary: true,
        canaryWeight: 10,
        rules: [0],
        claims: [`InferenceModelRewrite/${group}/default/travel/rule/0`],
      });
      const missing = inspectInferenceModelRewrite(rewrite(group), { stable: "a", canary: "b" });
      expect(missing.problem?.reason).toBe("RewriteTargetNotFound");
      expect(() =>
        setInferenceModelRewriteWeight(rewrite(group), { stable: "a", canary: "b" }, 10),
      ).toThrow("has no rule with target a or b");
    });
  },
);
