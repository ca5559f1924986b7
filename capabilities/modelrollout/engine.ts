// The ModelRollout step engine: a pure function from (spec, status, observations, now) to the next
// status plus the actions the reconciler must perform. No I/O, no clock, no randomness.
//
// Protocol for the reconciler (the I/O shell around this function):
//   1. Build Observations (targets found? conflict? gate verdicts, action annotation).
//   2. result = reconcileRollout(spec, status, observations, now)
//   3. Apply the traffic actions (ensureCanaryPool, setWeight, finalize, deletePool) in order. If
//      one fails, stop: write no status, no events, retry later with backoff.
//   4. Emit the events (before the status: a crash in between repeats an Event, never loses one).
//   5. Write the status if it changed (statusMergePatch gives the merge patch, null = no write),
//      then remove the action annotation if asked (clearActionAnnotation).
//   6. Call again after requeueAfterMs (timed pause, blocked targets); a status write re-triggers
//      the reconcile by itself.
//
// Restart safety. All progress lives in status; traffic actions are level-triggered ("make the
// weight w", not "add 10"), and while a rollout is active every call re-asserts status.canaryWeight
// with an idempotent setWeight (the reconciler skips the write when the target already has it).
//   - Crash after the weight was written but before the status was written: the stored status
//     still shows the previous step, so the next call enters the same step again and emits the
//     same setWeight (same weight: the target already has it, no write) and then writes the status.
//     The step is applied once as far as traffic is concerned; only its Event may repeat.
//   - Crash after the status was written but before the weight was written: the next call
//     re-asserts status.canaryWeight, so the target converges without re-running the step.
//   - finalize (remove the stable or the canary reference) is idempotent the same way.
//   - Manual actions are recorded in status.lastAction (annotationRemoved: false) before the
//     annotation is removed; an annotation still present with the same value is recognised as
//     already handled, so a crash between the status write and the annotation removal never
//     applies an action twice.
//   - Gate verdicts are tied to the run objects in status (status.analysis / stepAnalysis): a
//     run the engine has just (re)started has no measurements and counts as Running whatever
//     verdict is passed in.
// Idempotence: calling the engine again with its own output status and the same observations
// gives the same status and only the idempotent actions setWeight(status.canaryWeight),
// ensureCanaryPool and clearActionAnnotation — no events, no step transitions.
//
// Spec changes mid-rollout (new metadata.generation):
//   - Target identity (kind, route/model name, group, rule, stable, canary) changed: the old
//     target is rolled back (canary weight 0, canary reference removed) if the rollout was active
//     and had written a weight (even while the new target is still missing), then the rollout
//     restarts from steps[0] on the new target. This also starts a new rollout after
//     Succeeded/Failed/Aborted.
//   - Only steps changed: progress is kept by index. If currentStep is past the new last step it
//     is clamped to the number of steps (the rollout completes). If the step at currentStep
//     differs from the one that was started (status.stepHash), that step restarts (timer and gate
//     reset); steps before currentStep are not re-run; the canary weight stays as it is until
//     the next setWeight. A finished rollout ignores step changes.
//   - spec.analysis changed: a running background gate restarts; removed: its run is dropped.
import { durationProblem, MAX_WAIT, MAX_WAIT_MS, parseDuration } from "../duration";
import { fingerprint, jsonEqual } from "./fingerprint";
import type {
  GateRun,
  ModelRolloutSpec,
  ModelRolloutStatus,
  RolloutCondition,
  RolloutStep,
  RolloutTarget,
} from "./types";

/** Annotation that asks for a one-off action. */
export const ACTION_ANNOTATION = "rollouts.inference.dev/action";
export const MANUAL_ACTIONS = ["promote", "promote-full", "abort", "retry"] as const;
export type ManualAction = (typeof MANUAL_ACTIONS)[number];

export type GateVerdict = "Running" | "Successful" | "Failed" | "Inconclusive" | "Error";
const GATE_VERDICTS: readonly string[] = [
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
  /** Invalid spec the apiserver could not reject (e.g. a bad gate expression). */
  specError?: { reason: string; message: string };
  /** Verdict of the run in status.analysis; default: that run's phase. */
  backgroundVerdict?: GateVerdict;
  /** Verdict of the run in status.stepAnalysis; default: that run's phase. */
  stepVerdict?: GateVerdict;
}

export type Action =
  /** Create the canary InferencePool from spec.pools.canaryTemplate if it does not exist. */
  | { type: "ensureCanaryPool" }
  /** Make canary = canaryWeight %, stable = 100 - canaryWeight % on `target` (idempotent). `step`: the setWeight step being entered; absent for re-assertion, completion and rollback. */
  | { type: "setWeight"; canaryWeight: number; target: RolloutTarget; step?: number }
  /** Promoted: remove the stable reference; RolledBack: remove the canary reference (idempotent). */
  | { type: "finalize"; outcome: "Promoted" | "RolledBack"; target: RolloutTarget }
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
  | { type: "clearActionAnnotation" };

export interface ReconcileResult {
  status: ModelRolloutStatus;
  actions: Action[];
  /** Call again after this many milliseconds (timed pause, blocked targets). */
  requeueAfterMs?: number;
}

export const ConditionTypes = {
  Ready: "Ready",
  Progressing: "Progressing",
  Paused: "Paused",
  Completed: "Completed",
  AnalysisPassing: "AnalysisPassing",
} as const;

const TERMINAL: readonly string[] = ["Succeeded", "Failed", "Aborted"];
const BACKOFF_MIN_MS = 5_000;
const BACKOFF_MAX_MS = 300_000;

/** Splits the action annotation's value into a known action or an invalid one. */
export function readActionAnnotation(
  annotations: Record<string, string> | undefined,
): Pick<Observations, "action" | "invalidAction"> {
  const raw = annotations?.[ACTION_ANNOTATION];
  if (raw === undefined) return {};
  const value = raw.trim();
  return (MANUAL_ACTIONS as readonly string[]).includes(value)
    ? { action: value as ManualAction }
    : { invalidAction: raw };
}

