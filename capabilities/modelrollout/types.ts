// Wire types of the ModelRollout resource, derived from the types generated from the CRD
// (generated/modelrollout-v1alpha1.ts, see capabilities/api/generate.sh) so the schema is written
// only once; Wire<T> (capabilities/api/wire.ts) maps them to what is really on the wire.
import type { AnalysisRunStatus } from "../analysis/types";
import type { Wire } from "../api/wire";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";
import type {
  Condition,
  LastAction,
  Pause,
  Pools,
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
export type ModelRolloutSpec = Omit<Wire<Spec>, "pools"> & { pools?: PoolsSpec };
export type RolloutStep = Wire<Step>;
export type PauseSpec = Wire<Pause>;
/** spec.adapters.readiness. */
export type AdapterReadinessSpec = Wire<Readiness>;
/** Gate spec (background spec.analysis and analysis steps share one schema). */
export type AnalysisSpec = Wire<SpecAnalysis>;
export type ProviderSpec = Wire<SpecPrometheus>;

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
export function wireOf(mro: ModelRollout): { spec: ModelRolloutSpec; status?: ModelRolloutStatus } {
  return {
    spec: mro.spec as unknown as ModelRolloutSpec,
    status: (mro.status ?? undefined) as unknown as ModelRolloutStatus | undefined,
  };
}

/** A status merge patch as the object PatchStatus takes. */
export function statusPatchOf(name: string, namespace: string, patch: object): ModelRollout {
  return { metadata: { name, namespace }, status: patch } as unknown as ModelRollout;
}
