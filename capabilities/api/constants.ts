// The API vocabulary the operator, the picker, the kubectl plugin, the demo and the benchmarks
// share: API groups and kinds, the ModelRollout phases, the action annotation. Written here once;
// the type checks below tie each list to the enum the generator made from its CRD, so a CRD
// change that this file misses fails `tsc`. Plain data with type-only imports: the picker image
// and the plugin load it without kubernetes-fluent-client.
import type {
  Group as RewriteGroupEnum,
  Phase,
  PoolGroup as PoolGroupEnum,
} from "../modelrollout/generated/modelrollout-v1alpha1";
import type { Criticality as CriticalityEnum } from "./generated/inferencemodel-v1alpha2";

/** Compile-time check that two unions are the same (a type error otherwise). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;

// --- API groups and kinds --------------------------------------------------------------------

/** The ModelRollout API group. */
export const ROLLOUTS_GROUP = "rollouts.inference.dev";
/** Gateway API (HTTPRoute). */
export const GATEWAY_GROUP = "gateway.networking.k8s.io";

export const InferenceGroup = {
  /** Inference Extension v1alpha2 (InferencePool, InferenceModel, InferenceObjective, InferenceModelRewrite). */
  xK8s: "inference.networking.x-k8s.io",
  /** Inference Extension GA (InferencePool v1). */
  k8s: "inference.networking.k8s.io",
  /** llm-d router successors of InferenceObjective / InferenceModelRewrite. */
  llmd: "llm-d.ai",
} as const;

/** The groups that serve InferencePool (spec.pools.poolGroup). */
export const INFERENCE_POOL_GROUPS = [InferenceGroup.xK8s, InferenceGroup.k8s] as const;
export type PoolGroup = (typeof INFERENCE_POOL_GROUPS)[number];
type _PoolGroupsAsInCrd = Assert<Same<PoolGroup, `${PoolGroupEnum}`>>;

/**
 * The groups that serve InferenceObjective and InferenceModelRewrite (one schema);
 * llm-d.ai is the successor and wins when both define the same name.
 */
export const SUCCESSOR_GROUPS = [InferenceGroup.xK8s, InferenceGroup.llmd] as const;
export type SuccessorGroup = (typeof SUCCESSOR_GROUPS)[number];
type _SuccessorGroupsAsInCrd = Assert<Same<SuccessorGroup, `${RewriteGroupEnum}`>>;

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
  plural: string;
}

/** Every upstream kind the project reads or writes (the generated classes register the same). */
export const gvk = {
  httpRoute: { group: GATEWAY_GROUP, version: "v1", kind: "HTTPRoute", plural: "httproutes" },
  inferencePoolV1alpha2: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferencePool",
    plural: "inferencepools",
  },
  inferencePoolV1: {
    group: InferenceGroup.k8s,
    version: "v1",
    kind: "InferencePool",
    plural: "inferencepools",
  },
  inferenceModel: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferenceModel",
    plural: "inferencemodels",
  },
  inferenceObjective: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferenceObjective",
    plural: "inferenceobjectives",
  },
  inferenceObjectiveLlmd: {
    group: InferenceGroup.llmd,
    version: "v1alpha2",
    kind: "InferenceObjective",
    plural: "inferenceobjectives",
  },
  inferenceModelRewrite: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferenceModelRewrite",
    plural: "inferencemodelrewrites",
  },
  inferenceModelRewriteLlmd: {
    group: InferenceGroup.llmd,
    version: "v1alpha2",
    kind: "InferenceModelRewrite",
    plural: "inferencemodelrewrites",
  },
} as const satisfies Record<string, GroupVersionKind>;

/** spec.criticality of an InferenceModel, most important first. */
export const CRITICALITIES = ["Critical", "Standard", "Sheddable"] as const;
export type Criticality = (typeof CRITICALITIES)[number];
type _CriticalitiesAsInCrd = Assert<Same<Criticality, `${CriticalityEnum}`>>;

/** "group/version" of a kind. */
export function apiVersionOf(kind: Pick<GroupVersionKind, "group" | "version">): string {
  return `${kind.group}/${kind.version}`;
}

/** The InferencePool kind of a pool group. */
export function inferencePoolGvk(group: PoolGroup) {
  return group === InferenceGroup.k8s ? gvk.inferencePoolV1 : gvk.inferencePoolV1alpha2;
}

/** The group of an apiVersion ("" for the core group). */
export function groupOf(apiVersion: string | undefined): string {
  const v = apiVersion ?? "";
  const slash = v.indexOf("/");
  return slash < 0 ? "" : v.slice(0, slash);
}

// --- ModelRollout phases ---------------------------------------------------------------------

/** status.phase of a ModelRollout, in the order a rollout goes through them. */
export const ROLLOUT_PHASES = [
  "Pending",
  "Progressing",
  "Paused",
  "Succeeded",
  "Failed",
  "Aborted",
] as const;
export type RolloutPhase = (typeof ROLLOUT_PHASES)[number];
type _PhasesAsInCrd = Assert<Same<RolloutPhase, `${Phase}`>>;

/** The phases a rollout ends in; only `retry` (Failed, Aborted) or a new revision leaves them. */
export const TERMINAL_PHASES = [
  "Succeeded",
  "Failed",
  "Aborted",
] as const satisfies readonly RolloutPhase[];
export type TerminalPhase = (typeof TERMINAL_PHASES)[number];

/** True for Succeeded, Failed and Aborted. */
export function isTerminalPhase(phase: string | undefined): phase is TerminalPhase {
  return (TERMINAL_PHASES as readonly (string | undefined)[]).includes(phase);
}

// --- One-off actions -------------------------------------------------------------------------

/** Annotation that asks the operator for a one-off action; it performs it once and removes it. */
export const ACTION_ANNOTATION = "rollouts.inference.dev/action";
/** The values of ACTION_ANNOTATION. */
export const MANUAL_ACTIONS = ["promote", "promote-full", "abort", "retry"] as const;
export type ManualAction = (typeof MANUAL_ACTIONS)[number];