/** The target identity a spec describes, or undefined when it names none. */
export function targetOf(spec: ModelRolloutSpec): RolloutTarget | undefined {
  if (spec.pools) {
    const { httpRoute, httpRouteRule, stable, canary } = spec.pools;
    return {
      kind: "HTTPRoute",
      name: httpRoute,
      ...(httpRouteRule !== undefined ? { rule: httpRouteRule } : {}),
      stable,
      canary,
    };
  }
  const adapters = spec.adapters;
  if (adapters?.inferenceModel !== undefined) {
    return {
      kind: "InferenceModel",
      name: adapters.inferenceModel,
      stable: adapters.stable,
      canary: adapters.canary,
    };
  }
  if (adapters?.inferenceModelRewrite) {
    return {
      kind: "InferenceModelRewrite",
      name: adapters.inferenceModelRewrite.name,
      group: adapters.inferenceModelRewrite.group ?? "llm-d.ai",
      stable: adapters.stable,
      canary: adapters.canary,
    };
  }
  return undefined;
}

/**
 * What the apiserver's schema and CEL rules check, checked again (defense in depth: the engine must
 * never act on a spec it cannot interpret).
 */
export function validateSpec(
  spec: ModelRolloutSpec,
): { reason: string; message: string } | undefined {
  const bad = (message: string) => ({ reason: "InvalidSpec", message });
  if (!!spec.pools === !!spec.adapters)
    return bad("exactly one of spec.pools or spec.adapters must be set");
  if (
    spec.adapters &&
    (spec.adapters.inferenceModel === undefined) === !spec.adapters.inferenceModelRewrite
  ) {
    return bad(
      "exactly one of adapters.inferenceModel or adapters.inferenceModelRewrite must be set",
    );
  }
  const target = targetOf(spec);
  if (!target) return bad("spec names no traffic target");
  if (target.stable === target.canary) return bad("stable and canary must differ");
  // Object names go into request paths: "../other-namespace/..." must never reach one.
  const names: Array<[string, unknown]> = spec.pools
    ? [
        ["pools.httpRoute", spec.pools.httpRoute],
        ["pools.stable", spec.pools.stable],
        ["pools.canary", spec.pools.canary],
      ]
    : [
        ["adapters.inferenceModel", spec.adapters?.inferenceModel],
        ["adapters.inferenceModelRewrite.name", spec.adapters?.inferenceModelRewrite?.name],
      ];
  for (const [field, name] of names) {
    if (name !== undefined && !isObjectName(name))
      return bad(
        `${field} ${JSON.stringify(name)} is not a Kubernetes object name (DNS subdomain)`,
      );
  }
  if (!Array.isArray(spec.steps) || spec.steps.length === 0)
    return bad("spec.steps needs at least one step");
  for (const [i, step] of spec.steps.entries()) {
    const kinds = [
      step.setWeight !== undefined,
      step.pause !== undefined,
      step.analysis !== undefined,
    ];
    if (kinds.filter(Boolean).length !== 1) {
      return bad(`steps[${i}] must have exactly one of setWeight, pause or analysis`);
    }
    if (step.setWeight !== undefined) {
      const w = step.setWeight;
      if (!Number.isInteger(w) || w < 0 || w > 100) {
        return bad(`steps[${i}].setWeight must be an integer between 0 and 100`);
      }
    }
    const duration = step.pause?.duration;
    if (duration !== undefined) {
      const problem = durationProblem(
        `steps[${i}].pause.duration`,
        duration,
        MAX_WAIT_MS,
        MAX_WAIT,
      );
      if (problem) return bad(problem);
    }
  }
  return undefined;
}

const OBJECT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function isObjectName(name: unknown): boolean {
  return typeof name === "string" && name.length <= 253 && OBJECT_NAME.test(name);
}

/**
 * JSON merge patch (RFC 7386) that turns `prev` into `next` for a status write: removed fields
 * become null, arrays are replaced whole. null when nothing changed (skip the write).
 */
export function statusMergePatch(
  prev: ModelRolloutStatus | undefined,
  next: ModelRolloutStatus,
): Record<string, unknown> | null {
  const patch = mergePatch(prev ?? {}, next);
  return patch === undefined ? null : (patch as Record<string, unknown>);
}

function mergePatch(prev: unknown, next: unknown): unknown {
  if (!isPlainObject(prev) || !isPlainObject(next)) return jsonEqual(prev, next) ? undefined : next;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(prev)) {
    if (prev[key] !== undefined && next[key] === undefined) out[key] = null;
  }
  for (const [key, value] of Object.entries(next)) {
    if (value === undefined) continue;
    const sub = prev[key] === undefined ? value : mergePatch(prev[key], value);
    if (sub !== undefined) out[key] = sub;
  }
  return Object.keys(out).length ? out : undefined;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// The engine

type PauseReason = "PausedByUser" | "AnalysisInconclusive" | "PauseStep";
type Waiting =
  | { kind: "PauseStep"; dueAt?: string }
  | { kind: "Analysis" }
  | { kind: "Evidence"; message: string }
  | { kind: "StepInconclusive" };

interface Ctx {
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
  annotation: Action[];
  requeueAfterMs?: number;
  /** A setWeight for the current target was emitted in this call. */
  weightEmitted: boolean;
  /** The engine (re)started these runs in this call: verdicts passed in belong to older runs. */
  stepRunStarted: boolean;
  backgroundRunStarted: boolean;
  waiting?: Waiting;
  /** Spec invalid or targets unusable: no traffic action at all. */
  blocked: boolean;
  /** Reason of a terminal phase reached in this call (for conditions). */
  terminalReason?: string;
}

