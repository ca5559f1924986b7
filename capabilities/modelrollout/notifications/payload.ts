// The bodies a notification webhook receives (pure). `json`: the transition as an object, with an
// `id` that stays the same for every attempt to send it (receivers deduplicate on it); `slack`:
// Slack's incoming-webhook shape {text, blocks}, which Mattermost and Rocket.Chat also take.
import type { Action } from "../engine";
import type { RolloutTarget } from "../types";

export type NotifyAction = Extract<Action, { type: "notify" }>;

export interface NotifiedRollout {
  namespace: string;
  name: string;
  uid: string;
  /** Number of spec.steps. */
  steps: number;
  target?: RolloutTarget;
}

export interface JsonPayload {
  id: string;
  notification: string;
  transition: NotifyAction["transition"];
  rollout: { namespace: string; name: string; uid: string };
  phase: string;
  step: number;
  steps: number;
  canaryWeight: number;
  stableWeight: number;
  message: string;
  time: string;
  target?: { kind: string; name: string; stable: string; canary: string; group?: string };
}

export interface SlackPayload {
  text: string;
  blocks: Array<
    | { type: "section"; text: { type: "mrkdwn"; text: string } }
    | { type: "context"; elements: Array<{ type: "mrkdwn"; text: string }> }
  >;
}

/**
 * The key of one transition of one rollout: the rollout's uid, the transition, the step index and
 * the transition's time as stored in status. Equal for every retry of it.
 */
export function notificationId(rollout: NotifiedRollout, action: NotifyAction): string {
  return `${rollout.uid}/${action.transition}/${action.step}/${action.at}`;
}

export function jsonPayload(
  rollout: NotifiedRollout,
  action: NotifyAction,
  notification: string,
): JsonPayload {
  const t = rollout.target;
  return {
    id: notificationId(rollout, action),
    notification,
    transition: action.transition,
    rollout: { namespace: rollout.namespace, name: rollout.name, uid: rollout.uid },
    phase: action.phase,
    step: action.step,
    steps: rollout.steps,
    canaryWeight: action.canaryWeight,
    stableWeight: 100 - action.canaryWeight,
    message: action.message,
    time: action.at,
    ...(t
      ? {
          target: {
            kind: t.kind,
            name: t.name,
            stable: t.stable,
            canary: t.canary,
            ...(t.group ? { group: t.group } : {}),
          },
        }
      : {}),
  };
}

const EMOJI: Record<NotifyAction["transition"], string> = {
  StepReached: ":arrow_forward:",
  Paused: ":double_vertical_bar:",
  Promoted: ":fast_forward:",
  Failed: ":x:",
  RolledBack: ":leftwards_arrow_with_hook:",
  Succeeded: ":white_check_mark:",
};

/** Slack mrkdwn treats &, < and > as control characters: escape them in user-given text. */
function mrkdwn(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function slackPayload(rollout: NotifiedRollout, action: NotifyAction): SlackPayload {
  const who = mrkdwn(`${rollout.namespace}/${rollout.name}`);
  const text = `${EMOJI[action.transition]} ModelRollout ${who}: ${action.transition} - ${mrkdwn(action.message)}`;
  const stepText =
    action.step < rollout.steps
      ? `steps[${action.step}] of ${rollout.steps}`
      : `after the last of ${rollout.steps} steps`;
  const target = rollout.target
    ? ` · ${mrkdwn(`${rollout.target.kind} ${rollout.target.name}`)}: canary ${mrkdwn(rollout.target.canary)}, stable ${mrkdwn(rollout.target.stable)}`
    : "";
  return {
    text,
    blocks: [
      { type: "section", text: { type: "mrkdwn", text } },
      {
        type: "context",
        elements: [
          {
            type: "mrkdwn",
            text: `phase ${action.phase} · ${stepText} · canary ${action.canaryWeight}%${target} · ${action.at}`,
          },
        ],
      },
    ],
  };
}

/** The body for a notification of `format` (json unless slack). */
export function payloadFor(
  format: string | undefined,
  rollout: NotifiedRollout,
  action: NotifyAction,
  notification: string,
): JsonPayload | SlackPayload {
  return format === "slack"
    ? slackPayload(rollout, action)
    : jsonPayload(rollout, action, notification);
}
