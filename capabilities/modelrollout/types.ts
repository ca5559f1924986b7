// Wire types of the ModelRollout resource, derived from the types generated from the CRD
// (generated/modelrollout-v1alpha1.ts, see capabilities/api/generate.sh) so the schema is written
// only once; Wire<T> (capabilities/api/wire.ts) maps them to what is really on the wire.
import type { AnalysisRunStatus } from "../analysis/types";
import type { Wire } from "../api/wire";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";
import type {
  Condition,
  LastAction,
  Notification,
  Pause,
  Pools,
  SetHeaderRouteMatch,
  Readiness,
  Spec,
  SpecAnalysis,
  SpecPrometheus,
  StatusObject,
  Step,
  Target,
} from "./generated/modelrollout-v1alpha1";

/** spec.pools.httpRouteRule / status.target.rule: a rule index or a rule name (int-or-string). */
export type RuleSelector = number | string;

export type PoolsSpec = Omit<Wire<Pools>, "httpRouteRule"> & { httpRouteRule?: RuleSelector };
/**
 * A gate as written (background spec.analysis and analysis steps share one schema): inline
 * metrics and/or references to AnalysisTemplates / ClusterAnalysisTemplates with args.
 */
export type WrittenAnalysisSpec = Wire<SpecAnalysis>;
/** A gate as the engine runs it: the templates' metrics merged in (analysis-templates.ts). */
export type AnalysisSpec = Omit<WrittenAnalysisSpec, "templates" | "args" | "metrics"> & {
  metrics: NonNullable<WrittenAnalysisSpec["metrics"]>;
};
export type RolloutStep = Omit<Wire<Step>, "analysis"> & { analysis?: AnalysisSpec };
/** The spec as written by the user (gates may reference templates). */
export type WrittenSpec = Omit<Wire<Spec>, "pools"> & { pools?: PoolsSpec };
/** The spec the engine runs: every gate resolved (resolveAnalysisTemplates). */
export type ModelRolloutSpec = Omit<WrittenSpec, "analysis" | "steps"> & {
  analysis?: AnalysisSpec;
  steps: RolloutStep[];
};
export type PauseSpec = Wire<Pause>;
/** One header condition of a setHeaderRoute step (status.headerRoute.match has the same shape). */
export type HeaderMatch = Wire<SetHeaderRouteMatch>;
/** spec.adapters.readiness. */
export type AdapterReadinessSpec = Wire<Readiness>;
export type ProviderSpec = Wire<SpecPrometheus>;
/** spec.notifications[]: a webhook told about the rollout's transitions. */
export type NotificationSpec = Wire<Notification>;

/** The traffic target a rollout operates on (status.target). */
export type RolloutTarget = Omit<Wire<Target>, "rule"> & { rule?: RuleSelector };
export type RolloutCondition = Wire<Condition>;
export type RolloutLastAction = Wire<LastAction>;
export type RolloutPhase = NonNullable<Wire<StatusObject>["phase"]>;

/** A gate run in status (status.analysis, status.stepAnalysis): the analysis module's run. */
export type GateRun = AnalysisRunStatus;

export type ModelRolloutStatus = Omit<
  Wire<StatusObject>,
  "target" | "analysis" | "stepAnalysis"
> & {
  target?: RolloutTarget;
  analysis?: GateRun;
  stepAnalysis?: GateRun;
};

/**
 * A ModelRollout's spec and status as they are on the wire (the generated class types dates and
 * enums the way the generator does): the one place where the two views meet.
 */
export function wireOf(mro: ModelRollout): { spec: WrittenSpec; status?: ModelRolloutStatus } {
  return {
    spec: mro.spec as unknown as WrittenSpec,
    status: (mro.status ?? undefined) as unknown as ModelRolloutStatus | undefined,
  };
}

/** A status merge patch as the object PatchStatus takes. */
export function statusPatchOf(name: string, namespace: string, patch: object): ModelRollout {
  return { metadata: { name, namespace }, status: patch } as unknown as ModelRollout;
}