export function reconcileRollout(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Observations,
  now: Date,
): ReconcileResult {
  const prev: ModelRolloutStatus = status ?? {};
  const st = structuredClone(prev);
  const nowIso = now.toISOString();

  const invalid = obs.specError ?? validateSpec(spec);
  const target = targetOf(spec);
  if (invalid || !target) {
    const problem = invalid ?? { reason: "InvalidSpec", message: "spec names no traffic target" };
    const c = newCtx(spec, obs, now, nowIso, prev, st, st.target ?? placeholderTarget());
    st.phase ??= "Pending";
    blocked(c, problem.reason, `invalid spec: ${problem.message}`, false);
    return finish(c);
  }

  const c = newCtx(spec, obs, now, nowIso, prev, st, target);
  const terminal = isTerminal(st.phase);
  const identityChanged = !st.target || !jsonEqual(st.target, target);
  const pending = pendingManualAction(c);
  const retrying = pending?.action === "retry" && (st.phase === "Failed" || st.phase === "Aborted");

  if (terminal && !identityChanged && !retrying) {
    // Finished and nothing asks for a new run: only acknowledge actions and follow the generation.
    // Targets are no longer watched, so an earlier Ready=False (e.g. a fixed invalid spec) clears.
    if (pending) handleManualAction(c, pending);
    if (findCondition(st, ConditionTypes.Ready)?.status === "False") {
      setCondition(
        c,
        ConditionTypes.Ready,
        "True",
        "RolloutFinished",
        "spec is valid; targets are not watched after the rollout finished",
      );
    }
    followGeneration(c);
    return finish(c);
  }

  if ((obs.conflict || !obs.targets.ready) && identityChanged && st.target && !terminal) {
    // The user moved the rollout away from its old target: release that one now, even though
    // the new target cannot be used yet.
    releaseOldTarget(c);
  }
  if (obs.conflict) {
    blocked(
      c,
      "Conflict",
      `${describeTarget(target)} is already managed by ModelRollout ${obs.conflict.owner}; ` +
        "this rollout waits until that one is deleted or changes its target",
      true,
    );
    return finish(c);
  }
  if (!obs.targets.ready) {
    blocked(c, obs.targets.reason, obs.targets.message, true);
    return finish(c);
  }
  setCondition(c, ConditionTypes.Ready, "True", "TargetsReady", describeTarget(target));

  if (identityChanged) startRollout(c, terminal);
  else if (!terminal) followStepChanges(c);
  followGeneration(c);
  followBackgroundSpec(c);

  if (pending && pending.action !== "promote" && pending.action !== "promote-full") {
    handleManualAction(c, pending);
  }
  if (isActive(c)) checkFailures(c);
  if (pending && (pending.action === "promote" || pending.action === "promote-full")) {
    handleManualAction(c, pending);
  }
  if (isActive(c)) {
    progress(c);
  }
  if (isActive(c)) {
    startBackgroundIfDue(c);
    if (!c.weightEmitted && st.canaryWeight !== undefined) {
      c.traffic.push({ type: "setWeight", canaryWeight: st.canaryWeight, target });
    }
  }
  updatePhaseAndConditions(c);
  return finish(c);
}

/**
 * Whether the reconciler must check the gates' queries with Prometheus before this reconcile:
 * while no traffic has moved to the canary yet (a new rollout, a new target, a retry, or still at
 * 0 %), so that a query Prometheus refuses is found before the first weight moves.
 */
export function needsQueryCheck(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Pick<Observations, "action">,
): boolean {
  const hasGates = !!spec.analysis || (spec.steps ?? []).some(s => s.analysis !== undefined);
  const target = targetOf(spec);
  if (!hasGates || !target) return false;
  const st = status ?? {};
  if (!st.target || !jsonEqual(st.target, target)) return true;
  if (isTerminal(st.phase)) return obs.action === "retry" && st.phase !== "Succeeded";
  return (st.canaryWeight ?? 0) === 0;
}

/**
 * A reconcile that threw: Ready=False (reason ReconcileError) with the error and a Warning Event
 * once, so that no failure stays in the log only. Nothing else changes: no traffic action.
 */
export function reconcileFailed(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  generation: number,
  message: string,
  now: Date,
): ReconcileResult {
  const prev: ModelRolloutStatus = status ?? {};
  const st = structuredClone(prev);
  const obs: Observations = { generation, targets: { ready: true } };
  const c = newCtx(spec, obs, now, now.toISOString(), prev, st, st.target ?? placeholderTarget());
  blocked(c, "ReconcileError", `reconcile failed: ${message}; retrying with backoff`, false);
  return { status: pruneUndefined(st), actions: c.events };
}

function newCtx(
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
    annotation: [],
    weightEmitted: false,
    stepRunStarted: false,
    backgroundRunStarted: false,
    blocked: false,
  };
}

function placeholderTarget(): RolloutTarget {
  return { kind: "HTTPRoute", name: "", stable: "", canary: "" };
}

function finish(c: Ctx): ReconcileResult {
  const actions: Action[] = [...c.oldTargetActions];
  const st = c.st;
  const canaryNeeded = isActive(c) || (st.phase === "Succeeded" && c.traffic.length > 0);
  if (c.spec.pools?.canaryTemplate && canaryNeeded && !c.blocked) {
    actions.push({ type: "ensureCanaryPool" });
  }
  actions.push(...c.traffic, ...c.events, ...c.annotation);
  const result: ReconcileResult = { status: pruneUndefined(st), actions };
  if (c.requeueAfterMs !== undefined) result.requeueAfterMs = Math.max(0, c.requeueAfterMs);
  return result;
}

function pruneUndefined<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function isTerminal(phase: string | undefined): boolean {
  return phase !== undefined && TERMINAL.includes(phase);
}

function isActive(c: Ctx): boolean {
  return !isTerminal(c.st.phase);
}

function steps(c: Ctx): RolloutStep[] {
  return c.spec.steps;
}

