// Which transitions the engine tells which notification (pure), and NotificationsReady.
import { describe, expect, it } from "@jest/globals";
import {
  type Action,
  type Observations,
  type ReconcileResult,
  needsNotificationCheck,
  reconcileRollout,
  subscribers,
} from "../engine";
import type { ModelRolloutSpec, ModelRolloutStatus, NotificationSpec, RolloutStep } from "../types";

const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const at = (seconds: number) => new Date(T0 + seconds * 1000);

type Notify = Extract<Action, { type: "notify" }>;

const HOOK: NotificationSpec = { name: "all", urlSecretRef: { name: "hook", key: "url" } };

function specOf(
  steps: RolloutStep[],
  notifications: NotificationSpec[] = [HOOK],
  extra: Partial<ModelRolloutSpec> = {},
): ModelRolloutSpec {
  return {
    adapters: { inferenceModel: "m", stable: "v1", canary: "v2" },
    steps,
    notifications,
    ...extra,
  };
}

const obsOf = (extra: Partial<Observations> = {}): Observations => ({
  generation: 1,
  targets: { ready: true },
  notificationProblems: {},
  ...extra,
});

const notifies = (r: ReconcileResult) => r.actions.filter((a): a is Notify => a.type === "notify");
const told = (r: ReconcileResult) =>
  notifies(r).map(n => [n.transition, n.step, n.canaryWeight, n.phase]);

/** Calls the engine, and checks that calling it again on its own output tells nothing. */
function run(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Observations,
  seconds: number,
): ReconcileResult {
  const result = reconcileRollout(spec, status, obs, at(seconds));
  expect(notifies(reconcileRollout(spec, result.status, obs, at(seconds)))).toEqual([]);
  return result;
}

