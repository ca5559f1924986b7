// InferenceModelRewrite (v1alpha2 of inference.networking.x-k8s.io and llm-d.ai, same schema)
// traffic adapter, pure: splits spec.rules[].targets[{modelRewrite, weight}] between the stable
// and the canary in every rule that lists either of them (weights 1..1e6, weights on all targets
// or none, targets minItems 1: see weighted.ts). Matches, other rules and fields are kept.
import type { InferenceModelRewrite } from "../../api/objects";
import { jsonEqual } from "../fingerprint";
import type { AdapterSplit, ModelInspection } from "./inferencemodel";
import { inspectWeightedList, splitWeightedList } from "./weighted";

export type { InferenceModelRewrite } from "../../api/objects";

export interface RewriteInspection extends ModelInspection {
  /** Indexes of the rules that list the stable or canary target. */
  rules: number[];
}

function selectedRules(rewrite: InferenceModelRewrite, split: AdapterSplit): number[] {
  return (rewrite.spec?.rules ?? []).flatMap((rule, i) =>
    (rule.targets ?? []).some(
      t => t.modelRewrite === split.stable || t.modelRewrite === split.canary,
    )
      ? [i]
      : [],
  );
}

export function inspectInferenceModelRewrite(
  rewrite: InferenceModelRewrite,
  split: AdapterSplit,
): RewriteInspection {
  const rules = selectedRules(rewrite, split);
  const name = rewrite.metadata?.name ?? "?";
  const group = rewrite.apiVersion?.split("/")[0] ?? "";
  const claims = rules.map(
    i => `InferenceModelRewrite/${group}/${rewrite.metadata?.namespace ?? ""}/${name}/rule/${i}`,
  );
  if (rules.length === 0) {
    return {
      hasStable: false,
      hasCanary: false,
      rules,
      claims,
      problem: {
        reason: "RewriteTargetNotFound",
        message: `InferenceModelRewrite ${name} has no rule with target ${split.stable} or ${split.canary}`,
      },
    };
  }
  const all = rules.map(i =>
    inspectWeightedList(
      rewrite.spec?.rules?.[i].targets ?? [],
      "modelRewrite",
      split.stable,
      split.canary,
    ),
  );
  return {
    ...all[0],
    hasStable: all.every(x => x.hasStable),
    hasCanary: all.every(x => x.hasCanary),
    rules,
    claims,
  };
}

/** The rewrite with canary = canaryWeight %, stable = the rest in each selected rule; null when unchanged. */
export function setInferenceModelRewriteWeight(
  rewrite: InferenceModelRewrite,
  split: AdapterSplit,
  canaryWeight: number,
): InferenceModelRewrite | null {
  const rules = selectedRules(rewrite, split);
  if (rules.length === 0) {
    throw new Error(
      `InferenceModelRewrite ${rewrite.metadata?.name ?? "?"} has no rule with target ${split.stable} or ${split.canary}`,
    );
  }
  const next = structuredClone(rewrite);
  for (const i of rules) {
    const rule = next.spec!.rules![i];
    rule.targets = splitWeightedList(
      rule.targets ?? [],
      "modelRewrite",
      split.stable,
      split.canary,
      canaryWeight,
    );
  }
  return jsonEqual(next, rewrite) ? null : next;
}

/** Promoted: only the canary target of the pair remains; RolledBack: only the stable one. */
export function finalizeInferenceModelRewrite(
  rewrite: InferenceModelRewrite,
  split: AdapterSplit,
  outcome: "Promoted" | "RolledBack",
): InferenceModelRewrite | null {
  return setInferenceModelRewriteWeight(rewrite, split, outcome === "Promoted" ? 100 : 0);
}
