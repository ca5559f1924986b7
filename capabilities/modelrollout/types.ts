// Wire types of the ModelRollout resource, derived from the types generated from the CRD
// (generated/modelrollout-v1alpha1.ts, see generate-types.sh) so the schema is written only once.
// The generator types `format: date-time` as Date and enums as TS enums, but the API sends plain
// JSON strings; Wire<T> maps them to what is really on the wire (strings and string literals).
import type {
  Condition,
  LastAction,
  Pause,
  Pools,
  Spec,
  SpecAnalysis,
  SpecPrometheus,
  StatusObject,
  Step,
  Target,
} from "./generated/modelrollout-v1alpha1";

type IsAny<T> = 0 extends 1 & T ? true : false;

/** T with Date → string (RFC3339) and string enums → their string literal union, recursively. */
export type Wire<T> =
  IsAny<T> extends true
    ? T
    : T extends Date
      ? string
      : T extends string
        ? `${T}`
        : T extends readonly (infer U)[]
          ? Wire<U>[]
          : T extends object
            ? { [K in keyof T]: Wire<T[K]> }
            : T;

/** spec.pools.httpRouteRule / status.target.rule: a rule index or a rule name (int-or-string). */
export type RuleSelector = number | string;

export type PoolsSpec = Omit<Wire<Pools>, "httpRouteRule"> & { httpRouteRule?: RuleSelector };
export type ModelRolloutSpec = Omit<Wire<Spec>, "pools"> & { pools?: PoolsSpec };
export type RolloutStep = Wire<Step>;
export type PauseSpec = Wire<Pause>;
/** Gate spec (background spec.analysis and analysis steps share one schema). */
export type AnalysisSpec = Wire<SpecAnalysis>;
export type ProviderSpec = Wire<SpecPrometheus>;

/** The traffic target a rollout operates on (status.target). */
export type RolloutTarget = Omit<Wire<Target>, "rule"> & { rule?: RuleSelector };
export type RolloutCondition = Wire<Condition>;
export type RolloutLastAction = Wire<LastAction>;
export type RolloutPhase = NonNullable<Wire<StatusObject>["phase"]>;

/**
 * A gate run as the engine creates it; the analysis module adds measurements and sets `phase` to
 * its verdict. Extra fields are kept untouched.
 */
export interface GateRun {
  startedAt: string;
  stepIndex?: number;
  phase: string;
  message?: string;
  metrics: unknown[];
  [key: string]: unknown;
}

export type ModelRolloutStatus = Omit<
  Wire<StatusObject>,
  "target" | "analysis" | "stepAnalysis"
> & {
  target?: RolloutTarget;
  analysis?: GateRun;
  stepAnalysis?: GateRun;
};
