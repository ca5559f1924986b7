// The engine's shared vocabulary: observations in, actions out, and the per-call context.

import { isTerminalPhase, type ManualAction } from "../../api/constants";
import type { ObservedOutcome, ProbeCheck, QueryCheck, TemplateContext } from "../../analysis";
import type {
  HeaderMatch,
  ModelRolloutSpec,
  ModelRolloutStatus,
  RolloutStep,
  RolloutTarget,
} from "../types";

export { ACTION_ANNOTATION, MANUAL_ACTIONS, type ManualAction } from "../../api/constants";

export type GateVerdict = "Running" | "Successful" | "Failed" | "Inconclusive" | "Error";
export const GATE_VERDICTS: readonly string[] = [
  "Running",
  "Successful",
  "Failed",
  "Inconclusive",
  "Error",
];

export interface Observations {
  /** metadata.generation */
  generation: number;
  /** From the annotation rollouts.inference.dev/action (see readActionAnnotation). */
  action?: ManualAction;
  /** An annotation value that is not one of MANUAL_ACTIONS. */
  invalidAction?: string;
  /** Route / pools / model found and usable (a canary pool that canaryTemplate creates counts as found). */
  targets: { ready: true } | { ready: false; reason: string; message: string };
  /** Another ModelRollout already owns the same route rule or model. */
  conflict?: { owner: string };
  /** A spec problem only the environment shows (e.g. a Prometheus address the policy refuses). */
  specError?: { reason: string; message: string };
  /** Values the gates' query templates and built-in gates need (names, model, pool). */
  templateContext?: Omit<TemplateContext, "weight">;
  /** Outcomes of the queries the reconciler ran for the measurements due (queriesDue), per run. */
  measurements?: Partial<Record<GateField, ObservedOutcome[]>>;
  /** Before the first weight (needsQueryCheck): what Prometheus said of every query. */
  queryCheck?: QueryCheck;
  /**
   * spec.notifications whose Secret or URL cannot be used, by name (reason, message naming the
   * Secret and the fix). Undefined: not checked in this call (the condition stays as it was).
   */
  notificationProblems?: Record<string, { reason: string; message: string }>;
  /** Before the first weight (needsQueryCheck): every deciding probe sent once, to be judged. */
  probeCheck?: ProbeCheck[];
  /** spec.adapters.readiness (needsAdapterCheck): which Ready pods serve the canary adapter. */
  adapterReadiness?: AdapterReadinessObservation;
}

/** One model-server endpoint of the pool and whether its GET /v1/models lists the canary adapter. */
export interface AdapterEndpoint {
  /** The pod's name, or name:port when the pool has several target ports. */
  key: string;
  /** http://podIP:port */
  url: string;
  /** true/false: listed or not; undefined: the pod could not be asked (`error` says why). */
  serving?: boolean;
  error?: string;
}

export interface AdapterReadinessObservation {
  /** The InferencePool the InferenceModel / InferenceModelRewrite names. */
  pool: string;
  /** Why the pool's pods cannot be listed (pool missing, empty selector...). */
  problem?: string;
  /** Every Ready pod (and target port) of the pool. */
  endpoints: AdapterEndpoint[];
}

/** A pod to load or unload the canary adapter on (the reconciler calls it). */
export interface AdapterCall {
  key: string;
  url: string;
}

/** The transitions spec.notifications[].on can select. */
export const NOTIFICATION_TRANSITIONS = [
  "StepReached",
  "Paused",
  "Promoted",
  "Failed",
  "RolledBack",
  "Succeeded",
] as const;
export type NotificationTransition = (typeof NOTIFICATION_TRANSITIONS)[number];

/** The two gate runs in status. */
export type GateField = "analysis" | "stepAnalysis";

export type Action =
  /** Create the canary InferencePool from spec.pools.canaryTemplate if it does not exist. */
  | { type: "ensureCanaryPool" }
  /** Make canary = canaryWeight %, stable = 100 - canaryWeight % on `target` (idempotent). `step`: the setWeight step being entered; absent for re-assertion, completion and rollback. */
  | { type: "setWeight"; canaryWeight: number; target: RolloutTarget; step?: number }
  /** Promoted: remove the stable reference; RolledBack: remove the canary reference (idempotent). */
  | { type: "finalize"; outcome: "Promoted" | "RolledBack"; target: RolloutTarget }
  /** Make the header route (the rule a setHeaderRoute step adds to the HTTPRoute) send `match` to the canary (idempotent). */
  | { type: "setHeaderRoute"; match: HeaderMatch[]; target: RolloutTarget }
  /** Remove the header route from the HTTPRoute (idempotent). */
  | { type: "removeHeaderRoute"; target: RolloutTarget }
  /** postRollout.unusedPool=Delete: delete the pool (and the models this operator cloned for it); onlyIfManaged: only if this operator created it. */
  | { type: "deletePool"; pool: string; onlyIfManaged: boolean }
  | {
      type: "event";
      eventType: "Normal" | "Warning";
      reason: string;
      message: string;
      /** Index of the step the event is about, if any. */
      step?: number;
    }
  | { type: "clearActionAnnotation" }
  /**
   * Tell spec.notifications `notifications` (the ones whose `transitions` select it) about a transition,
   * after the status is stored. Phase, step and weight are those of the moment of the transition.
   */
  | {
      type: "notify";
      transition: NotificationTransition;
      notifications: string[];
      phase: string;
      step: number;
      canaryWeight: number;
      message: string;
      /** Time of the transition (the status timestamps of this call); part of its key. */
      at: string;
    }
  /** POST /v1/load_lora_adapter {lora_name: adapter, lora_path: path} on each endpoint. */
  | { type: "loadAdapter"; adapter: string; path: string; endpoints: AdapterCall[] }
  /** POST /v1/unload_lora_adapter {lora_name: adapter} on each endpoint (best effort). */
  | { type: "unloadAdapter"; adapter: string; endpoints: AdapterCall[] };