function event(
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

function requeue(c: Ctx, ms: number) {
  c.requeueAfterMs = c.requeueAfterMs === undefined ? ms : Math.min(c.requeueAfterMs, ms);
}

// --- blockers ------------------------------------------------------------------------------------

/** Spec invalid, target missing or owned by another rollout: touch nothing, say why, retry. */
function blocked(c: Ctx, rawReason: string, message: string, retry: boolean) {
  const st = c.st;
  c.blocked = true;
  st.phase ??= "Pending";
  const reason = conditionReason(rawReason, "TargetsNotReady");
  const before = findCondition(c.prev, ConditionTypes.Ready);
  setCondition(c, ConditionTypes.Ready, "False", reason, message);
  if (
    !before ||
    before.status !== "False" ||
    before.reason !== reason ||
    before.message !== message
  ) {
    event(c, "Warning", reason, message);
  }
  // A finished rollout keeps its final message; Ready tells what is wrong now.
  if (!isTerminal(st.phase)) st.message = message;
  followGeneration(c);
  if (retry) {
    const since = Date.parse(
      findCondition(st, ConditionTypes.Ready)?.lastTransitionTime ?? c.nowIso,
    );
    const waited = c.now.getTime() - since;
    requeue(c, Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, waited)));
  }
}

function conditionReason(raw: string, fallback: string): string {
  const cleaned = raw
    .replace(/[^A-Za-z0-9_,:]/g, "")
    .replace(/^[^A-Za-z]+/, "")
    .replace(/[,:]+$/, "");
  return cleaned.length ? cleaned.slice(0, 1024) : fallback;
}

// --- generation, target and spec changes --------------------------------------------------------

function followGeneration(c: Ctx) {
  const gen = c.obs.generation;
  c.st.observedGeneration = gen;
  for (const cond of c.st.conditions ?? []) cond.observedGeneration = gen;
}

/** First reconcile, or the target identity changed: (roll back the old target and) start at steps[0]. */
function startRollout(c: Ctx, wasTerminal: boolean) {
  const st = c.st;
  const old = st.target;
  if (old && !wasTerminal && st.canaryWeight !== undefined) {
    c.oldTargetActions.push(
      { type: "setWeight", canaryWeight: 0, target: old },
      { type: "finalize", outcome: "RolledBack", target: old },
    );
  }
  if (old) {
    event(
      c,
      "Normal",
      "TargetChanged",
      `target changed from ${describeTarget(old)} to ${describeTarget(c.target)}` +
        (!wasTerminal && st.canaryWeight !== undefined
          ? `; rolled back canary ${old.canary}`
          : "") +
        "; restarting from steps[0]",
    );
  }
  resetProgress(c);
  st.target = c.target;
  delete st.canaryWeight;
  delete st.canaryWeightSetAt;
  delete st.stableWeight;
}

/** Rolls the old target back and forgets it; the new one starts once it is usable. */
function releaseOldTarget(c: Ctx) {
  const st = c.st;
  const old = st.target!;
  const touched = st.canaryWeight !== undefined;
  if (touched) {
    c.oldTargetActions.push(
      { type: "setWeight", canaryWeight: 0, target: old },
      { type: "finalize", outcome: "RolledBack", target: old },
    );
  }
  event(
    c,
    "Normal",
    "TargetChanged",
    `target changed from ${describeTarget(old)} to ${describeTarget(c.target)}` +
      (touched ? `; rolled back canary ${old.canary}` : "") +
      "; the new target is not usable yet",
  );
  resetProgress(c);
  st.phase = "Pending";
  delete st.target;
  delete st.canaryWeight;
  delete st.canaryWeightSetAt;
  delete st.stableWeight;
}

/** Back to steps[0], keeping target, weights, conditions and lastAction. */
function resetProgress(c: Ctx) {
  const st = c.st;
  st.phase = "Progressing";
  st.currentStep = 0;
  for (const key of [
    "stepStartedAt",
    "stepHash",
    "pauseStartedAt",
    "abortedAt",
    "finishedAt",
    "analysis",
    "analysisHash",
    "stepAnalysis",
  ] as const) {
    delete st[key];
  }
}

/** Same target, possibly new steps: clamp currentStep, restart the current step if it changed. */
function followStepChanges(c: Ctx) {
  const st = c.st;
  const n = steps(c).length;
  const cur = st.currentStep ?? 0;
  if (cur > n) {
    st.currentStep = n;
    delete st.stepStartedAt;
    delete st.stepHash;
    event(
      c,
      "Normal",
      "StepsChanged",
      `spec.steps now has ${n} steps; the rollout continues after the last one`,
    );
    return;
  }
  if (st.stepStartedAt !== undefined && cur < n && fingerprint(steps(c)[cur]) !== st.stepHash) {
    delete st.stepStartedAt;
    delete st.stepHash;
    if (st.stepAnalysis?.stepIndex === cur) delete st.stepAnalysis;
    event(c, "Normal", "StepsChanged", `steps[${cur}] changed; restarting it`, cur);
  }
}

/** A changed spec.analysis restarts the background gate; a removed one drops its run. */
function followBackgroundSpec(c: Ctx) {
  const st = c.st;
  if (!c.spec.analysis) {
    delete st.analysis;
    delete st.analysisHash;
    return;
  }
  if (isActive(c) && st.analysis && st.analysisHash !== fingerprint(c.spec.analysis)) {
    startBackgroundRun(c, "spec.analysis changed; background analysis restarted");
  }
}

function startBackgroundIfDue(c: Ctx) {
  if (c.spec.analysis && !c.st.analysis && (c.st.canaryWeight ?? 0) > 0) {
    startBackgroundRun(c, `background analysis started (${metricNames(c.spec.analysis.metrics)})`);
  }
}

