// The ModelRollout step engine: a pure function from (spec, status, observations, now) to the next
// status plus the actions the reconciler must perform. No I/O, no clock, no randomness.
//
// Protocol for the reconciler (the I/O shell around this function):
//   1. Build Observations (targets found? conflict? gate verdicts, action annotation; before the
//      first weight, whether Prometheus accepts every query: needsQueryCheck).
//   2. result = reconcileRollout(spec, status, observations, now)
//   3. Apply the traffic actions (ensureCanaryPool, setWeight, finalize, deletePool) in order. If
//      one fails, stop: write no status, no events, retry later with backoff (a failure that
//      throws is reported by reconcileFailed: Ready=False ReconcileError and a Warning Event).
//   4. Queue the events. They are posted in the background and best-effort, as client-go's
//      recorder does: a crash right after the status write can lose a step's Event (status,
//      which holds the progress, is never lost); a crash before it can repeat one.
//   5. Write the status if it changed (statusMergePatch gives the merge patch, null = no write),
//      then hand the notify actions to the background delivery (notifications/: sent only once
//      their transition is stored, never awaited), then remove the action annotation if asked
//      (clearActionAnnotation).
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
//   - The engine sees gates with their AnalysisTemplates merged in (analysis-templates.ts), so a
//     template edited while its gate runs restarts that gate like an edit of its inline metrics.

export {
  ACTION_ANNOTATION,
  ConditionTypes,
  MANUAL_ACTIONS,
  NOTIFICATION_TRANSITIONS,
} from "./engine/context";
export type {
  Action,
  AdapterCall,
  AdapterEndpoint,
  AdapterReadinessObservation,
  GateField,
  GateVerdict,
  ManualAction,
  NotificationTransition,
  Observations,
  ReconcileResult,
} from "./engine/context";
export { readActionAnnotation, statusMergePatch, targetOf, validateSpec } from "./engine/spec";
export { needsQueryCheck, reconcileFailed, reconcileRollout } from "./engine/reconcile";
export { queriesDue } from "./engine/gates";
export { needsNotificationCheck, subscribers } from "./engine/notify";
export { needsAdapterCheck, probesWaitForAdapter } from "./engine/adapters";
export { refusedWrite } from "./engine/refusal";
