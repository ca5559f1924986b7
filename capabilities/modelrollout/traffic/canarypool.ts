// Scenario 1 with spec.pools.canaryTemplate, pure builders: the canary InferencePool and clones of
// the stable pool's InferenceModels (v1alpha2, spec.poolRef.name) or InferenceObjectives
// (spec.poolRef) for it. The reconciler creates what is missing (create, never update: an
// existing pool or model is left as the user made it).
//
// Both carry the labels below so the operator can tell what it created (postRollout.unusedPool:
// Delete removes only those). No ownerReferences: the canary pool becomes the production pool
// after a successful rollout and must outlive the ModelRollout.
import { apiVersionOf, inferencePoolGvk, type PoolGroup } from "../../api/constants";
import type { AnyApiObject, ObjectMeta } from "../../api/objects";
import { fingerprint } from "../fingerprint";

export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY_VALUE = "modelrollout";
/** Name of the ModelRollout that created the object (truncated + hashed beyond 63 characters). */
export const ROLLOUT_LABEL = "rollouts.inference.dev/rollout";
/** Name of the object a clone was made from. */
export const CLONED_FROM_ANNOTATION = "rollouts.inference.dev/cloned-from";

/**
 * InferencePools, InferenceModels and InferenceObjectives: their specs are copied as they are,
 * only spec.poolRef and spec.modelName are read.
 */
export type KubeObject = AnyApiObject;

export interface RolloutRef {
  name: string;
  namespace: string;
}

/** A label value for a name: as is up to 63 characters, else shortened with a hash suffix. */
export function labelValue(name: string): string {
  if (name.length <= 63) return name;
  return `${name.slice(0, 54).replace(/[^A-Za-z0-9]+$/, "")}-${fingerprint(name)}`;
}

/** A DNS subdomain name (≤ 253) from parts, shortened with a hash suffix when too long. */
export function objectName(...parts: string[]): string {
  const joined = parts.join("-");
  if (joined.length <= 253) return joined;
  return `${joined.slice(0, 243).replace(/[^a-z0-9]+$/, "")}-${fingerprint(joined)}`;
}

export function managedLabels(rollout: RolloutRef): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [ROLLOUT_LABEL]: labelValue(rollout.name) };
}

/** True when the object was created by this operator for the given rollout. */
export function isManagedBy(obj: { metadata?: ObjectMeta }, rollout: RolloutRef): boolean {
  const labels = obj.metadata?.labels ?? {};
  return (
    labels[MANAGED_BY_LABEL] === MANAGED_BY_VALUE &&
    labels[ROLLOUT_LABEL] === labelValue(rollout.name)
  );
}

/**
 * The canary InferencePool: spec = canaryTemplate (copied as is; it is a full InferencePool spec,
 * including its own endpoint picker), apiVersion = the pool group's when given, else the stable
 * pool's.
 */
export function buildCanaryPool(args: {
  rollout: RolloutRef;
  canary: string;
  template: Record<string, unknown>;
  stablePool?: KubeObject;
  poolGroup?: PoolGroup;
}): KubeObject {
  const apiVersion = args.poolGroup
    ? apiVersionOf(inferencePoolGvk(args.poolGroup))
    : args.stablePool?.apiVersion;
  if (!apiVersion) {
    throw new Error(
      `cannot tell the API version of canary InferencePool ${args.canary}: set spec.pools.poolGroup`,
    );
  }
  return {
    apiVersion,
    kind: "InferencePool",
    metadata: {
      name: args.canary,
      namespace: args.rollout.namespace,
      labels: managedLabels(args.rollout),
    },
    spec: structuredClone(args.template),
  };
}

function poolRefName(obj: KubeObject): string | undefined {
  const ref = obj.spec?.poolRef as { name?: unknown; kind?: unknown } | undefined;
  if (!ref || (ref.kind !== undefined && ref.kind !== "InferencePool")) return undefined;
  return typeof ref.name === "string" ? ref.name : undefined;
}

/**
 * Clones for the canary pool of every InferenceModel / InferenceObjective in `existing` whose
 * spec.poolRef names the stable pool: same spec (modelName, criticality, priority, targetModels…)
 * with poolRef.name = canary (poolRef.group = canaryGroup when given), name
 * `<canary>-<original>`, managed labels. Skipped when the canary pool already has an
 * InferenceModel with the same modelName (e.g. the user created it, as in the seed) or an object
 * with the clone's name exists.
 *
 * Note: requests select an InferenceObjective by metadata.name (header
 * x-gateway-inference-objective); a clone necessarily has another name, so such requests reach
 * the canary pool with its picker's default priority.
 */
export function cloneForCanaryPool(args: {
  rollout: RolloutRef;
  existing: KubeObject[];
  stablePool: string;
  canaryPool: string;
  canaryGroup?: PoolGroup;
}): KubeObject[] {
  const { existing, stablePool, canaryPool } = args;
  const names = new Set(existing.map(o => `${o.kind}/${o.metadata?.name}`));
  const canaryModelNames = new Set(
    existing
      .filter(o => o.kind === "InferenceModel" && poolRefName(o) === canaryPool)
      .map(o => String(o.spec?.modelName)),
  );
  const clones: KubeObject[] = [];
  for (const original of existing) {
    if (poolRefName(original) !== stablePool) continue;
    const name = objectName(canaryPool, original.metadata?.name ?? "");
    if (names.has(`${original.kind}/${name}`)) continue;
    if (
      original.kind === "InferenceModel" &&
      canaryModelNames.has(String(original.spec?.modelName))
    )
      continue;
    const spec = structuredClone(original.spec ?? {});
    const poolRef: Record<string, unknown> = {
      ...(spec.poolRef as Record<string, unknown>),
      name: canaryPool,
    };
    if (args.canaryGroup) poolRef.group = args.canaryGroup;
    spec.poolRef = poolRef;
    clones.push({
      apiVersion: original.apiVersion,
      kind: original.kind,
      metadata: {
        name,
        namespace: args.rollout.namespace,
        labels: { ...(original.metadata?.labels ?? {}), ...managedLabels(args.rollout) },
        annotations: { [CLONED_FROM_ANNOTATION]: original.metadata?.name ?? "" },
      },
      spec,
    });
  }
  return clones;
}
