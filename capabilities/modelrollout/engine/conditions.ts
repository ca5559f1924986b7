// Phase, conditions, message and the blocked state: what users read in status.
import {
  BACKOFF_MAX_MS,
  BACKOFF_MIN_MS,
  ConditionTypes,
  Ctx,
  GateVerdict,
  PauseReason,
  event,
  isActive,
  isTerminal,
  requeue,
  steps,
} from "./context";
import { ADAPTER_NOT_READY } from "./adapters";
import { PROBE_PENDING } from "./probes";
import { backgroundVerdict, holdOnInconclusive, runVerdict } from "./gates";
import { notify } from "./notify";
import { followGeneration } from "./steps";
import type { ModelRolloutStatus, RolloutCondition, RolloutTarget } from "../types";

// --- blockers ------------------------------------------------------------------------------------

/** Spec invalid, target missing or owned by another rollout: touch nothing, say why, retry. */
export function blocked(c: Ctx, rawReason: string, message: string, retry: boolean) {
  const st = c.st;
  c.blocked = true;
  st.phase ??= "Pending";
  notReady(c, rawReason, message, retry);
  // A finished rollout keeps its final message; Ready tells what is wrong now.
  if (!isTerminal(st.phase)) st.message = message;
  followGeneration(c);
}

/** Ready=False with a Warning when it changes, and (retry) a re-check with a growing backoff. */
export function notReady(c: Ctx, rawReason: string, message: string, retry: boolean) {
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
  if (retry) {
    const since = Date.parse(
      findCondition(c.st, ConditionTypes.Ready)?.lastTransitionTime ?? c.nowIso,
    );
    const waited = c.now.getTime() - since;
    requeue(c, Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, waited)));
  }
}

export function conditionReason(raw: string, fallback: string): string {
  const cleaned = raw
    .replace(/[^A-Za-z0-9_,:]/g, "")
    .replace(/^[^A-Za-z]+/, "")
    .replace(/[,:]+$/, "");
  return cleaned.length ? cleaned.slice(0, 1024) : fallback;
}

// --- phase, conditions, message -------------------------------------------------------------------

export function pauseReason(c: Ctx): PauseReason | undefined {
  if (c.spec.paused) return "PausedByUser";
  if (holdOnInconclusive(c) && backgroundVerdict(c) === "Inconclusive")
    return "AnalysisInconclusive";
  if (c.waiting?.kind === "StepInconclusive") return "AnalysisInconclusive";
  if (c.waiting?.kind === "PauseStep") return "PauseStep";
  return undefined;
}

export function updatePhaseAndConditions(c: Ctx) {
  if (isActive(c)) activeConditions(c);
  else terminalConditions(c);
  updateAnalysisCondition(c);
}

function weightText(st: Ctx["st"]): string {
  return st.canaryWeight === undefined ? "canary not routed yet" : `canary ${st.canaryWeight}%`;
}

/** What an active rollout is doing or waiting for, in one line. */
function activeMessage(c: Ctx, reason: PauseReason | undefined): string {
  const cur = c.st.currentStep ?? 0;
  const weight = weightText(c.st);
  const w = c.waiting;
  switch (reason) {
    case "PausedByUser":
      return `paused by spec.paused at steps[${cur}] (${weight})`;
    case "AnalysisInconclusive":
      return w?.kind === "StepInconclusive"
        ? `analysis steps[${cur}] inconclusive: holding at ${weight} until promote`
        : `background analysis inconclusive: holding at ${weight} until promote`;
    case "PauseStep":
      return w?.kind === "PauseStep" && w.dueAt
        ? `steps[${cur}]: pause until ${w.dueAt} (${weight})`
        : `steps[${cur}]: paused until promote (${weight})`;
    default:
      if (w?.kind === "Analysis") return `steps[${cur}]: waiting for analysis (${weight})`;
      if (w?.kind === "Evidence" || w?.kind === "Adapter" || w?.kind === "Probe")
        return `steps[${cur}]: ${w.message} (${weight})`;
      return `steps[${cur}] in progress (${weight})`;
  }
}