function startBackgroundRun(c: Ctx, message: string) {
  c.st.analysis = { startedAt: c.nowIso, phase: "Running", metrics: [] };
  c.st.analysisHash = fingerprint(c.spec.analysis);
  c.backgroundRunStarted = true;
  event(c, "Normal", "AnalysisStarted", message);
}

function metricNames(metrics: { name: string }[]): string {
  return metrics.map(m => m.name).join(", ");
}

// --- manual actions -------------------------------------------------------------------------------

interface PendingAction {
  /** The annotation value as given. */
  value: string;
  action?: ManualAction;
}

/** The annotation's action unless it is the one already handled (status.lastAction) and not yet removed. */
function pendingManualAction(c: Ctx): PendingAction | undefined {
  const st = c.st;
  const value = c.obs.action ?? c.obs.invalidAction;
  const last = st.lastAction;
  if (value === undefined) {
    if (last && last.annotationRemoved === false) last.annotationRemoved = true;
    return undefined;
  }
  if (last && last.annotationRemoved === false && last.action === value) {
    c.annotation.push({ type: "clearActionAnnotation" });
    return undefined;
  }
  return { value, action: c.obs.action };
}

function handleManualAction(c: Ctx, pending: PendingAction) {
  const st = c.st;
  const record = (result: "Applied" | "Ignored" | "Rejected", message: string) => {
    st.lastAction = {
      action: pending.value.slice(0, 253),
      at: c.nowIso,
      result,
      message,
      annotationRemoved: false,
    };
    c.annotation.push({ type: "clearActionAnnotation" });
  };
  const ignore = (message: string) => {
    record("Ignored", message);
    event(c, "Normal", "ActionIgnored", `${pending.value}: ${message}`);
  };
  const phase = st.phase ?? "Pending";
  switch (pending.action) {
    case undefined: {
      const message =
        `unknown action "${pending.value.slice(0, 63)}" in annotation ${ACTION_ANNOTATION} ` +
        `(use ${MANUAL_ACTIONS.join(", ")})`;
      record("Rejected", message);
      event(c, "Warning", "InvalidAction", message);
      return;
    }
    case "abort": {
      if (!isActive(c)) return ignore(`the rollout is already ${phase}`);
      record("Applied", "aborted: all traffic back on stable");
      c.st.abortedAt = c.nowIso;
      rollback(c, "Aborted", "RolloutAborted", `aborted by ${ACTION_ANNOTATION}=abort`);
      return;
    }
    case "retry": {
      if (phase !== "Failed" && phase !== "Aborted") {
        return ignore(`only a Failed or Aborted rollout can be retried (phase is ${phase})`);
      }
      record("Applied", "restarted from steps[0]");
      resetProgress(c);
      event(c, "Normal", "Retried", `retrying after ${phase}: restarting from steps[0]`);
      return;
    }
    case "promote": {
      if (!isActive(c)) return ignore(`the rollout is already ${phase}`);
      const stillPaused = c.spec.paused ? " (still paused by spec.paused)" : "";
      if (backgroundVerdict(c) === "Inconclusive") {
        startBackgroundRun(c, "background analysis was inconclusive; restarted after promote");
        record("Applied", `continued past the inconclusive background analysis${stillPaused}`);
        event(
          c,
          "Normal",
          "Promoted",
          `continuing past the inconclusive background analysis${stillPaused}`,
        );
        return;
      }
      const cur = st.currentStep ?? 0;
      const step = steps(c)[cur];
      if (!step || st.stepStartedAt === undefined || step.setWeight !== undefined) {
        return ignore(`nothing to promote: no pause or analysis step is in progress`);
      }
      const what = step.pause ? "pause" : "analysis";
      advance(c);
      record("Applied", `promoted past steps[${cur}] (${what})${stillPaused}`);
      event(c, "Normal", "Promoted", `promoted past steps[${cur}] (${what})${stillPaused}`, cur);
      return;
    }
    case "promote-full": {
      if (!isActive(c)) return ignore(`the rollout is already ${phase}`);
      const stillPaused = c.spec.paused ? " (still paused by spec.paused)" : "";
      if (backgroundVerdict(c) === "Inconclusive") {
        startBackgroundRun(c, "background analysis was inconclusive; restarted after promote-full");
      }
      const from = st.currentStep ?? 0;
      st.currentStep = steps(c).length;
      delete st.stepStartedAt;
      delete st.stepHash;
      record("Applied", `promoted from steps[${from}] to the end${stillPaused}`);
      event(
        c,
        "Normal",
        "Promoted",
        `promoted from steps[${from}] to the end: canary goes to 100%${stillPaused}`,
      );
      return;
    }
  }
}

// --- gates ---------------------------------------------------------------------------------------

function runVerdict(
  run: GateRun | undefined,
  passed: GateVerdict | undefined,
  freshThisCall: boolean,
) {
  if (!run) return undefined;
  const fresh =
    run.phase === "Running" && (!Array.isArray(run.metrics) || run.metrics.length === 0);
  if (fresh || freshThisCall) return "Running";
  if (passed) return passed;
  return GATE_VERDICTS.includes(run.phase) ? (run.phase as GateVerdict) : "Running";
}

/** Writes a verdict the engine acts on into its run, so status shows what decided. */
function recordVerdict(run: GateRun | undefined, verdict: GateVerdict) {
  if (run && run.phase !== verdict) run.phase = verdict;
}

function backgroundVerdict(c: Ctx): GateVerdict | undefined {
  return runVerdict(c.st.analysis, c.obs.backgroundVerdict, c.backgroundRunStarted);
}

/** Verdict of the current analysis step's run, if that step is in progress. */
function stepVerdict(c: Ctx): GateVerdict | undefined {
  const st = c.st;
  const cur = st.currentStep ?? 0;
  const run = st.stepAnalysis;
  if (st.stepStartedAt === undefined || !steps(c)[cur]?.analysis || run?.stepIndex !== cur)
    return undefined;
  return runVerdict(run, c.obs.stepVerdict, c.stepRunStarted);
}

