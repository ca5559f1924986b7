// HTTPRoute traffic adapter (gateway.networking.k8s.io/v1), pure: the reconciler GETs the route,
// calls one of these, and patches in what changed (weight-patch.ts) behind the GET's
// resourceVersion (retrying with a fresh GET on a conflict), so edits by other clients between
// GET and patch are never lost.
//
// Only the backendRefs of kind InferencePool named stable / canary in the selected rule(s) are
// touched; every other rule, match, filter, ref and unknown field is kept as is (deep copy, same
// order). A rule is selected by spec.pools.httpRouteRule (index or name) or, by default, because it
// references the stable or canary pool; the rules setHeaderRoute steps add (header-route.ts) are
// never selected.
import { INFERENCE_POOL_GROUPS, type PoolGroup } from "../../api/constants";
import type { HTTPBackendRef, HTTPRoute, HTTPRouteRule } from "../../api/objects";
import { jsonEqual } from "../fingerprint";
import { isHeaderRuleName } from "./header-rule-name";
import type { RuleSelector } from "../types";

export type { HTTPRoute } from "../../api/objects";

/** What of a backendRef identifies the pool it sends to. */
type PoolRefFields = Pick<HTTPBackendRef, "group" | "kind" | "name" | "namespace">;

/** Which pools to split, in which rule. */
export interface PoolSplit {
  stable: string;
  canary: string;
  /** Pool API group; default: either inference group. */
  group?: PoolGroup;
  rule?: RuleSelector;
}

export interface RouteInspection {
  /** Why the rollout cannot operate on this route (for the `targets` observation), if it cannot. */
  problem?: { reason: string; message: string };
  /** Indexes of the rules the rollout operates on. */
  rules: number[];
  /** Keys of what the rollout would own, for conflict detection (see conflict.ts). */
  claims: string[];
  /** Pool group of the stable (or canary) ref, when found. */
  group?: PoolGroup;
  /** Every selected rule has a ref to the stable / canary pool. */
  stableRef: boolean;
  canaryRef: boolean;
  /** Canary share in percent of (stable + canary) in the first selected rule; undefined without refs. */
  canaryWeight?: number;
}

/** The HTTPRoute weight of a backendRef (the API default is 1). */
function refWeight(ref: HTTPBackendRef | undefined): number {
  return ref ? (ref.weight ?? 1) : 0;
}

function routeNamespace(route: HTTPRoute): string | undefined {
  return route.metadata?.namespace;
}

export function isPoolRef(
  ref: PoolRefFields,
  name: string,
  group: string | undefined,
  namespace: string | undefined,
) {
  if (ref.kind !== "InferencePool" || ref.name !== name) return false;
  if (
    group
      ? ref.group !== group
      : !(INFERENCE_POOL_GROUPS as readonly string[]).includes(ref.group ?? "")
  ) {
    return false;
  }
  return ref.namespace === undefined || namespace === undefined || ref.namespace === namespace;
}

function refersTo(rule: HTTPRouteRule, split: PoolSplit, namespace: string | undefined): boolean {
  return (rule.backendRefs ?? []).some(
    ref =>
      isPoolRef(ref, split.stable, split.group, namespace) ||
      isPoolRef(ref, split.canary, split.group, namespace),
  );
}

function describeRoute(route: HTTPRoute): string {
  return `HTTPRoute ${route.metadata?.name ?? "?"}`;
}

export function selectRules(
  route: HTTPRoute,
  split: PoolSplit,
): { rules: number[] } | { problem: RouteInspection["problem"] } {
  const rules = route.spec?.rules ?? [];
  const ns = routeNamespace(route);
  const poolNames = `InferencePool ${split.stable} or ${split.canary}`;
  if (split.rule !== undefined) {
    const index =
      typeof split.rule === "number"
        ? split.rule
        : rules.findIndex(rule => rule.name === split.rule);
    if (index < 0 || index >= rules.length) {
      return {
        problem: {
          reason: "HTTPRouteRuleNotFound",
          message: `${describeRoute(route)} has no rule ${JSON.stringify(split.rule)}`,
        },
      };
    }
    if (isHeaderRuleName(rules[index].name)) {
      return {
        problem: {
          reason: "HTTPRouteRuleNotFound",
          message: `rule ${JSON.stringify(split.rule)} of ${describeRoute(route)} is the header route a ModelRollout's setHeaderRoute step added; select the rule that splits the pools`,
        },
      };
    }
    if (!refersTo(rules[index], split, ns)) {
      return {
        problem: {
          reason: "BackendRefNotFound",
          message: `rule ${JSON.stringify(split.rule)} of ${describeRoute(route)} has no backendRef to ${poolNames}`,
        },
      };
    }
    return { rules: [index] };
  }
  const selected = rules.flatMap((rule, i) =>
    !isHeaderRuleName(rule.name) && refersTo(rule, split, ns) ? [i] : [],
  );
  if (selected.length === 0) {
    return {
      problem: {
        reason: "BackendRefNotFound",
        message: `${describeRoute(route)} has no rule with a backendRef to ${poolNames}`,
      },
    };
  }
  return { rules: selected };
}

function ruleKey(rule: HTTPRouteRule, index: number): string {
  return rule.name ? `name=${rule.name}` : `index=${index}`;
}