describe("notifications from the step engine", () => {
  it("tells every transition of a promoted rollout, each with its own step and weight, once", () => {
    const spec = specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 50 }]);
    const first = run(spec, undefined, obsOf(), 0);
    expect(told(first)).toEqual([
      ["StepReached", 0, 10, "Progressing"],
      ["StepReached", 1, 10, "Progressing"],
      ["Paused", 1, 10, "Paused"],
    ]);
    expect(notifies(first).every(n => n.at === at(0).toISOString())).toBe(true);
    expect(notifies(first)[2].message).toMatch(/paused until promote.*PauseStep/);
    // The notify actions come after the traffic and the Events: they are sent after the status write.
    const types = first.actions.map(a => a.type);
    expect(types.lastIndexOf("setWeight")).toBeLessThan(types.indexOf("notify"));

    const promoted = run(spec, first.status, obsOf({ action: "promote" }), 5);
    expect(told(promoted)).toEqual([
      ["Promoted", 2, 10, "Paused"],
      ["StepReached", 2, 50, "Progressing"],
      ["Succeeded", 3, 100, "Succeeded"],
    ]);
    expect(notifies(promoted)[0].message).toBe("promoted past steps[1] (pause)");
    expect(notifies(promoted).every(n => n.notifications.join() === "all")).toBe(true);
  });

  it("tells Failed and RolledBack when a gate fails, RolledBack only after an abort", () => {
    const gate = {
      metrics: [{ name: "m", query: "vector(0)", successCondition: "result[0] < 1" }],
    };
    const spec = specOf([{ setWeight: 20 }, { analysis: gate }, { setWeight: 100 }], [HOOK], {
      prometheus: { address: "http://prometheus:9090" },
    });
    const first = run(spec, undefined, obsOf(), 0);
    const run0 = first.status.stepAnalysis!;
    const failedStatus: ModelRolloutStatus = {
      ...first.status,
      stepAnalysis: {
        ...run0,
        phase: "Failed",
        metrics: [
          {
            name: "m",
            phase: "Failed",
            count: 1,
            successful: 0,
            failed: 1,
            inconclusive: 0,
            error: 0,
            consecutiveErrors: 0,
            measurements: [],
          },
        ],
      },
    };
    const failed = reconcileRollout(spec, failedStatus, obsOf(), at(10));
    expect(told(failed)).toEqual([
      ["Failed", 1, 0, "Failed"],
      ["RolledBack", 1, 0, "Failed"],
    ]);
    expect(notifies(failed)[1].message).toMatch(/all traffic back on stable v1$/);

    const aborted = run(spec, first.status, obsOf({ action: "abort" }), 10);
    expect(told(aborted)).toEqual([["RolledBack", 1, 0, "Aborted"]]);
    expect(notifies(aborted)[0].message).toMatch(/aborted by rollouts.inference.dev\/action=abort/);
  });

  it("tells a notification only the transitions its `transitions` selects", () => {
    const only: NotificationSpec[] = [
      { ...HOOK, name: "ends", transitions: ["Succeeded", "RolledBack"] },
      { ...HOOK, name: "steps", transitions: ["StepReached"] },
    ];
    expect(subscribers(only, "Succeeded")).toEqual(["ends"]);
    expect(subscribers(only, "Paused")).toEqual([]);
    expect(subscribers([HOOK], "Paused")).toEqual(["all"]);
    const r = run(specOf([{ setWeight: 50 }], only), undefined, obsOf(), 0);
    expect(notifies(r).map(n => [n.transition, n.notifications])).toEqual([
      ["StepReached", ["steps"]],
      ["Succeeded", ["ends"]],
    ]);
    // No notifications in the spec: no notify action at all.
    expect(
      notifies(reconcileRollout(specOf([{ setWeight: 50 }], []), undefined, obsOf(), at(0))),
    ).toEqual([]);
  });

  it("tells Paused for spec.paused and not again while the pause lasts", () => {
    const spec = specOf([{ setWeight: 10 }, { pause: { duration: "1h" } }]);
    const first = run(spec, undefined, obsOf(), 0);
    expect(told(first).map(t => t[0])).toEqual(["StepReached", "StepReached", "Paused"]);
    const later = run(spec, first.status, obsOf(), 60);
    expect(notifies(later)).toEqual([]);
    const byUser = run({ ...spec, paused: true }, later.status, obsOf({ generation: 2 }), 70);
    expect(told(byUser)).toEqual([["Paused", 1, 10, "Paused"]]);
    expect(notifies(byUser)[0].message).toMatch(/PausedByUser/);
  });

  it("NotificationsReady names the unusable notification's Secret and the fix, with one Warning Event", () => {
    const spec = specOf([{ setWeight: 10 }, { pause: {} }]);
    const problem = {
      reason: "NotificationSecretNotLabelled",
      message:
        "Secret ns/hook is not labelled rollouts.inference.dev/notification-webhook=true ...",
    };
    const bad = run(spec, undefined, obsOf({ notificationProblems: { all: problem } }), 0);
    const cond = bad.status.conditions?.find(c => c.type === "NotificationsReady");
    expect(cond).toMatchObject({ status: "False", reason: "NotificationSecretNotLabelled" });
    expect(cond?.message).toBe(`notification all: ${problem.message}`);
    const warnings = bad.actions.filter(a => a.type === "event" && a.eventType === "Warning");
    expect(warnings).toHaveLength(1);
    // The rollout itself goes on.
    expect(bad.status.canaryWeight).toBe(10);
    // Same problem again: no new Event; fixed: True.
    const again = reconcileRollout(
      spec,
      bad.status,
      obsOf({ notificationProblems: { all: problem } }),
      at(5),
    );
    expect(again.actions.filter(a => a.type === "event")).toEqual([]);
    const fixed = reconcileRollout(spec, bad.status, obsOf(), at(6));
    expect(fixed.status.conditions?.find(c => c.type === "NotificationsReady")).toMatchObject({
      status: "True",
      reason: "WebhooksUsable",
    });
    // Not checked in a call: left as it was.
    const unchecked = reconcileRollout(
      spec,
      bad.status,
      obsOf({ notificationProblems: undefined }),
      at(7),
    );
    expect(unchecked.status.conditions?.find(c => c.type === "NotificationsReady")?.status).toBe(
      "False",
    );
  });

  it("reads the Secrets only while a transition can happen", () => {
    const spec = specOf([{ setWeight: 10 }]);
    const target = { kind: "InferenceModel" as const, name: "m", stable: "v1", canary: "v2" };
    expect(needsNotificationCheck(spec, undefined, {})).toBe(true);
    expect(needsNotificationCheck(specOf([{ setWeight: 10 }], []), undefined, {})).toBe(false);
    expect(needsNotificationCheck(spec, { phase: "Paused", target }, {})).toBe(true);
    expect(needsNotificationCheck(spec, { phase: "Succeeded", target }, {})).toBe(false);
    expect(needsNotificationCheck(spec, { phase: "Failed", target }, { action: "retry" })).toBe(
      true,
    );
    expect(
      needsNotificationCheck(spec, { phase: "Succeeded", target: { ...target, canary: "v0" } }, {}),
    ).toBe(true);
  });
});
