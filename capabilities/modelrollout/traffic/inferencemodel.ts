// InferenceModel (inference.networking.x-k8s.io/v1alpha2) traffic adapter, pure: splits
// spec.targetModels between the stable and the canary adapter (see weighted.ts for the rules).
// Every other field is kept. The reconciler patches in what changed (weight-patch.ts) behind the
// GET's resourceVersion.
import type { InferenceModel } from "../../api/objects";
import { jsonEqual } from "../fingerprint";
import { inspectWeightedList, splitWeightedList, type ListInspection } from "./weighted";

export type { InferenceModel, TargetModel } from "../../api/objects";

/** spec.targetModels maxItems in the v1alpha2 CRD. */
export const MAX_TARGET_MODELS = 10;

export interface AdapterSplit {
  stable: string;
  canary: string;
}

export interface ModelInspection extends ListInspection {
  problem?: { reason: string; message: string };
  /** Keys of what the rollout would own, for conflict detection. */
  claims: string[];
}

export function inspectInferenceModel(model: InferenceModel, split: AdapterSplit): ModelInspection {
  const list = model.spec?.targetModels ?? [];
  const found = inspectWeightedList(list, "name", split.stable, split.canary);
  const name = model.metadata?.name ?? "?";
  const claims = [`InferenceModel/${model.metadata?.namespace ?? ""}/${name}`];
  if (!found.hasStable && !found.hasCanary) {
    return {
      ...found,
      claims,
      problem: {
        reason: "TargetModelNotFound",
        message: `InferenceModel ${name} has no targetModel ${split.stable} or ${split.canary}`,
      },
    };
  }
  if (!found.hasCanary && list.length >= MAX_TARGET_MODELS) {
    return {
      ...found,
      claims,
      problem: {
        reason: "TooManyTargetModels",
        message: `InferenceModel ${name} already has ${MAX_TARGET_MODELS} targetModels; no room for ${split.canary}`,
      },
    };
  }
  return { ...found, claims };
}

/** The model with canary = canaryWeight %, stable = the rest; null when unchanged. */
export function setInferenceModelWeight(
  model: InferenceModel,
  split: AdapterSplit,
  canaryWeight: number,
): InferenceModel | null {
  const next = structuredClone(model);
  next.spec ??= {} as NonNullable<InferenceModel["spec"]>;
  next.spec.targetModels = splitWeightedList(
    model.spec?.targetModels ?? [],
    "name",
    split.stable,
    split.canary,
    canaryWeight,
    MAX_TARGET_MODELS,
  );
  return jsonEqual(next, model) ? null : next;
}

/** Promoted: only the canary entry of the pair remains; RolledBack: only the stable one. */
export function finalizeInferenceModel(
  model: InferenceModel,
  split: AdapterSplit,
  outcome: "Promoted" | "RolledBack",
): InferenceModel | null {
  return setInferenceModelWeight(model, split, outcome === "Promoted" ? 100 : 0);
}
