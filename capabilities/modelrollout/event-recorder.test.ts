import type { kind } from "kubernetes-fluent-client";
import { EventRecorder } from "./event-recorder";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";

const mro = {
  apiVersion: "rollouts.inference.dev/v1alpha1",
  kind: "ModelRollout",
  metadata: { name: "travel-helper", namespace: "default", uid: "u-1", resourceVersion: "42" },
} as unknown as ModelRollout;

const at = new Date("2026-11-27T10:00:00Z");
const ev = (reason: string) =>
  ({ type: "event", eventType: "Normal", reason, message: `${reason} happened` }) as const;

describe("EventRecorder", () => {
  it("posts every Event of a reconcile in the background, stamped with the transition's time", async () => {
    const posted: kind.CoreEvent[] = [];
    let release!: () => void;
    const gate = new Promise<void>(resolve => (release = resolve));
    const recorder = new EventRecorder({
      post: async e => {
        await gate;
        posted.push(e);
      },
    });
    recorder.record(mro, [ev("WeightSet"), ev("PauseStarted")], at);
    // record() returned before any post finished: the reconcile does not wait for Events.
    expect(posted).toHaveLength(0);
    release();
    await recorder.flushed();
    expect(posted.map(e => e.reason).sort()).toEqual(["PauseStarted", "WeightSet"]);
    for (const e of posted) {
      expect(e.involvedObject).toMatchObject({
        kind: "ModelRollout",
        name: "travel-helper",
        namespace: "default",
        uid: "u-1",
      });
      expect(e.metadata?.namespace).toBe("default");
      expect(e.metadata?.name).toMatch(/^travel-helper\./);
      expect(e.lastTimestamp).toEqual(at);
      expect(e.type).toBe("Normal");
    }
    expect(new Set(posted.map(e => e.metadata?.name)).size).toBe(2);
  });

  it("survives a failing post and goes on with the next", async () => {
    const posted: string[] = [];
    const recorder = new EventRecorder({
      post: async e => {
        if (e.reason === "Bad") throw { status: 403, data: { message: "forbidden" } };
        posted.push(e.reason!);
      },
    });
    recorder.record(mro, [ev("Bad"), ev("Good")], at);
    await recorder.flushed();
    expect(posted).toEqual(["Good"]);
  });

  it("waits while reconciles are queued, then posts", async () => {
    const posted: string[] = [];
    let idle!: () => void;
    const reconcilesIdle = new Promise<void>(resolve => (idle = resolve));
    const recorder = new EventRecorder({
      post: async e => void posted.push(e.reason!),
      reconcilesIdle: () => reconcilesIdle,
    });
    recorder.record(mro, [ev("WeightSet")], at);
    // Let every queued microtask and I/O callback run: still waiting for the reconciles.
    await new Promise(resolve => setImmediate(resolve));
    expect(posted).toEqual([]);
    idle();
    await recorder.flushed();
    expect(posted).toEqual(["WeightSet"]);
  });
});
