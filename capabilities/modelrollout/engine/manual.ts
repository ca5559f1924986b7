// One-off actions from the rollouts.inference.dev/action annotation.
import {
  ACTION_ANNOTATION,
  Ctx,
  MANUAL_ACTIONS,
  ManualAction,
  event,
  isActive,
  steps,
} from "./context";
import { backgroundVerdict, startBackgroundRun } from "./gates";
import { notify } from "./notify";
import { advance, goToStep, resetProgress, rollback } from "./steps";

// --- manual actions -------------------------------------------------------------------------------

export interface PendingAction {
  /** The annotation value as given. */
  value: string;
  action?: ManualAction;
}

/** The annotation's action unless it is the one already handled (status.lastAction) and not yet removed. */
export function pendingManualAction(c: Ctx): PendingAction | undefined {
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

/** Records the outcome of an action in status.lastAction and asks to remove the annotation. */
type RecordAction = (result: "Applied" | "Ignored" | "Rejected", message: string) => void;

export function handleManualAction(c: Ctx, pending: PendingAction) {
  const record: RecordAction = (result, message) => {
    c.st.lastAction = {
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
  const phase = c.st.phase ?? "Pending";
  if (pending.action === undefined) {
    const message =
      `unknown action "${pending.value.slice(0, 63)}" in annotation ${ACTION_ANNOTATION} ` +
      `(use ${MANUAL_ACTIONS.join(", ")})`;
    record("Rejected", message);
    event(c, "Warning", "InvalidAction", message);
  } else if (pending.action === "retry") {
    if (phase !== "Failed" && phase !== "Aborted") {
      return ignore(`only a Failed or Aborted rollout can be retried (phase is ${phase})`);
    }
    record("Applied", "restarted from steps[0]");
    resetProgress(c);
    event(c, "Normal", "Retried", `retrying after ${phase}: restarting from steps[0]`);
  } else if (!isActive(c)) {
    ignore(`the rollout is already ${phase}`);
  } else if (pending.action === "abort") {
    record("Applied", "aborted: all traffic back on stable");
    c.st.abortedAt = c.nowIso;
    rollback(c, "Aborted", "RolloutAborted", `aborted by ${ACTION_ANNOTATION}=abort`);
  } else if (pending.action === "promote") {
    promote(c, record, ignore);
  } else {
    promoteFull(c, record);
  }
}

function stillPaused(c: Ctx): string {
  return c.spec.paused ? " (still paused by spec.paused)" : "";
}

/** Past the current pause or analysis step, or past an inconclusive background analysis. */
function promote(c: Ctx, record: RecordAction, ignore: (message: string) => void) {
  if (backgroundVerdict(c) === "Inconclusive") {
    startBackgroundRun(c, "background analysis was inconclusive; restarted after promote");
    const what = `continued past the inconclusive background analysis${stillPaused(c)}`;
    record("Applied", what);
    event(c, "Normal", "Promoted", what.replace("continued", "continuing"));
    notify(c, "Promoted", what);
    return;
  }
  const cur = c.st.currentStep ?? 0;
  const step = steps(c)[cur];
  if (
    !step ||
    c.st.stepStartedAt === undefined ||
    step.setWeight !== undefined ||
    step.setHeaderRoute
  ) {
    return ignore(`nothing to promote: no pause or analysis step is in progress`);
  }
  const what = `promoted past steps[${cur}] (${step.pause ? "pause" : "analysis"})${stillPaused(c)}`;
  advance(c);
  record("Applied", what);
  event(c, "Normal", "Promoted", what, cur);
  notify(c, "Promoted", what);
}

/** To the end of the steps (the evidence the background analysis owes still applies). */
function promoteFull(c: Ctx, record: RecordAction) {
  if (backgroundVerdict(c) === "Inconclusive") {
    startBackgroundRun(c, "background analysis was inconclusive; restarted after promote-full");
  }
  const from = c.st.currentStep ?? 0;
  goToStep(c, steps(c).length);
  record("Applied", `promoted from steps[${from}] to the end${stillPaused(c)}`);
  const message = `promoted from steps[${from}] to the end: canary goes to 100%${stillPaused(c)}`;
  event(c, "Normal", "Promoted", message);
  notify(c, "Promoted", message);
}
