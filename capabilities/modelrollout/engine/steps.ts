// Steps: the only code that moves status.currentStep, and the end states.
import { parseDuration } from "../../duration";
import { startRun } from "../../analysis";
import { fingerprint } from "../fingerprint";
import { describeTarget } from "./conditions";
import { adapterNotReady, holdForAdapter } from "./adapters";
import { type Action, Ctx, event, requeue, steps } from "./context";
import { notify } from "./notify";
import {
  backgroundVerdict,
  holdOnInconclusive,
  metricNames,
  missingEvidence,
  stepVerdict,
} from "./gates";
import type { HeaderMatch, RolloutStep, RolloutTarget } from "../types";

// --- generation, target and spec changes --------------------------------------------------------

export function followGeneration(c: Ctx) {
  const gen = c.obs.generation;
  c.st.observedGeneration = gen;
  for (const cond of c.st.conditions ?? []) cond.observedGeneration = gen;
}

/** First reconcile, or the target identity changed: (roll back the old target and) start at steps[0]. */
export function startRollout(c: Ctx, wasTerminal: boolean) {
  const st = c.st;
  const old = st.target;
  if (old && !wasTerminal && st.canaryWeight !== undefined) {
    c.oldTargetActions.push(
      { type: "setWeight", canaryWeight: 0, target: old },
      { type: "finalize", outcome: "RolledBack", target: old },
    );
  }
  if (old) dropHeaderRoute(c, old, c.oldTargetActions);
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
export function releaseOldTarget(c: Ctx) {
  const st = c.st;
  const old = st.target!;
  const touched = st.canaryWeight !== undefined;
  if (touched) {
    c.oldTargetActions.push(
      { type: "setWeight", canaryWeight: 0, target: old },
      { type: "finalize", outcome: "RolledBack", target: old },
    );
  }
  dropHeaderRoute(c, old, c.oldTargetActions);
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
export function resetProgress(c: Ctx) {
  const st = c.st;
  st.phase = "Progressing";
  goToStep(c, 0);
  for (const key of [
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
export function followStepChanges(c: Ctx) {
  const st = c.st;
  const n = steps(c).length;
  const cur = st.currentStep ?? 0;
  if (cur > n) {
    goToStep(c, n);
    event(
      c,
      "Normal",
      "StepsChanged",
      `spec.steps now has ${n} steps; the rollout continues after the last one`,
    );
    return;
  }
  if (st.stepStartedAt !== undefined && cur < n && fingerprint(steps(c)[cur]) !== st.stepHash) {
    goToStep(c, cur);
    if (st.stepAnalysis?.stepIndex === cur) delete st.stepAnalysis;
    event(
      c,
      "Normal",
      "StepsChanged",
      `steps[${cur}] (or a template it uses) changed; restarting it`,
      cur,
    );
  }
}

// --- steps ----------------------------------------------------------------------------------------

/** Runs steps until one has to wait (pause, gate, user pause, inconclusive hold) or the end. */
export function progress(c: Ctx) {
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
      // Adapter readiness: no rise while a Ready pod of the pool lacks the canary adapter.
      const notReady = adapterNotReady(c, nextWeight);
      if (notReady) return holdForAdapter(c, notReady);
      // Probes before the first weight that did not pass yet hold the rise (and only the rise).
      if (c.probesPending && nextWeight > (st.canaryWeight ?? 0)) {
        c.waiting = { kind: "Probe", message: c.probesPending };
        return;
      }
    }
    if (i >= n || !step) {
      complete(c);
      return;
    }
    if (headerWaitsForWeight(c, step)) return requeue(c, 1);
    if (st.stepStartedAt === undefined) enterStep(c, i, step);
    if (step.setWeight !== undefined || step.setHeaderRoute) {
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
      event(c, "Normal", "AnalysisPassed", `analysis steps[${i}] Successful`, i);
      advance(c);
      continue;
    }
    c.waiting = verdict === "Inconclusive" ? { kind: "StepInconclusive" } : { kind: "Analysis" };
    return;
  }
}

/**
 * A setHeaderRoute write not entered yet while a weight was set at this very instant: it waits
 * for the next reconcile. A header write refused after the weight write of the same reconcile
 * would drop the status that records the weight (refusedWrite starts from the previous status),
 * leaving the route at a weight nobody recorded. Keyed to the time, not to this call, so the same
 * input gives the same output. A removal cannot hit a route limit and does not wait.
 */
function headerWaitsForWeight(c: Ctx, step: RolloutStep): boolean {
  return (
    c.st.stepStartedAt === undefined &&
    !!step.setHeaderRoute?.match.length &&
    c.st.canaryWeightSetAt === c.nowIso
  );
}

/**
 * The only writer of status.currentStep: step `i` becomes the current one, not started yet (its
 * start time and fingerprint go with the step that is left).
 */
export function goToStep(c: Ctx, i: number) {
  c.st.currentStep = i;
  delete c.st.stepStartedAt;
  delete c.st.stepHash;
}

export function advance(c: Ctx) {
  goToStep(c, (c.st.currentStep ?? 0) + 1);
}

export function enterStep(c: Ctx, i: number, step: RolloutStep) {
  const st = c.st;
  const n = steps(c).length;
  st.stepStartedAt = c.nowIso;
  st.stepHash = fingerprint(step);
  const eventsBefore = c.events.length;
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
  } else if (step.setHeaderRoute) {
    enterHeaderRouteStep(c, i, step.setHeaderRoute.match);
  } else if (step.pause) {
    const until = step.pause.duration ? `for ${step.pause.duration}` : "until promoted";
    event(c, "Normal", "PauseStarted", `steps[${i}] of ${n}: pause ${until}`, i);
  } else if (step.analysis) {
    st.stepAnalysis = startRun(c.now, i);
    c.stepRunStarted = true;
    event(
      c,
      "Normal",
      "AnalysisStarted",
      `steps[${i}] of ${n}: analysis (${metricNames(step.analysis.metrics)})`,
      i,
    );
  }
  const entered = c.events[eventsBefore];
  if (entered?.type === "event") notify(c, "StepReached", entered.message, "Progressing");
}

/** A setHeaderRoute step: (re)write the header route, or remove it for an empty match list. */
function enterHeaderRouteStep(c: Ctx, i: number, match: HeaderMatch[]) {
  const n = steps(c).length;
  if (match.length === 0) {
    dropHeaderRoute(c, c.target, c.traffic);
    event(c, "Normal", "HeaderRouteRemoved", `steps[${i}] of ${n}: header route removed`, i);
    return;
  }
  c.st.headerRoute = { match, step: i };
  c.traffic.push({ type: "setHeaderRoute", match, target: c.target });
  c.headerRouteEmitted = true;
  event(
    c,
    "Normal",
    "HeaderRouteSet",
    `steps[${i}] of ${n}: requests with ${describeHeaderMatch(match)} go to canary ${c.target.canary}`,
    i,
  );
}

export function describeHeaderMatch(match: HeaderMatch[]): string {
  return match
    .map(m => {
      const v = m.headerValue;
      if (v.exact !== undefined) return `${m.headerName}: ${v.exact}`;
      if (v.prefix !== undefined) return `${m.headerName}: ${v.prefix}*`;
      return `${m.headerName} ~ /${v.regex ?? ""}/`;
    })
    .join(" and ");
}

/**
 * Whether the rule a setHeaderRoute step writes may be in the route although status does not
 * record it: the route write of a step goes before the status write, so a crash between the two
 * leaves the rule in the route with no record of it.
 */
export function headerRouteMayLinger(c: Ctx): boolean {
  return steps(c).some(s => s.setHeaderRoute !== undefined);
}

/**
 * The header route is removed from `target` and status forgets it: whenever status records it,
 * and also when it does not but a setHeaderRoute step may have written it before a status write
 * was lost. The removal deletes the rule by its name and writes nothing when there is none.
 */
export function dropHeaderRoute(c: Ctx, target: RolloutTarget, into: Action[]) {
  const recorded = c.st.headerRoute !== undefined;
  const current = into === c.traffic && target === c.target;
  delete c.st.headerRoute;
  if (target.kind !== "HTTPRoute" || !(recorded || headerRouteMayLinger(c))) return;
  // Nothing recorded but a header action emitted in this call: it was a removal (a write records
  // the rule), so the route has none already.
  if (!recorded && current && c.headerRouteEmitted) return;
  into.push({ type: "removeHeaderRoute", target });
  if (current) c.headerRouteEmitted = true;
}

// --- end states -----------------------------------------------------------------------------------

export function complete(c: Ctx) {
  const st = c.st;
  const { target } = c;
  goToStep(c, steps(c).length);
  st.phase = "Succeeded";
  if (st.canaryWeight !== 100) st.canaryWeightSetAt = c.nowIso;
  st.canaryWeight = 100;
  st.stableWeight = 0;
  st.finishedAt = c.nowIso;
  const last = c.traffic[c.traffic.length - 1];
  if (!(last?.type === "setWeight" && last.canaryWeight === 100 && last.target === target)) {
    c.traffic.push({ type: "setWeight", canaryWeight: 100, target });
  }
  c.traffic.push({ type: "finalize", outcome: "Promoted", target });
  dropHeaderRoute(c, target, c.traffic);
  c.weightEmitted = true;
  if (c.spec.pools && c.spec.postRollout?.unusedPool === "Delete") {
    c.traffic.push({ type: "deletePool", pool: target.stable, onlyIfManaged: false });
  }
  c.terminalReason = "RolloutSucceeded";
  const message = `rollout succeeded: canary ${target.canary} receives 100%, stable ${target.stable} removed`;
  event(c, "Normal", "Succeeded", message);
  notify(c, "Succeeded", message);
}

export function rollback(c: Ctx, phase: "Failed" | "Aborted", reason: string, message: string) {
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
  dropHeaderRoute(c, target, c.traffic);
  c.weightEmitted = true;
  if (c.spec.pools && c.spec.postRollout?.unusedPool === "Delete") {
    c.traffic.push({ type: "deletePool", pool: target.canary, onlyIfManaged: true });
  }
  c.terminalReason = reason;
  const full = `${message}; all traffic back on stable ${target.stable}`;
  st.message = full;
  event(c, "Warning", phase, full);
  if (phase === "Failed") notify(c, "Failed", message);
  notify(c, "RolledBack", full);
}