/** What the engine reads of a metric's status in a gate run (written by the analysis module). */
interface GateMetricStatus {
  name: string;
  measurements?: Array<{ phase: string; startedAt?: string; permanent?: boolean }>;
}

function hasPermanentError(run: GateRun | undefined): boolean {
  return ((run?.metrics ?? []) as GateMetricStatus[]).some(
    m => m?.measurements?.[m.measurements.length - 1]?.permanent === true,
  );
}

function holdOnInconclusive(c: Ctx): boolean {
  return c.spec.onInconclusive !== "Rollback";
}

/** Failed or erroring gates roll back at any step; Inconclusive does when onInconclusive=Rollback. */
function checkFailures(c: Ctx) {
  const bg = backgroundVerdict(c);
  const sv = stepVerdict(c);
  const cur = c.st.currentStep ?? 0;
  const runMessage = (run: GateRun | undefined) => (run?.message ? `: ${run.message}` : "");
  // A permanent error (a query Prometheus refuses for good) is the spec's fault: InvalidAnalysis.
  const reasonOf = (run: GateRun | undefined, verdict: string) =>
    verdict === "Error" && hasPermanentError(run) ? "InvalidAnalysis" : `Analysis${verdict}`;
  if (bg === "Failed" || bg === "Error") {
    recordVerdict(c.st.analysis, bg);
    rollback(
      c,
      "Failed",
      reasonOf(c.st.analysis, bg),
      `background analysis ${bg}${runMessage(c.st.analysis)}`,
    );
  } else if (sv === "Failed" || sv === "Error") {
    recordVerdict(c.st.stepAnalysis, sv);
    rollback(
      c,
      "Failed",
      reasonOf(c.st.stepAnalysis, sv),
      `analysis steps[${cur}] ${sv}${runMessage(c.st.stepAnalysis)}`,
    );
  } else if (!holdOnInconclusive(c) && (bg === "Inconclusive" || sv === "Inconclusive")) {
    const which = bg === "Inconclusive" ? "background analysis" : `analysis steps[${cur}]`;
    const run = bg === "Inconclusive" ? c.st.analysis : c.st.stepAnalysis;
    recordVerdict(run, "Inconclusive");
    rollback(
      c,
      "Failed",
      "AnalysisInconclusive",
      `${which} Inconclusive (onInconclusive: Rollback)${runMessage(run)}`,
    );
  }
}

/**
 * Why the canary may not go to `nextWeight` (or complete) yet, or undefined when it may. Raising
 * the weight needs positive evidence from every active analysis: each deciding metric of the
 * background run measured, and its latest measurement is Successful and started after the
 * current weight was set. Lowering or keeping the weight needs nothing; a step gate gives its
 * evidence through its own verdict.
 */
function missingEvidence(c: Ctx, nextWeight: number, completing: boolean): string | undefined {
  const st = c.st;
  const current = st.canaryWeight ?? 0;
  if (!c.spec.analysis || current === 0 || (nextWeight <= current && !completing)) return undefined;
  const what = completing ? "completing" : `raising the canary to ${nextWeight}%`;
  const run = st.analysis;
  // A run that reached its verdict (every metric's count) and passed is evidence for good.
  if (run?.phase === "Successful") return undefined;
  const since = Date.parse(st.canaryWeightSetAt ?? run?.startedAt ?? c.nowIso);
  const lacking: string[] = [];
  for (const metric of c.spec.analysis.metrics) {
    if (metric.dryRun) continue;
    const status = ((run?.metrics ?? []) as GateMetricStatus[]).find(m => m?.name === metric.name);
    const last = status?.measurements?.[status.measurements.length - 1];
    // Strictly after: a measurement taken in the same reconcile that set the weight saw the old one.
    const fresh = last !== undefined && Date.parse(String(last.startedAt)) > since;
    if (!fresh || last.phase !== "Successful") {
      lacking.push(
        fresh ? `${metric.name} (last ${last.phase})` : `${metric.name} (no measurement yet)`,
      );
    }
  }
  if (!lacking.length) return undefined;
  return (
    `${what} waits for a Successful measurement at ${current}% of background analysis ` +
    lacking.join(", ")
  );
}

// --- steps ----------------------------------------------------------------------------------------

/** Runs steps until one has to wait (pause, gate, user pause, inconclusive hold) or the end. */
function progress(c: Ctx) {
  const st = c.st;
  if (c.spec.paused) return;
  if (holdOnInconclusive(c) && backgroundVerdict(c) === "Inconclusive") return;
  const n = steps(c).length;
  for (let guard = 0; guard <= n + 1; guard++) {
    const i = st.currentStep ?? 0;
    const step = steps(c)[i] as RolloutStep | undefined;
    const nextWeight = i >= n ? 100 : step?.setWeight;
    if (st.stepStartedAt === undefined && nextWeight !== undefined) {
      // The never-promote rule: no rise of the canary weight, and no completion, without
      // positive evidence from the background analysis at the current weight.
      const missing = missingEvidence(c, nextWeight, i >= n);
      if (missing) {
        c.waiting = { kind: "Evidence", message: missing };
        return;
      }
    }
    if (i >= n || !step) {
      complete(c);
      return;
    }
    if (st.stepStartedAt === undefined) enterStep(c, i, step);
    if (step.setWeight !== undefined) {
      advance(c);
      continue;
    }
    if (step.pause) {
      const ms = step.pause.duration === undefined ? undefined : parseDuration(step.pause.duration);
      if (ms === undefined) {
        c.waiting = { kind: "PauseStep" };
        return;
      }
      const due = Date.parse(st.stepStartedAt ?? c.nowIso) + ms;
      if (c.now.getTime() >= due) {
        advance(c);
        continue;
      }
      requeue(c, due - c.now.getTime());
      c.waiting = { kind: "PauseStep", dueAt: new Date(due).toISOString() };
      return;
    }
    const verdict = stepVerdict(c);
    if (verdict === "Successful") {
      recordVerdict(st.stepAnalysis, verdict);
      event(c, "Normal", "AnalysisPassed", `analysis steps[${i}] Successful`, i);
      advance(c);
      continue;
    }
    if (verdict === "Inconclusive") recordVerdict(st.stepAnalysis, verdict);
    c.waiting = verdict === "Inconclusive" ? { kind: "StepInconclusive" } : { kind: "Analysis" };
    return;
  }
}

