// Notifications (spec.notifications): which transitions are told to which webhook, and the
// NotificationsReady condition. Pure: the reconciler resolves the Secrets and sends after the
// status write (notifications/delivery.ts).
import { findCondition, setCondition } from "./conditions";
import { jsonEqual } from "../fingerprint";
import {
  ConditionTypes,
  NOTIFICATION_TRANSITIONS,
  type Ctx,
  type NotificationTransition,
  type Observations,
  event,
  isTerminal,
} from "./context";
import { targetOf } from "./spec";
import type { ModelRolloutSpec, ModelRolloutStatus, NotificationSpec } from "../types";

/** Names of the notifications whose `transitions` select `transition` (none: every one). */
export function subscribers(
  notifications: readonly NotificationSpec[] | undefined,
  transition: NotificationTransition,
): string[] {
  return (notifications ?? [])
    .filter(n => (n.transitions ?? NOTIFICATION_TRANSITIONS).includes(transition))
    .map(n => n.name);
}

/**
 * A transition decided in this call. Phase, step and weight are taken now, so that the transitions
 * of one call (enter setWeight, then a pause) each carry their own moment.
 */
export function notify(
  c: Ctx,
  transition: NotificationTransition,
  message: string,
  phase: string = c.st.phase ?? "Progressing",
) {
  const notifications = subscribers(c.spec.notifications, transition);
  if (!notifications.length) return;
  c.notifications.push({
    type: "notify",
    transition,
    notifications,
    phase,
    step: c.st.currentStep ?? 0,
    canaryWeight: c.st.canaryWeight ?? 0,
    message,
    at: c.nowIso,
  });
}

/**
 * NotificationsReady from what the reconciler found of the notifications' Secrets and URLs: False
 * naming every unusable one (with a Warning Event when that changes), True when all are usable;
 * removed when the spec has none. Unchecked in this call: left as it was.
 */
export function notificationCondition(c: Ctx) {
  const specified = c.spec.notifications ?? [];
  if (!specified.length) {
    if (c.st.conditions?.some(x => x.type === ConditionTypes.NotificationsReady))
      c.st.conditions = c.st.conditions.filter(x => x.type !== ConditionTypes.NotificationsReady);
    return;
  }
  const problems = c.obs.notificationProblems;
  if (!problems) return;
  const bad = specified
    .filter(n => problems[n.name])
    .map(n => ({ name: n.name, ...problems[n.name] }));
  if (!bad.length) {
    const names = specified.map(n => n.name).join(", ");
    setCondition(c, ConditionTypes.NotificationsReady, "True", "WebhooksUsable", names);
    return;
  }
  const reason = bad[0].reason;
  const message = bad.map(b => `notification ${b.name}: ${b.message}`).join("; ");
  const before = findCondition(c.prev, ConditionTypes.NotificationsReady);
  setCondition(c, ConditionTypes.NotificationsReady, "False", reason, message);
  if (before?.status !== "False" || before.message !== message) {
    event(c, "Warning", reason, `${message} (nothing is sent to it; the rollout goes on)`);
  }
}

/**
 * Whether the reconciler must read the notifications' Secrets before this call: when a transition
 * can happen (an active rollout, a new target, an action for a finished one). A finished rollout
 * that nothing asks to change costs no Secret read.
 */
export function needsNotificationCheck(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Pick<Observations, "action" | "invalidAction">,
): boolean {
  if (!spec.notifications?.length) return false;
  if (!isTerminal(status?.phase)) return true;
  if (obs.action !== undefined || obs.invalidAction !== undefined) return true;
  const target = targetOf(spec);
  return !!target && !jsonEqual(status?.target, target);
}