export interface ReconcileResult {
  status: ModelRolloutStatus;
  actions: Action[];
  /** Call again after this many milliseconds (timed pause, blocked targets). */
  requeueAfterMs?: number;
}

export const ConditionTypes = {
  Ready: "Ready",
  NotificationsReady: "NotificationsReady",
  Progressing: "Progressing",
  Paused: "Paused",
  Completed: "Completed",
  AnalysisPassing: "AnalysisPassing",
} as const;

export const BACKOFF_MIN_MS = 5_000;
export const BACKOFF_MAX_MS = 300_000;

export type PauseReason = "PausedByUser" | "AnalysisInconclusive" | "PauseStep";
export type Waiting =
  | { kind: "PauseStep"; dueAt?: string }
  | { kind: "Analysis" }
  | { kind: "Evidence"; message: string }
  | { kind: "StepInconclusive" }
  | { kind: "Adapter"; message: string }
  | { kind: "Probe"; message: string };

export interface Ctx {
  spec: ModelRolloutSpec;
  obs: Observations;
  now: Date;
  nowIso: string;
  prev: ModelRolloutStatus;
  st: ModelRolloutStatus;
  target: RolloutTarget;
  oldTargetActions: Action[];
  traffic: Action[];
  events: Action[];
  notifications: Action[];
  annotation: Action[];
  requeueAfterMs?: number;
  /** A setWeight for the current target was emitted in this call. */
  weightEmitted: boolean;
  /** A setHeaderRoute or removeHeaderRoute for the current target was emitted in this call. */
  headerRouteEmitted: boolean;
  /** The engine (re)started these runs in this call: verdicts passed in belong to older runs. */
  stepRunStarted: boolean;
  backgroundRunStarted: boolean;
  waiting?: Waiting;
  /** Why the probes before the first weight did not pass yet: no weight may rise meanwhile. */
  probesPending?: string;
  /** Spec invalid or targets unusable: no traffic action at all. */
  blocked: boolean;
  /** Reason of a terminal phase reached in this call (for conditions). */
  terminalReason?: string;
}

export function newCtx(
  spec: ModelRolloutSpec,
  obs: Observations,
  now: Date,
  nowIso: string,
  prev: ModelRolloutStatus,
  st: ModelRolloutStatus,
  target: RolloutTarget,
): Ctx {
  return {
    spec,
    obs,
    now,
    nowIso,
    prev,
    st,
    target,
    oldTargetActions: [],
    traffic: [],
    events: [],
    notifications: [],
    annotation: [],
    weightEmitted: false,
    headerRouteEmitted: false,
    stepRunStarted: false,
    backgroundRunStarted: false,
    blocked: false,
  };
}

export function placeholderTarget(): RolloutTarget {
  return { kind: "HTTPRoute", name: "", stable: "", canary: "" };
}

export function finish(c: Ctx): ReconcileResult {
  const actions: Action[] = [...c.oldTargetActions];
  const st = c.st;
  const canaryNeeded = isActive(c) || (st.phase === "Succeeded" && c.traffic.length > 0);
  if (c.spec.pools?.canaryTemplate && canaryNeeded && !c.blocked) {
    actions.push({ type: "ensureCanaryPool" });
  }
  actions.push(...c.traffic, ...c.events, ...c.notifications, ...c.annotation);
  const result: ReconcileResult = { status: pruneUndefined(st), actions };
  if (c.requeueAfterMs !== undefined) result.requeueAfterMs = Math.max(0, c.requeueAfterMs);
  return result;
}

export function pruneUndefined<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export function isTerminal(phase: string | undefined): boolean {
  return isTerminalPhase(phase);
}

export function isActive(c: Ctx): boolean {
  return !isTerminal(c.st.phase);
}

export function steps(c: Ctx): RolloutStep[] {
  return c.spec.steps;
}

export function event(
  c: Ctx,
  eventType: "Normal" | "Warning",
  reason: string,
  message: string,
  step?: number,
) {
  c.events.push({
    type: "event",
    eventType,
    reason,
    message,
    ...(step !== undefined ? { step } : {}),
  });
}

export function requeue(c: Ctx, ms: number) {
  c.requeueAfterMs = c.requeueAfterMs === undefined ? ms : Math.min(c.requeueAfterMs, ms);
}
