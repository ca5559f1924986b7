// reconcileRollout: one call of the engine, the order of its decisions.
import { jsonEqual } from "../fingerprint";
import {
  blocked,
  describeTarget,
  findCondition,
  setCondition,
  updatePhaseAndConditions,
} from "./conditions";
import {
  ConditionTypes,
  Ctx,
  Observations,
  ReconcileResult,
  finish,
  isActive,
  isTerminal,
  newCtx,
  placeholderTarget,
  pruneUndefined,
} from "./context";
import {
  checkFailures,
  concludeBackground,
  followBackgroundSpec,
  recordMeasurements,
  requeueForMeasurements,
  startBackgroundIfDue,
} from "./gates";
import {
  adapterReadyEvent,
  forgetAdapterRecord,
  loadAdapters,
  probesWaitForAdapter,
  unloadAfterRollback,
} from "./adapters";
import { handleManualAction, pendingManualAction, type PendingAction } from "./manual";
import { notificationCondition } from "./notify";
import {
  failOnProbes,
  holdOnPendingProbes,
  pendingProbes,
  probeVerdicts,
  refusedProbes,
} from "./probes";
import { targetOf, validateSpec } from "./spec";
import {
  dropHeaderRoute,
  followGeneration,
  followStepChanges,
  progress,
  releaseOldTarget,
  startRollout,
} from "./steps";
import type { ModelRolloutSpec, ModelRolloutStatus } from "../types";

export function reconcileRollout(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Observations,
  now: Date,
): ReconcileResult {
  const prev: ModelRolloutStatus = status ?? {};
  const st = structuredClone(prev);
  const nowIso = now.toISOString();

  const allProbes = probeVerdicts(obs);
  const probes = probesWaitForAdapter(spec, obs) ? undefined : allProbes;
  const invalid =
    obs.specError ?? validateSpec(spec) ?? refusedQueries(obs) ?? refusedProbes(allProbes);
  const target = targetOf(spec);
  if (invalid || !target) {
    const problem = invalid ?? { reason: "InvalidSpec", message: "spec names no traffic target" };
    return invalidSpec(
      newCtx(spec, obs, now, nowIso, prev, st, st.target ?? placeholderTarget()),
      problem,
    );
  }

  const c = newCtx(spec, obs, now, nowIso, prev, st, target);
  const terminal = isTerminal(st.phase);
  const identityChanged = !st.target || !jsonEqual(st.target, target);
  const pending = pendingManualAction(c);
  const retrying = pending?.action === "retry" && (st.phase === "Failed" || st.phase === "Aborted");

  if (terminal && !identityChanged && !retrying) return finishedRollout(c, pending);
  if (!terminal && !identityChanged) recordMeasurements(c);
  notificationCondition(c);
  if (blockedByTargets(c, identityChanged, terminal)) return finish(c);
  // A failed probe outweighs a pending one (failOnProbes below).
  const probesPending = probes?.failed.length ? undefined : pendingProbes(probes);
  if (probesPending) holdOnPendingProbes(c, probesPending);
  else setCondition(c, ConditionTypes.Ready, "True", "TargetsReady", describeTarget(target));

  if (identityChanged) {
    forgetAdapterRecord(c, st.target, st.phase);
    startRollout(c, terminal);
  } else if (!terminal) followStepChanges(c);
  followGeneration(c);
  followBackgroundSpec(c);
  if (pending && pending.action !== "promote" && pending.action !== "promote-full") {
    handleManualAction(c, pending);
  }
  // After the actions: a retry makes a rollout that failed its probe active again.
  if (isActive(c)) failOnProbes(c, probes);
  if (isActive(c)) checkFailures(c);
  if (pending && (pending.action === "promote" || pending.action === "promote-full")) {
    handleManualAction(c, pending);
  }
  if (isActive(c)) progress(c);
  adapterReadyEvent(c);
  loadAdapters(c);
  unloadAfterRollback(c);
  if (isActive(c)) {
    startBackgroundIfDue(c);
    if (!c.weightEmitted && st.canaryWeight !== undefined) {
      c.traffic.push({ type: "setWeight", canaryWeight: st.canaryWeight, target });
    }
    // Level-triggered like the weight: a crash between status and route write heals here.
    // Its absence too: a rule written before a lost status write is removed until a step
    // records it (e.g. while paused before the step is entered again).
    if (!c.headerRouteEmitted && st.headerRoute) {
      c.traffic.push({ type: "setHeaderRoute", match: st.headerRoute.match, target });
    } else if (!c.headerRouteEmitted) {
      dropHeaderRoute(c, target, c.traffic);
    }
    requeueForMeasurements(c);
  }
  concludeBackground(c);
  updatePhaseAndConditions(c);
  return finish(c);
}

/** Finished and nothing asks for a new run: only acknowledge actions and follow the generation. */
function finishedRollout(c: Ctx, pending: PendingAction | undefined): ReconcileResult {
  if (pending) handleManualAction(c, pending);
  // Pods not unloaded yet after a rollback are tried again (bounded).
  unloadAfterRollback(c);
  notificationCondition(c);
  // Targets are no longer watched, so an earlier Ready=False (e.g. a fixed invalid spec) clears.
  if (findCondition(c.st, ConditionTypes.Ready)?.status === "False") {
    setCondition(
      c,
      ConditionTypes.Ready,
      "True",
      "RolloutFinished",
      "spec is valid; targets are not watched after the rollout finished",
    );
  }
  concludeBackground(c);
  followGeneration(c);
  return finish(c);
}

/** Another owner, a missing target or an unreachable Prometheus: touch nothing, say why. */
function blockedByTargets(c: Ctx, identityChanged: boolean, terminal: boolean): boolean {
  const { obs, st, target } = c;
  if ((obs.conflict || !obs.targets.ready) && identityChanged && st.target && !terminal) {
    // The user moved the rollout away from its old target: release that one now, even though
    // the new target cannot be used yet.
    forgetAdapterRecord(c, st.target, st.phase);
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
    return true;
  }
  if (!obs.targets.ready) {
    blocked(c, obs.targets.reason, obs.targets.message, true);
    return true;
  }
  const unavailable = obs.queryCheck?.unavailable ?? [];
  if (unavailable.length) {
    const message = `cannot check the gates' queries before moving traffic: ${unavailable.join("; ")}`;
    blocked(c, "PrometheusUnavailable", message, true);
    return true;
  }
  return false;
}

/**
 * An invalid spec (e.g. a deleted AnalysisTemplate) changes nothing: the weight stays, no gate
 * runs. Only an abort of a rollout that already moved traffic is applied, on the target in
 * status, so that a broken spec never keeps a canary's traffic against the user's will.
 */
function invalidSpec(c: Ctx, problem: { reason: string; message: string }): ReconcileResult {
  const pending = pendingManualAction(c);
  if (pending?.action === "abort" && c.st.target && isActive(c)) handleManualAction(c, pending);
  c.st.phase ??= "Pending";
  blocked(c, problem.reason, `invalid spec: ${problem.message}`, false);
  if (c.terminalReason) updatePhaseAndConditions(c);
  return finish(c);
}

/** Queries Prometheus refused for good when checked before the first weight (InvalidAnalysis). */
function refusedQueries(obs: Observations): { reason: string; message: string } | undefined {
  const invalid = obs.queryCheck?.invalid ?? [];
  if (!invalid.length) return undefined;
  const what = invalid.length === 1 ? "a query" : `${invalid.length} queries`;
  return {
    reason: "InvalidAnalysis",
    message: `Prometheus refuses ${what}; fix the spec (no traffic was moved): ${invalid.join("; ")}`,
  };
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
