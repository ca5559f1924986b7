// The pools around a pools-scenario rollout (the I/O around traffic/canarypool.ts): create the
// canary pool from spec.pools.canaryTemplate with clones of the stable pool's models, and delete
// the pool that lost.
import { K8s } from "kubernetes-fluent-client";
import { groupOf, InferenceGroup } from "../../api/constants";
import {
  HTTPRoute as HTTPRouteKind,
  InferenceModel as InferenceModelKind,
  InferenceObjective,
  inferenceObjectiveClass,
  InferenceObjectiveLlmd,
  inferencePoolClass,
  InferencePoolV1,
  InferencePoolV1alpha2,
} from "../../api/kinds";
import { onWire } from "../../api/wire";
import {
  buildCanaryPool,
  cloneForCanaryPool,
  isManagedBy,
  type KubeObject,
  type RolloutRef,
} from "../traffic/canarypool";
import { detectPoolGroup } from "../traffic/httproute";
import type { ModelRolloutSpec } from "../types";
import { createIfAbsent, getOrUndefined, listOrEmpty } from "./kube-objects";

/** The kinds whose objects name a pool in spec.poolRef and are cloned for a canary pool. */
const poolMemberKinds = [InferenceModelKind, InferenceObjective, InferenceObjectiveLlmd];

/** Scenario 1 with canaryTemplate: create the canary pool and clone the stable pool's models. */
export async function ensureCanaryPool(
  rollout: RolloutRef,
  spec: ModelRolloutSpec,
): Promise<string[]> {
  const pools = spec.pools!;
  const created: string[] = [];
  const route = onWire(
    await K8s(HTTPRouteKind).InNamespace(rollout.namespace).Get(pools.httpRoute),
  );
  const group =
    pools.poolGroup ?? detectPoolGroup(route, { stable: pools.stable, canary: pools.canary });
  const Pool = inferencePoolClass(group ?? InferenceGroup.xK8s);
  const stablePool = await getOrUndefined(Pool, rollout.namespace, pools.stable);
  if (!(await getOrUndefined(Pool, rollout.namespace, pools.canary)) && pools.canaryTemplate) {
    const pool = buildCanaryPool({
      rollout,
      canary: pools.canary,
      template: pools.canaryTemplate as Record<string, unknown>,
      stablePool,
      poolGroup: group,
    });
    if (await createIfAbsent(Pool, pool)) created.push(`InferencePool ${pools.canary}`);
  }
  const existing: KubeObject[] = [];
  for (const model of poolMemberKinds) {
    existing.push(...(await listOrEmpty(model, rollout.namespace)));
  }
  for (const clone of cloneForCanaryPool({
    rollout,
    existing,
    stablePool: pools.stable,
    canaryPool: pools.canary,
    canaryGroup: group,
  })) {
    const model =
      clone.kind === "InferenceModel"
        ? InferenceModelKind
        : inferenceObjectiveClass(groupOf(clone.apiVersion));
    if (await createIfAbsent(model, clone)) created.push(`${clone.kind} ${clone.metadata?.name}`);
  }
  return created;
}

/**
 * postRollout.unusedPool=Delete: delete the pool that lost (with onlyIfManaged, only one this
 * operator created) and the InferenceModels / InferenceObjectives this operator cloned for it.
 */
export async function deletePool(
  rollout: RolloutRef,
  spec: ModelRolloutSpec,
  poolName: string,
  onlyIfManaged: boolean,
): Promise<boolean> {
  const group = spec.pools?.poolGroup;
  const poolKinds = group ? [inferencePoolClass(group)] : [InferencePoolV1alpha2, InferencePoolV1];
  let deleted = false;
  for (const Pool of poolKinds) {
    const pool = await getOrUndefined(Pool, rollout.namespace, poolName);
    if (!pool) continue;
    if (onlyIfManaged && !isManagedBy(pool, rollout)) return false;
    await K8s(Pool).InNamespace(rollout.namespace).Delete(poolName);
    deleted = true;
  }
  for (const model of poolMemberKinds) {
    for (const obj of await listOrEmpty(model, rollout.namespace)) {
      const name = obj.metadata?.name;
      if (name && obj.spec?.poolRef?.name === poolName && isManagedBy(obj, rollout))
        await K8s(model).InNamespace(rollout.namespace).Delete(name);
    }
  }
  return deleted;
}