function advance(c: Ctx) {
  c.st.currentStep = (c.st.currentStep ?? 0) + 1;
  delete c.st.stepStartedAt;
  delete c.st.stepHash;
}

function enterStep(c: Ctx, i: number, step: RolloutStep) {
  const st = c.st;
  const n = steps(c).length;
  st.stepStartedAt = c.nowIso;
  st.stepHash = fingerprint(step);
  if (step.setWeight !== undefined) {
    const w = step.setWeight;
    if (st.canaryWeight !== w) st.canaryWeightSetAt = c.nowIso;
    st.canaryWeight = w;
    st.stableWeight = 100 - w;
    c.traffic.push({ type: "setWeight", canaryWeight: w, target: c.target, step: i });
    c.weightEmitted = true;
    event(
      c,
      "Normal",
      "WeightSet",
      `steps[${i}] of ${n}: canary ${c.target.canary} ${w}%, stable ${c.target.stable} ${100 - w}%`,
      i,
    );
  } else if (step.pause) {
    const until = step.pause.duration ? `for ${step.pause.duration}` : "until promoted";
    event(c, "Normal", "PauseStarted", `steps[${i}] of ${n}: pause ${until}`, i);
  } else if (step.analysis) {
    st.stepAnalysis = { stepIndex: i, startedAt: c.nowIso, phase: "Running", metrics: [] };
    c.stepRunStarted = true;
    event(
      c,
      "Normal",
      "AnalysisStarted",
      `steps[${i}] of ${n}: analysis (${metricNames(step.analysis.metrics)})`,
      i,
    );
  }
}

// --- end states -----------------------------------------------------------------------------------

function complete(c: Ctx) {
  const st = c.st;
  const { target } = c;
  st.currentStep = steps(c).length;
  st.phase = "Succeeded";
  if (st.canaryWeight !== 100) st.canaryWeightSetAt = c.nowIso;
  st.canaryWeight = 100;
  st.stableWeight = 0;
  st.finishedAt = c.nowIso;
  delete st.stepStartedAt;
  delete st.stepHash;
  const last = c.traffic[c.traffic.length - 1];
  if (!(last?.type === "setWeight" && last.canaryWeight === 100 && last.target === target)) {
    c.traffic.push({ type: "setWeight", canaryWeight: 100, target });
  }
  c.traffic.push({ type: "finalize", outcome: "Promoted", target });
  c.weightEmitted = true;
  if (c.spec.pools && c.spec.postRollout?.unusedPool === "Delete") {
    c.traffic.push({ type: "deletePool", pool: target.stable, onlyIfManaged: false });
  }
  c.terminalReason = "RolloutSucceeded";
  event(
    c,
    "Normal",
    "Succeeded",
    `rollout succeeded: canary ${target.canary} receives 100%, stable ${target.stable} removed`,
  );
}

function rollback(c: Ctx, phase: "Failed" | "Aborted", reason: string, message: string) {
  const st = c.st;
  const { target } = c;
  st.phase = phase;
  if (st.canaryWeight !== 0) st.canaryWeightSetAt = c.nowIso;
  st.canaryWeight = 0;
  st.stableWeight = 100;
  st.finishedAt = c.nowIso;
  c.traffic.push(
    { type: "setWeight", canaryWeight: 0, target },
    { type: "finalize", outcome: "RolledBack", target },
  );
  c.weightEmitted = true;
  if (c.spec.pools && c.spec.postRollout?.unusedPool === "Delete") {
    c.traffic.push({ type: "deletePool", pool: target.canary, onlyIfManaged: true });
  }
  c.terminalReason = reason;
  const full = `${message}; all traffic back on stable ${target.stable}`;
  st.message = full;
  event(c, "Warning", phase, full);
}

// --- phase, conditions, message -------------------------------------------------------------------

function pauseReason(c: Ctx): PauseReason | undefined {
  if (c.spec.paused) return "PausedByUser";
  if (holdOnInconclusive(c) && backgroundVerdict(c) === "Inconclusive")
    return "AnalysisInconclusive";
  if (c.waiting?.kind === "StepInconclusive") return "AnalysisInconclusive";
  if (c.waiting?.kind === "PauseStep") return "PauseStep";
  return undefined;
}

