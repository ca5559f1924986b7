// The I/O around the pure traffic adapters (traffic/*.ts): read the target object, transform it,
// write back only what changed — weights and whole weighted-list entries, as a JSON Patch
// (traffic/weight-patch.ts), so every other field stays as Git has it — behind a resourceVersion
// precondition (a JSON Patch `test` op) so that a concurrent edit by another client is never lost:
// on a conflict we read again and redo the transform on the fresh object.
import { GenericKind, K8s, kind } from "kubernetes-fluent-client";
import {
  checkSecretRef,
  GATE_CREDENTIALS_LABEL,
  gateCredentialFrom,
} from "../analysis/credentials";
import { groupOf, InferenceGroup, type PoolGroup } from "../api/constants";
import {
  HTTPRoute as HTTPRouteKind,
  InferenceModel as InferenceModelKind,
  inferenceModelRewriteClass,
  InferenceObjective,
  inferenceObjectiveClass,
  InferenceObjectiveLlmd,
  inferencePoolClass,
  InferencePoolV1,
  InferencePoolV1alpha2,
} from "../api/kinds";
import { onWire } from "../api/wire";
import {
  buildCanaryPool,
  cloneForCanaryPool,
  isManagedBy,
  type KubeObject,
  type RolloutRef,
} from "./traffic/canarypool";
import {
  detectPoolGroup,
  finalizeHTTPRoute,
  type HTTPRoute,
  inspectHTTPRoute,
  type PoolSplit,
  setHTTPRouteWeight,
} from "./traffic/httproute";
import {
  finalizeInferenceModel,
  type InferenceModel,
  inspectInferenceModel,
  setInferenceModelWeight,
} from "./traffic/inferencemodel";
import {
  finalizeInferenceModelRewrite,
  type InferenceModelRewrite,
  inspectInferenceModelRewrite,
  setInferenceModelRewriteWeight,
} from "./traffic/inferencemodelrewrite";
import { weightPatch } from "./traffic/weight-patch";
import type { ModelRolloutSpec, RolloutTarget } from "./types";

type Model = typeof GenericKind;

import { apiFailure } from "../api-failure";
export { apiFailure, type ApiFailure } from "../api-failure";

/** The object, as it is on the wire; undefined when there is none (404). */
async function getOrUndefined<M extends Model>(model: M, namespace: string, name: string) {
  try {
    return onWire(await K8s(model).InNamespace(namespace).Get(name));
  } catch (err) {
    if (apiFailure(err).status === 404) return undefined;
    throw err;
  }
}

/** Every object of a kind in a namespace, as on the wire; [] when the kind is not served (404). */
async function listOrEmpty<M extends Model>(model: M, namespace: string) {
  try {
    return (await K8s(model).InNamespace(namespace).Get()).items.map(onWire);
  } catch (err) {
    // A cluster may lack one of the groups (e.g. no llm-d CRDs): nothing there.
    if (apiFailure(err).status === 404) return [];
    throw err;
  }
}

/**
 * Other writers kept changing the object for every attempt: transient, retried with backoff like
 * a network error, and not reported as a problem with the object or the spec.
 */
export class TargetContendedError extends Error {
  constructor(kindName: string, namespace: string, name: string, attempts: number) {
    super(
      `${kindName} ${namespace}/${name} changed under us ${attempts} times in a row (other writers); retrying later`,
    );
  }
}

/**
 * Read-transform-write with optimistic concurrency. `transform` returns the new object or null
 * (nothing to change); only the weights in which it differs are written. Returns true when it wrote.
 */