/** Events for pause transitions that are not step entries (those have their own event). */
function pauseEvents(c: Ctx, reason: PauseReason | undefined, prevReason: string | undefined) {
  const cur = c.st.currentStep ?? 0;
  if (reason === "PausedByUser" && prevReason !== "PausedByUser") {
    event(c, "Normal", "Paused", `paused by spec.paused at steps[${cur}] (${weightText(c.st)})`);
  }
  if (prevReason === "PausedByUser" && reason !== "PausedByUser") {
    event(c, "Normal", "Resumed", `resumed (spec.paused is false) at steps[${cur}]`);
  }
  if (reason === "AnalysisInconclusive" && prevReason !== "AnalysisInconclusive") {
    event(c, "Warning", "AnalysisInconclusive", `${c.st.message} (onInconclusive: Hold)`);
  }
}

/** A Warning when an adapter hold starts or names other pods (the end: adapterReadyEvent). */
function adapterEvents(c: Ctx, holding: boolean, message: string) {
  const before = findCondition(c.prev, ConditionTypes.Progressing);
  const held = before?.reason === ADAPTER_NOT_READY;
  if (holding && (!held || before.message !== message))
    event(c, "Warning", ADAPTER_NOT_READY, message);
}

function activeConditions(c: Ctx) {
  const st = c.st;
  const cur = st.currentStep ?? 0;
  const prevPause = findCondition(c.prev, ConditionTypes.Paused);
  const prevReason = prevPause?.status === "True" ? prevPause.reason : undefined;
  const reason = pauseReason(c);
  st.phase = reason ? "Paused" : "Progressing";
  const message = activeMessage(c, reason);
  st.message = message;
  pauseEvents(c, reason, prevReason);

  const samePause =
    c.prev.phase === "Paused" && prevReason === reason && (c.prev.currentStep ?? 0) === cur;
  if (!reason) delete st.pauseStartedAt;
  else if (!samePause || st.pauseStartedAt === undefined) st.pauseStartedAt = c.nowIso;
  if (reason && !samePause) notify(c, "Paused", `${message} (${reason})`);

  const adapterHold = !reason && c.waiting?.kind === "Adapter";
  const probeHold = !reason && c.waiting?.kind === "Probe";
  const progressing = reason
    ? "RolloutPaused"
    : adapterHold
      ? ADAPTER_NOT_READY
      : probeHold
        ? PROBE_PENDING
        : c.waiting?.kind === "Analysis"
          ? "WaitingForAnalysis"
          : c.waiting?.kind === "Evidence"
            ? "WaitingForEvidence"
            : "RolloutProgressing";
  adapterEvents(c, adapterHold, message);
  const moving = !reason && !adapterHold && !probeHold;
  setCondition(c, ConditionTypes.Progressing, moving ? "True" : "False", progressing, message);
  setCondition(
    c,
    ConditionTypes.Paused,
    reason ? "True" : "False",
    reason ?? "NotPaused",
    reason ? message : "",
  );
  setCondition(c, ConditionTypes.Completed, "False", "InProgress", message);
}

/** A terminal phase reached in this call (earlier ones return before this point). */
function terminalConditions(c: Ctx) {
  const st = c.st;
  delete st.pauseStartedAt;
  const succeeded = st.phase === "Succeeded";
  if (succeeded) {
    st.message = `canary ${c.target.canary} receives 100%; stable ${c.target.stable} removed`;
  }
  const message = st.message ?? "";
  const reason = c.terminalReason ?? st.phase ?? "Finished";
  setCondition(c, ConditionTypes.Progressing, "False", reason, message);
  setCondition(c, ConditionTypes.Paused, "False", "NotPaused", "");
  setCondition(
    c,
    ConditionTypes.Completed,
    succeeded ? "True" : "False",
    succeeded ? "RolloutSucceeded" : "RolledBack",
    message,
  );
}

export function updateAnalysisCondition(c: Ctx) {
  const st = c.st;
  const runs: [string, GateVerdict | undefined][] = [];
  if (st.analysis)
    runs.push(["background analysis", runVerdict(st.analysis, c.backgroundRunStarted)]);
  if (st.stepAnalysis) {
    runs.push([
      `analysis steps[${st.stepAnalysis.stepIndex ?? "?"}]`,
      runVerdict(st.stepAnalysis, c.stepRunStarted),
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

export function findCondition(
  status: ModelRolloutStatus,
  type: string,
): RolloutCondition | undefined {
  return status.conditions?.find(x => x.type === type);
}

/** Kubernetes convention: lastTransitionTime changes only when status flips. */
export function setCondition(
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

export function describeTarget(t: RolloutTarget): string {
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