function updatePhaseAndConditions(c: Ctx) {
  const st = c.st;
  const cur = st.currentStep ?? 0;
  const weight =
    st.canaryWeight === undefined ? "canary not routed yet" : `canary ${st.canaryWeight}%`;
  const prevPause = findCondition(c.prev, ConditionTypes.Paused);
  const prevReason = prevPause?.status === "True" ? prevPause.reason : undefined;

  if (isActive(c)) {
    const reason = pauseReason(c);
    st.phase = reason ? "Paused" : "Progressing";
    let message: string;
    switch (reason) {
      case "PausedByUser":
        message = `paused by spec.paused at steps[${cur}] (${weight})`;
        break;
      case "AnalysisInconclusive":
        message =
          c.waiting?.kind === "StepInconclusive"
            ? `analysis steps[${cur}] inconclusive: holding at ${weight} until promote`
            : `background analysis inconclusive: holding at ${weight} until promote`;
        break;
      case "PauseStep":
        message =
          c.waiting?.kind === "PauseStep" && c.waiting.dueAt
            ? `steps[${cur}]: pause until ${c.waiting.dueAt} (${weight})`
            : `steps[${cur}]: paused until promote (${weight})`;
        break;
      default:
        message =
          c.waiting?.kind === "Analysis"
            ? `steps[${cur}]: waiting for analysis (${weight})`
            : c.waiting?.kind === "Evidence"
              ? `steps[${cur}]: ${c.waiting.message} (${weight})`
              : `steps[${cur}] in progress (${weight})`;
    }
    st.message = message;

    // Events for pause transitions that are not step entries (those have their own event).
    if (reason === "PausedByUser" && prevReason !== "PausedByUser") {
      event(c, "Normal", "Paused", `paused by spec.paused at steps[${cur}] (${weight})`);
    }
    if (prevReason === "PausedByUser" && reason !== "PausedByUser") {
      event(c, "Normal", "Resumed", `resumed (spec.paused is false) at steps[${cur}]`);
    }
    if (reason === "AnalysisInconclusive" && prevReason !== "AnalysisInconclusive") {
      event(c, "Warning", "AnalysisInconclusive", `${message} (onInconclusive: Hold)`);
    }

    const samePause =
      c.prev.phase === "Paused" && prevReason === reason && (c.prev.currentStep ?? 0) === cur;
    if (reason) {
      if (!samePause || st.pauseStartedAt === undefined) st.pauseStartedAt = c.nowIso;
    } else {
      delete st.pauseStartedAt;
    }

    setCondition(
      c,
      ConditionTypes.Progressing,
      reason ? "False" : "True",
      reason
        ? "RolloutPaused"
        : c.waiting?.kind === "Analysis"
          ? "WaitingForAnalysis"
          : c.waiting?.kind === "Evidence"
            ? "WaitingForEvidence"
            : "RolloutProgressing",
      message,
    );
    setCondition(
      c,
      ConditionTypes.Paused,
      reason ? "True" : "False",
      reason ?? "NotPaused",
      reason ? message : "",
    );
    setCondition(c, ConditionTypes.Completed, "False", "InProgress", message);
  } else {
    // A terminal phase reached in this call (earlier ones return before this point).
    delete st.pauseStartedAt;
    const succeeded = st.phase === "Succeeded";
    if (succeeded) {
      st.message = `canary ${c.target.canary} receives 100%; stable ${c.target.stable} removed`;
    }
    const message = st.message ?? "";
    setCondition(
      c,
      ConditionTypes.Progressing,
      "False",
      c.terminalReason ?? st.phase ?? "Finished",
      message,
    );
    setCondition(c, ConditionTypes.Paused, "False", "NotPaused", "");
    setCondition(
      c,
      ConditionTypes.Completed,
      succeeded ? "True" : "False",
      succeeded ? "RolloutSucceeded" : "RolledBack",
      message,
    );
  }
  updateAnalysisCondition(c);
}

function updateAnalysisCondition(c: Ctx) {
  const st = c.st;
  const runs: [string, GateVerdict | undefined][] = [];
  if (st.analysis)
    runs.push([
      "background analysis",
      runVerdict(st.analysis, c.obs.backgroundVerdict, c.backgroundRunStarted),
    ]);
  if (st.stepAnalysis) {
    const fresh = c.stepRunStarted;
    const passed = st.stepAnalysis.stepIndex === st.currentStep ? c.obs.stepVerdict : undefined;
    runs.push([
      `analysis steps[${st.stepAnalysis.stepIndex ?? "?"}]`,
      runVerdict(st.stepAnalysis, passed, fresh),
    ]);
  }
  const anyGate = !!c.spec.analysis || steps(c).some(s => s.analysis !== undefined);
  if (!anyGate && runs.length === 0) {
    if (st.conditions)
      st.conditions = st.conditions.filter(x => x.type !== ConditionTypes.AnalysisPassing);
    return;
  }
  const text = runs.map(([name, v]) => `${name}: ${v}`).join("; ");
  const bad = runs.find(([, v]) => v === "Failed" || v === "Error" || v === "Inconclusive");
  if (bad) {
    setCondition(c, ConditionTypes.AnalysisPassing, "False", `Analysis${bad[1]}`, text);
  } else if (runs.length) {
    const allPassed = runs.every(([, v]) => v === "Successful");
    setCondition(
      c,
      ConditionTypes.AnalysisPassing,
      "True",
      allPassed ? "AnalysisSuccessful" : "AnalysisRunning",
      text,
    );
  } else {
    setCondition(
      c,
      ConditionTypes.AnalysisPassing,
      "Unknown",
      "NotStarted",
      "no analysis has run yet",
    );
  }
}

function findCondition(status: ModelRolloutStatus, type: string): RolloutCondition | undefined {
  return status.conditions?.find(x => x.type === type);
}

/** Kubernetes convention: lastTransitionTime changes only when status flips. */
function setCondition(
  c: Ctx,
  type: string,
  status: "True" | "False" | "Unknown",
  reason: string,
  message: string,
) {
  const conditions = (c.st.conditions ??= []);
  const existing = conditions.find(x => x.type === type);
  const next: RolloutCondition = {
    type,
    status,
    reason,
    message,
    lastTransitionTime:
      existing && existing.status === status ? existing.lastTransitionTime : c.nowIso,
    observedGeneration: c.obs.generation,
  };
  if (existing) Object.assign(existing, next);
  else conditions.push(next);
}

function describeTarget(t: RolloutTarget): string {
  switch (t.kind) {
    case "HTTPRoute":
      return (
        `HTTPRoute ${t.name}${t.rule !== undefined ? ` rule ${t.rule}` : ""} ` +
        `(stable InferencePool ${t.stable}, canary ${t.canary})`
      );
    case "InferenceModel":
      return `InferenceModel ${t.name} (stable adapter ${t.stable}, canary ${t.canary})`;
    default:
      return `InferenceModelRewrite ${t.group}/${t.name} (stable ${t.stable}, canary ${t.canary})`;
  }
}