export async function modifyWithRetry<T extends { spec?: unknown }>(
  model: Model,
  namespace: string,
  name: string,
  transform: (current: T) => T | null,
  known?: unknown,
  attempts = 5,
): Promise<boolean> {
  const get = async () => (await K8s(model).InNamespace(namespace).Get(name)) as GenericKind;
  // `known`: the caller's fresh copy; a conflict sends the retry to a GET.
  let current = (known as GenericKind | undefined) ?? (await get());
  for (let attempt = 1; ; attempt++) {
    const next = transform(current as T);
    if (next === null) return false;
    let weights;
    try {
      weights = weightPatch(current.spec, next.spec);
    } catch (err) {
      throw new Error(
        `${current.kind ?? model.name} ${namespace}/${name}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (weights.length === 0) return false;
    const tried = current.metadata?.resourceVersion;
    try {
      await K8s(model, { name, namespace }).Patch([
        { op: "test", path: "/metadata/resourceVersion", value: tried },
        ...weights,
      ]);
      return true;
    } catch (err) {
      // 409 Conflict, or 422 when the `test` op saw another resourceVersion: someone else wrote.
      // A 422 on an object nobody else changed is the apiserver refusing our change itself.
      const { status } = apiFailure(err);
      if (status !== 409 && status !== 422) throw err;
      current = await get();
      if (status === 422 && current.metadata?.resourceVersion === tried) throw err;
      if (attempt >= attempts)
        throw new TargetContendedError(
          String(current.kind ?? model.name),
          namespace,
          name,
          attempts,
        );
    }
  }
}

export interface TargetInspection {
  /** Why the rollout cannot work on its target now (missing object, missing ref...). */
  problem?: { reason: string; message: string };
  /** Keys of what the rollout owns, for conflict detection. */
  claims: string[];
  /** Canary share in percent as found in the target. */
  canaryWeight?: number;
  /** Template variables for gates (model name, pool). */
  modelName?: string;
  pool?: string;
  /** The inspected object, to inspect other rollouts' claims against it without another read. */
  object?: unknown;
}

/** Reads and drives one rollout's traffic target. */
export interface TrafficTarget {
  inspect(): Promise<TargetInspection>;
  /** Claims another rollout with `spec` would have on the object this target inspected. */
  claimsOf(object: unknown, spec: ModelRolloutSpec): string[];
  /** `known`: the object inspect() returned, to start from without another read. */
  setWeight(canaryWeight: number, known?: unknown): Promise<boolean>;
  finalize(outcome: "Promoted" | "RolledBack", known?: unknown): Promise<boolean>;
}

function notFound(kindName: string, namespace: string, name: string) {
  return {
    reason: `${kindName}NotFound`,
    message: `${kindName} ${namespace}/${name} not found; create it or fix the name in the ModelRollout spec`,
  };
}

function httpRouteTarget(
  namespace: string,
  spec: ModelRolloutSpec,
  target: RolloutTarget,
): TrafficTarget {
  const pools = spec.pools!;
  let group: PoolGroup | undefined = pools.poolGroup;
  const split = (): PoolSplit => ({
    stable: target.stable,
    canary: target.canary,
    group,
    rule: target.rule,
  });
  return {
    async inspect() {
      const route = await getOrUndefined(HTTPRouteKind, namespace, target.name);
      if (!route) return { problem: notFound("HTTPRoute", namespace, target.name), claims: [] };
      group ??= detectPoolGroup(route, split());
      const inspection = inspectHTTPRoute(route, split());
      if (inspection.problem) return { ...inspection, object: route };
      const poolGroup = group ?? inspection.group;
      const Pool = inferencePoolClass(poolGroup ?? InferenceGroup.xK8s);
      const stablePool = await getOrUndefined(Pool, namespace, target.stable);
      if (!stablePool)
        return {
          problem: notFound("InferencePool", namespace, target.stable),
          claims: inspection.claims,
          object: route,
        };
      if (!pools.canaryTemplate && !(await getOrUndefined(Pool, namespace, target.canary))) {
        return {
          problem: {
            reason: "CanaryPoolNotFound",
            message: `InferencePool ${namespace}/${target.canary} not found; create it or set spec.pools.canaryTemplate so the operator creates it`,
          },
          claims: inspection.claims,
          object: route,
        };
      }
      return {
        claims: inspection.claims,
        canaryWeight: inspection.canaryWeight,
        pool: target.stable,
        object: route,
      };
    },
    claimsOf(object, other) {
      const t = other.pools;
      if (!t || t.httpRoute !== target.name) return [];
      return inspectHTTPRoute(object as HTTPRoute, {
        stable: t.stable,
        canary: t.canary,
        group,
        rule: t.httpRouteRule,
      }).claims;
    },
    setWeight: (w, known) =>
      modifyWithRetry<HTTPRoute>(
        HTTPRouteKind,
        namespace,
        target.name,
        r => setHTTPRouteWeight(r, split(), w),
        known,
      ),
    finalize: (outcome, known) =>
      modifyWithRetry<HTTPRoute>(
        HTTPRouteKind,
        namespace,
        target.name,
        r => finalizeHTTPRoute(r, split(), outcome),
        known,
      ),
  };
}

function inferenceModelTarget(namespace: string, target: RolloutTarget): TrafficTarget {
  const split = { stable: target.stable, canary: target.canary };
  return {
    async inspect() {
      const model = await getOrUndefined(InferenceModelKind, namespace, target.name);
      if (!model)
        return { problem: notFound("InferenceModel", namespace, target.name), claims: [] };
      const inspection = inspectInferenceModel(model, split);
      return {
        ...inspection,
        modelName: model.spec?.modelName,
        pool: model.spec?.poolRef?.name,
        object: model,
      };
    },
    claimsOf(object, other) {
      const a = other.adapters;
      if (!a || a.inferenceModel !== target.name) return [];
      return inspectInferenceModel(object as InferenceModel, { stable: a.stable, canary: a.canary })
        .claims;
    },
    setWeight: (w, known) =>
      modifyWithRetry<InferenceModel>(
        InferenceModelKind,
        namespace,
        target.name,
        m => setInferenceModelWeight(m, split, w),
        known,
      ),
    finalize: (outcome, known) =>
      modifyWithRetry<InferenceModel>(
        InferenceModelKind,
        namespace,
        target.name,
        m => finalizeInferenceModel(m, split, outcome),
        known,
      ),
  };
}

function inferenceModelRewriteTarget(namespace: string, target: RolloutTarget): TrafficTarget {
  const split = { stable: target.stable, canary: target.canary };
  const Rewrite = inferenceModelRewriteClass(target.group ?? InferenceGroup.llmd);
  return {
    async inspect() {
      const rewrite = await getOrUndefined(Rewrite, namespace, target.name);
      if (!rewrite)
        return { problem: notFound("InferenceModelRewrite", namespace, target.name), claims: [] };
      const inspection = inspectInferenceModelRewrite(rewrite, split);
      return { ...inspection, pool: rewrite.spec?.poolRef?.name, object: rewrite };
    },
    claimsOf(object, other) {
      const a = other.adapters;
      if (!a || a.inferenceModelRewrite?.name !== target.name) return [];
      return inspectInferenceModelRewrite(object as InferenceModelRewrite, {
        stable: a.stable,
        canary: a.canary,
      }).claims;
    },
    setWeight: (w, known) =>
      modifyWithRetry<InferenceModelRewrite>(
        Rewrite,
        namespace,
        target.name,
        r => setInferenceModelRewriteWeight(r, split, w),
        known,
      ),
    finalize: (outcome, known) =>
      modifyWithRetry<InferenceModelRewrite>(
        Rewrite,
        namespace,
        target.name,
        r => finalizeInferenceModelRewrite(r, split, outcome),
        known,
      ),
  };
}

export function trafficTargetFor(
  namespace: string,
  spec: ModelRolloutSpec,
  target: RolloutTarget,
): TrafficTarget {
  switch (target.kind) {
    case "HTTPRoute":
      return httpRouteTarget(namespace, spec, target);
    case "InferenceModel":
      return inferenceModelTarget(namespace, target);
    default:
      return inferenceModelRewriteTarget(namespace, target);
  }
}

async function createIfAbsent(model: Model, obj: KubeObject): Promise<boolean> {
  try {
    await K8s(model).Create(obj as GenericKind);
    return true;
  } catch (err) {
    if (apiFailure(err).status === 409) return false;
    throw err;
  }
}

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

/**
 * Reads a key of a Secret in the rollout's namespace (gate provider credentials). Only Secrets
 * labelled GATE_CREDENTIALS_LABEL=true: others, a missing key and a ref that is no Secret name
 * (path traversal: `../../ns/secrets/x`) throw GateCredentialsError (a permanent error naming the
 * Secret and the fix, never its content).
 */
export async function readSecretKey(
  namespace: string,
  ref: { name: string; key: string },
): Promise<string> {
  checkSecretRef(namespace, ref); // before the name goes into a request path
  let secret;
  try {
    secret = await K8s(kind.Secret).InNamespace(namespace).Get(ref.name);
  } catch (err) {
    if (apiFailure(err).status === 404)
      throw new Error(
        `Secret ${namespace}/${ref.name} not found; create it with the label ${GATE_CREDENTIALS_LABEL}=true or fix the SecretRef`,
        { cause: err },
      );
    throw err;
  }
  return gateCredentialFrom(secret, namespace, ref);
}
