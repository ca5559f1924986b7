import { describe, expect, it } from "@jest/globals";
import {
  jsonPayload,
  notificationId,
  payloadFor,
  slackPayload,
  type NotifyAction,
} from "./payload";

const rollout = {
  namespace: "team-a",
  name: "travel-helper",
  uid: "0b7c-uid",
  steps: 3,
  target: { kind: "InferenceModel" as const, name: "loramodel", stable: "v1", canary: "v2" },
};
const action: NotifyAction = {
  type: "notify",
  transition: "StepReached",
  notifications: ["ops"],
  phase: "Progressing",
  step: 1,
  canaryWeight: 40,
  message: "steps[1] of 3: canary v2 40%, stable v1 60%",
  at: "2026-12-07T14:00:00.000Z",
};

describe("notification payloads", () => {
  it("json: the transition with the rollout, phase, step, weights, message, time and target", () => {
    expect(jsonPayload(rollout, action, "ops")).toEqual({
      id: "0b7c-uid/StepReached/1/2026-12-07T14:00:00.000Z",
      notification: "ops",
      transition: "StepReached",
      rollout: { namespace: "team-a", name: "travel-helper", uid: "0b7c-uid" },
      phase: "Progressing",
      step: 1,
      steps: 3,
      canaryWeight: 40,
      stableWeight: 60,
      message: "steps[1] of 3: canary v2 40%, stable v1 60%",
      time: "2026-12-07T14:00:00.000Z",
      target: { kind: "InferenceModel", name: "loramodel", stable: "v1", canary: "v2" },
    });
  });

  it("the id is the same for the same transition and differs for another one", () => {
    expect(notificationId(rollout, action)).toBe(notificationId(rollout, { ...action }));
    expect(notificationId(rollout, { ...action, transition: "Paused" })).not.toBe(
      notificationId(rollout, action),
    );
    expect(notificationId({ ...rollout, uid: "other" }, action)).not.toBe(
      notificationId(rollout, action),
    );
  });

  it("slack: {text, blocks} of Slack's incoming webhooks, user text escaped for mrkdwn", () => {
    const body = slackPayload(
      { ...rollout, name: "a<b>&c" },
      { ...action, transition: "Failed", phase: "Failed", message: "gate <m> failed & more" },
    );
    expect(body.text).toBe(
      ":x: ModelRollout team-a/a&lt;b&gt;&amp;c: Failed - gate &lt;m&gt; failed &amp; more",
    );
    expect(body.blocks).toEqual([
      { type: "section", text: { type: "mrkdwn", text: body.text } },
      {
        type: "context",
        elements: [
          {
            type: "mrkdwn",
            text:
              "phase Failed · steps[1] of 3 · canary 40% · InferenceModel loramodel: canary v2, " +
              "stable v1 · 2026-12-07T14:00:00.000Z",
          },
        ],
      },
    ]);
    const done = slackPayload(rollout, { ...action, transition: "Succeeded", step: 3 });
    expect(done.blocks[1]).toMatchObject({
      elements: [{ text: expect.stringContaining("after the last of 3 steps") }],
    });
  });

  it("payloadFor picks the format (json unless slack)", () => {
    expect(payloadFor("slack", rollout, action, "ops")).toHaveProperty("blocks");
    expect(payloadFor("json", rollout, action, "ops")).toHaveProperty("id");
    expect(payloadFor(undefined, rollout, action, "ops")).toHaveProperty("transition");
  });
});