/** What the rollout would operate on, whether it can, and the current split. */
export function inspectHTTPRoute(route: HTTPRoute, split: PoolSplit): RouteInspection {
  const selection = selectRules(route, split);
  if ("problem" in selection) {
    return {
      problem: selection.problem,
      rules: [],
      claims: [],
      stableRef: false,
      canaryRef: false,
    };
  }
  const ns = routeNamespace(route);
  const rules = route.spec?.rules ?? [];
  const chosen = selection.rules.map(i => rules[i]);
  const refsOf = (rule: HTTPRouteRule, name: string) =>
    (rule.backendRefs ?? []).filter(ref => isPoolRef(ref, name, split.group, ns));
  const first = chosen[0];
  const stable = refsOf(first, split.stable)[0];
  const canary = refsOf(first, split.canary)[0];
  const group = (stable?.group ?? canary?.group) as PoolGroup | undefined;
  const total = refWeight(stable) + refWeight(canary);
  const result: RouteInspection = {
    rules: selection.rules,
    claims: selection.rules.map(
      i => `HTTPRoute/${ns ?? ""}/${route.metadata?.name ?? ""}/rule/${ruleKey(rules[i], i)}`,
    ),
    ...(group ? { group } : {}),
    stableRef: chosen.every(rule => refsOf(rule, split.stable).length > 0),
    canaryRef: chosen.every(rule => refsOf(rule, split.canary).length > 0),
    ...(total > 0 ? { canaryWeight: Math.round((refWeight(canary) * 100) / total) } : {}),
  };
  const duplicated = chosen.find(
    rule => refsOf(rule, split.stable).length > 1 || refsOf(rule, split.canary).length > 1,
  );
  if (duplicated) {
    result.problem = {
      reason: "DuplicateBackendRef",
      message: `a rule of ${describeRoute(route)} references InferencePool ${split.stable} or ${split.canary} more than once`,
    };
  }
  return result;
}

/**
 * The route with canary = canaryWeight and stable = 100 - canaryWeight in the selected rule(s), or
 * null when it already is so. A missing ref is added (a copy of the other one: port, filters,
 * group…) right after it, unless its weight would be 0. Throws when no rule can be selected.
 */
export function setHTTPRouteWeight(
  route: HTTPRoute,
  split: PoolSplit,
  canaryWeight: number,
): HTTPRoute | null {
  if (!Number.isInteger(canaryWeight) || canaryWeight < 0 || canaryWeight > 100) {
    throw new RangeError(`canary weight ${canaryWeight} is not an integer percent (0-100)`);
  }
  return transform(route, split, (refs, ns) => {
    setPair(refs, split, ns, { stable: 100 - canaryWeight, canary: canaryWeight });
  });
}

/**
 * End state. Promoted: the canary ref takes the pair's weight (100) and the stable ref is removed;
 * RolledBack: the stable ref gets 100 and the canary ref is removed. null when already so.
 */
export function finalizeHTTPRoute(
  route: HTTPRoute,
  split: PoolSplit,
  outcome: "Promoted" | "RolledBack",
): HTTPRoute | null {
  const keep = outcome === "Promoted" ? "canary" : "stable";
  const drop = outcome === "Promoted" ? "stable" : "canary";
  return transform(route, split, (refs, ns) => {
    setPair(
      refs,
      split,
      ns,
      keep === "canary" ? { stable: 0, canary: 100 } : { stable: 100, canary: 0 },
    );
    for (let i = refs.length - 1; i >= 0; i--) {
      if (isPoolRef(refs[i], split[drop], split.group, ns)) refs.splice(i, 1);
    }
  });
}

function transform(
  route: HTTPRoute,
  split: PoolSplit,
  edit: (refs: HTTPBackendRef[], namespace: string | undefined) => void,
): HTTPRoute | null {
  const selection = selectRules(route, split);
  if ("problem" in selection) throw new Error(selection.problem?.message);
  const next = structuredClone(route);
  const rules = next.spec?.rules ?? [];
  for (const i of selection.rules) {
    const rule = rules[i];
    rule.backendRefs ??= [];
    edit(rule.backendRefs, routeNamespace(route));
  }
  return jsonEqual(next, route) ? null : next;
}

/** Sets the pair's weights; adds a missing ref (copied from its sibling) when its weight is > 0. */
function setPair(
  refs: HTTPBackendRef[],
  split: PoolSplit,
  ns: string | undefined,
  weights: { stable: number; canary: number },
) {
  let stableIndex = refs.findIndex(ref => isPoolRef(ref, split.stable, split.group, ns));
  let canaryIndex = refs.findIndex(ref => isPoolRef(ref, split.canary, split.group, ns));
  if (stableIndex < 0 && weights.stable > 0 && canaryIndex >= 0) {
    refs.splice(canaryIndex, 0, { ...structuredClone(refs[canaryIndex]), name: split.stable });
    stableIndex = canaryIndex;
    canaryIndex += 1;
  }
  if (canaryIndex < 0 && weights.canary > 0 && stableIndex >= 0) {
    refs.splice(stableIndex + 1, 0, { ...structuredClone(refs[stableIndex]), name: split.canary });
    canaryIndex = stableIndex + 1;
  }
  if (stableIndex >= 0) refs[stableIndex].weight = weights.stable;
  if (canaryIndex >= 0) refs[canaryIndex].weight = weights.canary;
}

/** The pool group to use: the one given, else the group of the stable (or canary) ref in the route. */
export function detectPoolGroup(route: HTTPRoute, split: PoolSplit): PoolGroup | undefined {
  return split.group ?? inspectHTTPRoute(route, { ...split, group: undefined }).group;
}
