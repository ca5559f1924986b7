// One rollout's traffic target, per kind (HTTPRoute, InferenceModel, InferenceModelRewrite): read
// and inspect it (and the pools it names), and drive its weights through the pure adapters in
// traffic/ and modifyWithRetry.
import { InferenceGroup, type PoolGroup } from "../../api/constants";
import {
  HTTPRoute as HTTPRouteKind,
  InferenceModel as InferenceModelKind,
  inferenceModelRewriteClass,
  inferencePoolClass,
} from "../../api/kinds";
import {
  detectPoolGroup,
  finalizeHTTPRoute,
  type HTTPRoute,
  inspectHTTPRoute,
  type PoolSplit,
  setHTTPRouteWeight,
} from "../traffic/httproute";
import {
  finalizeInferenceModel,
  type InferenceModel,
  inspectInferenceModel,
  setInferenceModelWeight,
} from "../traffic/inferencemodel";
import {
  finalizeInferenceModelRewrite,
  type InferenceModelRewrite,
  inspectInferenceModelRewrite,
  setInferenceModelRewriteWeight,
} from "../traffic/inferencemodelrewrite";
import { K8s } from "kubernetes-fluent-client";
import { droppedHeaderRule, headerRouteProblem, setHeaderRoute } from "../traffic/header-route";
import { headerRuleName } from "../traffic/header-rule-name";
import type { HeaderMatch, ModelRolloutSpec, RolloutTarget } from "../types";
import { getOrUndefined } from "./kube-objects";
import { modifyWithRetry } from "./modify-with-retry";

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
  /** API group of `pool` (from the model's spec.poolRef, with the CRD's default). */
  poolGroup?: string;
  /** The inspected object, to inspect other rollouts' claims against it without another read. */
  object?: unknown;
}

/** Reads and drives one rollout's traffic target. */
export interface TrafficTarget {
  /** `rollout`: the rollout's name, whose header rule (if any) the HTTPRoute check accounts for. */
  inspect(rollout?: string): Promise<TargetInspection>;
  /** Claims another rollout with `spec` would have on the object this target inspected. */
  claimsOf(object: unknown, spec: ModelRolloutSpec): string[];
  /** `known`: the object inspect() returned, to start from without another read. */
  setWeight(canaryWeight: number, known?: unknown): Promise<boolean>;
  finalize(outcome: "Promoted" | "RolledBack", known?: unknown): Promise<boolean>;
  /** HTTPRoute only: write (empty `match`: remove) the header rule `ruleName`. */
  setHeaderRoute?(ruleName: string, match: HeaderMatch[], known?: unknown): Promise<boolean>;
}

function notFound(kindName: string, namespace: string, name: string) {
  return {
    reason: `${kindName}NotFound`,
    message: `${kindName} ${namespace}/${name} not found; create it or fix the name in the ModelRollout spec`,
  };
}

/** The header matches of the spec's setHeaderRoute steps (empty ones remove, they need no room). */
function headerMatches(spec: ModelRolloutSpec): HeaderMatch[][] {
  return (spec.steps ?? []).flatMap(s => (s.setHeaderRoute ? [s.setHeaderRoute.match] : []));
}

/**
 * Refuses a header write whose rule name the apiserver dropped (HTTPRoute CRD before Gateway API
 * v1.4), after taking back the unnamed copy it appended, so that re-assertions add no more copies.
 */
const keepsRuleName = (ruleName: string) => async (sent: HTTPRoute, written: HTTPRoute) => {
  const dropped = droppedHeaderRule(sent, written, ruleName);
  if (!dropped) return;
  if (dropped.index >= 0) {
    const path = `/spec/rules/${dropped.index}`;
    const { name, namespace } = written.metadata ?? {};
    await K8s(HTTPRouteKind, { name, namespace })
      .Patch([
        { op: "test", path: "/metadata/resourceVersion", value: written.metadata?.resourceVersion },
        { op: "test", path, value: written.spec!.rules![dropped.index] },
        { op: "remove", path },
      ])
      // Best effort: a concurrent edit keeps the copy; the refusal below stands either way.
      .catch(() => undefined);
  }
  throw dropped.error;
};

function httpRouteTarget(
  namespace: string,
  spec: ModelRolloutSpec,
  target: RolloutTarget,
): TrafficTarget {
  // A rollback of a recorded HTTPRoute target may run under a spec without pools (an abort on an
  // invalid spec, a change of target kind): nothing of spec.pools is needed to set its weights.
  const pools = spec.pools;
  let group: PoolGroup | undefined = pools?.poolGroup;
  const split = (): PoolSplit => ({
    stable: target.stable,
    canary: target.canary,
    group,
    rule: target.rule,
  });
  type Verify = (sent: HTTPRoute, written: HTTPRoute) => Promise<void>;
  const write = (edit: (route: HTTPRoute) => HTTPRoute | null, known: unknown, verify?: Verify) =>
    modifyWithRetry<HTTPRoute>(HTTPRouteKind, namespace, target.name, edit, known, 5, verify);
  return {
    async inspect(rollout = "") {
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
      // Checked here, before any weight moves: a header write refused after a weight write of
      // the same reconcile would leave that weight unrecorded.
      const header = headerRouteProblem(
        route,
        split(),
        headerRuleName(rollout),
        headerMatches(spec),
      );
      if (header) return { problem: header, claims: inspection.claims, object: route };
      if (!pools?.canaryTemplate && !(await getOrUndefined(Pool, namespace, target.canary))) {
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
    setWeight: (w, known) => write(r => setHTTPRouteWeight(r, split(), w), known),
    finalize: (outcome, known) => write(r => finalizeHTTPRoute(r, split(), outcome), known),
    setHeaderRoute: (ruleName, match, known) =>
      write(r => setHeaderRoute(r, split(), ruleName, match), known, keepsRuleName(ruleName)),
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
        poolGroup: model.spec?.poolRef?.group || InferenceGroup.xK8s,
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
      return {
        ...inspection,
        pool: rewrite.spec?.poolRef?.name,
        poolGroup: rewrite.spec?.poolRef?.group || InferenceGroup.k8s,
        object: rewrite,
      };
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
