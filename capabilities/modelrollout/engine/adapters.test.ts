// Adapter readiness, the pure decisions: hold before a weight rise while a Ready pod lacks the
// canary adapter (or cannot be asked), record-then-load, unload after a rollback.
import { describe, expect, it } from "@jest/globals";
import fc from "fast-check";
import {
  type Action,
  type AdapterEndpoint,
  type Observations,
  type ReconcileResult,
  needsAdapterCheck,
  reconcileRollout,
} from "../engine";
import type { ModelRolloutSpec, ModelRolloutStatus, RolloutStep } from "../types";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const at = (s: number) => new Date(T0 + s * 1000);

const STEPS: RolloutStep[] = [{ setWeight: 10 }, { pause: {} }, { setWeight: 50 }];

function spec(readiness: NonNullable<ModelRolloutSpec["adapters"]>["readiness"]): ModelRolloutSpec {
  return {
    adapters: { inferenceModel: "loramodel", stable: "a-v1", canary: "a-v2", readiness },
    steps: STEPS,
  };
}

const ep = (key: string, serving?: boolean, error?: string): AdapterEndpoint => ({
  key,
  url: `http://127.0.0.9:8000/${key}`,
  ...(serving !== undefined ? { serving } : {}),
  ...(error ? { error } : {}),
});

function obs(endpoints: AdapterEndpoint[] | undefined, extra: Partial<Observations> = {}) {
  return {
    generation: 1,
    targets: { ready: true as const },
    ...(endpoints ? { adapterReadiness: { pool: "pool-a", endpoints } } : {}),
    ...extra,
  };
}

const weights = (r: ReconcileResult) =>
  r.actions.flatMap(a => (a.type === "setWeight" ? [a.canaryWeight] : []));
const ofType = <T extends Action["type"]>(r: ReconcileResult, type: T) =>
  r.actions.filter((a): a is Extract<Action, { type: T }> => a.type === type);
const progressing = (s: ModelRolloutStatus) => s.conditions?.find(c => c.type === "Progressing");
const events = (r: ReconcileResult) => ofType(r, "event").map(e => `${e.eventType} ${e.reason}`);

describe("adapter readiness: the hold", () => {
  it("holds the first weight while a Ready pod lacks the canary adapter, naming the pod", () => {
    const r = reconcileRollout(
      spec({}),
      undefined,
      obs([ep("pod-a", true), ep("pod-b", false)]),
      at(0),
    );
    expect(weights(r)).toEqual([]);
    expect(r.status.canaryWeight).toBeUndefined();
    expect(r.status.phase).toBe("Progressing");
    const cond = progressing(r.status);
    expect(cond).toMatchObject({ status: "False", reason: "AdapterNotReady" });
    expect(cond?.message).toMatch(
      /a-v2 is not served by 1 of 2 Ready pods of InferencePool pool-a: pod-b \(not in \/v1\/models\)/,
    );
    expect(cond?.message).toMatch(/set spec\.adapters\.readiness\.load/);
    expect(r.status.message).toBe(cond?.message);
    expect(events(r)).toContain("Warning AdapterNotReady");
    expect(r.requeueAfterMs).toBeGreaterThanOrEqual(2000);
    expect(ofType(r, "loadAdapter")).toEqual([]);
  });

  it("an unreachable pod holds too, and is never a reason to proceed", () => {
    const r = reconcileRollout(
      spec({}),
      undefined,
      obs([ep("pod-a", true), ep("pod-b", undefined, "unreachable: no answer within 2000 ms")]),
      at(0),
    );
    expect(weights(r)).toEqual([]);
    expect(progressing(r.status)?.message).toMatch(
      /pod-b \(unreachable: no answer within 2000 ms\)/,
    );
  });

  it("holds without an observation, with no Ready pod, and when the pool cannot be read", () => {
    for (const o of [
      obs(undefined),
      obs([]),
      obs(undefined, {
        adapterReadiness: { pool: "pool-a", problem: "InferencePool x not found", endpoints: [] },
      }),
    ]) {
      const r = reconcileRollout(spec({}), undefined, o, at(0));
      expect(weights(r)).toEqual([]);
      expect(progressing(r.status)?.reason).toBe("AdapterNotReady");
    }
  });

  it("names at most five pods and counts the rest", () => {
    const pods = Array.from({ length: 8 }, (_, i) => ep(`pod-${i}`, false));
    const r = reconcileRollout(spec({}), undefined, obs(pods), at(0));
    expect(progressing(r.status)?.message).toMatch(/pod-4 \(not in \/v1\/models\) and 3 more/);
    expect(progressing(r.status)?.message).not.toMatch(/pod-5/);
  });

  it("proceeds when every Ready pod serves it, and says so after a hold", () => {
    const held = reconcileRollout(
      spec({}),
      undefined,
      obs([ep("pod-a", true), ep("pod-b", false)]),
      at(0),
    );
    const r = reconcileRollout(
      spec({}),
      held.status,
      obs([ep("pod-a", true), ep("pod-b", true)]),
      at(5),
    );
    expect(weights(r)).toEqual([10]);
    expect(r.status.canaryWeight).toBe(10);
    expect(events(r)).toContain("Normal AdapterReady");
    // Paused at steps[1] (pause until promote): not an adapter hold.
    expect(progressing(r.status)?.reason).toBe("RolloutPaused");
  });

  it("says so also when the rollout completes in the call that ends the hold", () => {
    const s = { ...spec({}), steps: [{ setWeight: 30 }, { setWeight: 100 }] };
    const held = reconcileRollout(s, undefined, obs([ep("pod-b", false)]), at(0));
    const done = reconcileRollout(s, held.status, obs([ep("pod-b", true)]), at(5));
    expect(done.status.phase).toBe("Succeeded");
    expect(events(done)).toEqual(
      expect.arrayContaining(["Normal AdapterReady", "Normal Succeeded"]),
    );
  });

  it("the same hold again is one Event, not one per reconcile; other pods are a new Event", () => {
    const o = obs([ep("pod-a", true), ep("pod-b", false)]);
    const first = reconcileRollout(spec({}), undefined, o, at(0));
    const again = reconcileRollout(spec({}), first.status, o, at(3));
    expect(events(again)).not.toContain("Warning AdapterNotReady");
    const other = reconcileRollout(
      spec({}),
      again.status,
      obs([ep("pod-a", false), ep("pod-b", true)]),
      at(6),
    );
    expect(events(other)).toContain("Warning AdapterNotReady");
    expect(weights(other)).toEqual([]);
  });

  it("re-checks sooner at first and at most every 30 s while held", () => {
    const o = obs([ep("pod-b", false)]);
    const first = reconcileRollout(spec({}), undefined, o, at(0));
    expect(first.requeueAfterMs).toBe(2000);
    const later = reconcileRollout(spec({}), first.status, o, at(600));
    expect(later.requeueAfterMs).toBe(30_000);
  });

  it("checks every later rise (a pod that came later), never a step that keeps or lowers the weight", () => {
    const steps: RolloutStep[] = [
      { setWeight: 10 },
      { setWeight: 5 },
      { pause: {} },
      { setWeight: 50 },
    ];
    const s = { ...spec({}), steps };
    const ok = obs([ep("pod-a", true)]);
    const at10 = reconcileRollout(s, undefined, ok, at(0));
    // 10 -> 5 needs no check; it stops at the pause.
    expect(at10.status.canaryWeight).toBe(5);
    const scaled = obs([ep("pod-a", true), ep("pod-new", false)]);
    const promoted = reconcileRollout(s, at10.status, { ...scaled, action: "promote" }, at(10));
    expect(promoted.status.canaryWeight).toBe(5);
    expect(progressing(promoted.status)?.message).toMatch(/pod-new/);
    const after = reconcileRollout(s, promoted.status, ok, at(20));
    // 50 is the last step: the rollout completes in the same call.
    expect(weights(after)).toEqual([50, 100]);
    expect(after.status.phase).toBe("Succeeded");
  });

  it("completing to 100 % is a rise too", () => {
    const s = { ...spec({}), steps: [{ setWeight: 50 }] };
    const first = reconcileRollout(s, undefined, obs([ep("pod-a", true)]), at(0));
    expect(first.status.phase).toBe("Succeeded");
    const s2 = { ...spec({}), steps: [{ setWeight: 50 }, { pause: { duration: "1s" } }] };
    const paused = reconcileRollout(s2, undefined, obs([ep("pod-a", true)]), at(0));
    const held = reconcileRollout(s2, paused.status, obs([ep("pod-a", false)]), at(5));
    expect(held.status.phase).toBe("Progressing");
    expect(held.status.canaryWeight).toBe(50);
    expect(weights(held)).toEqual([50]);
  });

  it("without spec.adapters.readiness nothing is checked", () => {
    const s: ModelRolloutSpec = {
      adapters: { inferenceModel: "m", stable: "a", canary: "b" },
      steps: STEPS,
    };
    expect(needsAdapterCheck(s, undefined, {})).toBe(false);
    expect(weights(reconcileRollout(s, undefined, obs(undefined), at(0)))).toEqual([10]);
  });

  it("asks the pods while active, for a new target and a retry; not once finished", () => {
    const s = spec({});
    expect(needsAdapterCheck(s, undefined, {})).toBe(true);
    const started = reconcileRollout(s, undefined, obs([ep("p", true)]), at(0)).status;
    expect(needsAdapterCheck(s, started, {})).toBe(true);
    const failed = { ...started, phase: "Failed" as const };
    expect(needsAdapterCheck(s, failed, {})).toBe(false);
    expect(needsAdapterCheck(s, failed, { action: "retry" })).toBe(true);
    expect(needsAdapterCheck(s, { ...started, phase: "Succeeded" }, { action: "retry" })).toBe(
      false,
    );
  });
});

describe("adapter readiness: load and unload", () => {
  const LOAD = { load: { path: "/adapters/a-v2" } };

  it("records a pod that lacks it first, loads it in the next call, then proceeds", () => {
    const lacking = obs([
      ep("pod-a", true),
      ep("pod-b", false),
      ep("pod-c", undefined, "unreachable"),
    ]);
    const first = reconcileRollout(spec(LOAD), undefined, lacking, at(0));
    expect(ofType(first, "loadAdapter")).toEqual([]);
    expect(first.status.adapterReadiness?.loadedOn).toEqual(["pod-b"]);
    expect(events(first)).toContain("Normal AdapterLoading");
    expect(progressing(first.status)?.message).toMatch(/the operator loads it there/);
    expect(progressing(first.status)?.message).toMatch(/unreachable pods cannot be loaded/);

    const second = reconcileRollout(spec(LOAD), first.status, lacking, at(1));
    expect(ofType(second, "loadAdapter")).toEqual([
      {
        type: "loadAdapter",
        adapter: "a-v2",
        path: "/adapters/a-v2",
        endpoints: [{ key: "pod-b", url: "http://127.0.0.9:8000/pod-b" }],
      },
    ]);
    expect(second.actions[0].type).toBe("loadAdapter");
    expect(weights(second)).toEqual([]);
    expect(events(second)).not.toContain("Normal AdapterLoading");

    const served = obs([ep("pod-a", true), ep("pod-b", true), ep("pod-c", true)]);
    const third = reconcileRollout(spec(LOAD), second.status, served, at(2));
    expect(ofType(third, "loadAdapter")).toEqual([]);
    expect(weights(third)).toEqual([10]);
    expect(third.status.adapterReadiness?.loadedOn).toEqual(["pod-b"]);
  });

  it("after a restart, a recorded pod that still lacks it is loaded again; a present one is not", () => {
    const status: ModelRolloutStatus = reconcileRollout(
      spec(LOAD),
      undefined,
      obs([ep("pod-b", false)]),
      at(0),
    ).status;
    const again = reconcileRollout(spec(LOAD), status, obs([ep("pod-b", false)]), at(30));
    expect(ofType(again, "loadAdapter")).toHaveLength(1);
    const present = reconcileRollout(spec(LOAD), status, obs([ep("pod-b", true)]), at(30));
    expect(ofType(present, "loadAdapter")).toEqual([]);
  });

  it("unloads from the recorded pods after an abort, after the traffic went back", () => {
    const o = obs([ep("pod-a", true), ep("pod-b", false)]);
    const s1 = reconcileRollout(spec(LOAD), undefined, o, at(0)).status;
    const s2 = reconcileRollout(spec(LOAD), s1, o, at(1)).status;
    const served = obs([ep("pod-a", true), ep("pod-b", true)]);
    const s3 = reconcileRollout(spec(LOAD), s2, served, at(2)).status;
    expect(s3.canaryWeight).toBe(10);
    const aborted = reconcileRollout(spec(LOAD), s3, { ...served, action: "abort" }, at(3));
    expect(aborted.status.phase).toBe("Aborted");
    const types = aborted.actions.map(a => a.type);
    expect(types.indexOf("unloadAdapter")).toBeGreaterThan(types.indexOf("finalize"));
    expect(ofType(aborted, "unloadAdapter")).toEqual([
      {
        type: "unloadAdapter",
        adapter: "a-v2",
        endpoints: [{ key: "pod-b", url: "http://127.0.0.9:8000/pod-b" }],
      },
    ]);
    expect(events(aborted)).toContain("Normal AdapterUnloaded");
    // Recorded until a pod is seen without it: a failed unload is tried again.
    expect(aborted.status.adapterReadiness?.loadedOn).toEqual(["pod-b"]);
    expect(aborted.requeueAfterMs).toBeDefined();
    expect(needsAdapterCheck(spec(LOAD), aborted.status, {})).toBe(true);
    const failed = reconcileRollout(spec(LOAD), aborted.status, served, at(33));
    expect(ofType(failed, "unloadAdapter")[0]?.endpoints.map(e => e.key)).toEqual(["pod-b"]);
    const gone = obs([ep("pod-a", true), ep("pod-b", false)]);
    const later = reconcileRollout(spec(LOAD), failed.status, gone, at(63));
    expect(ofType(later, "unloadAdapter")).toEqual([]);
    expect(later.status.adapterReadiness?.loadedOn).toBeUndefined();
    expect(needsAdapterCheck(spec(LOAD), later.status, {})).toBe(false);
  });

  it("keeps the adapter with unloadOnRollback: false, and never unloads after a success", () => {
    const keep = { load: { path: "/adapters/a-v2", unloadOnRollback: false } };
    const status: ModelRolloutStatus = {
      ...reconcileRollout(spec(keep), undefined, obs([ep("pod-b", true)]), at(0)).status,
      adapterReadiness: { loadedOn: ["pod-b"] },
    };
    const aborted = reconcileRollout(
      spec(keep),
      status,
      { ...obs([ep("pod-b", true)]), action: "abort" },
      at(1),
    );
    expect(aborted.status.phase).toBe("Aborted");
    expect(ofType(aborted, "unloadAdapter")).toEqual([]);
    const done = reconcileRollout(
      spec(LOAD),
      { ...status, currentStep: 2 },
      { ...obs([ep("pod-b", true)]), action: "promote-full" },
      at(1),
    );
    expect(done.status.phase).toBe("Succeeded");
    expect(ofType(done, "unloadAdapter")).toEqual([]);
  });

  it("an unreachable recorded pod stays recorded and is unloaded once it answers; a gone one is dropped", () => {
    const status: ModelRolloutStatus = {
      ...reconcileRollout(spec(LOAD), undefined, obs([ep("pod-b", true)]), at(0)).status,
      adapterReadiness: { loadedOn: ["pod-b", "pod-gone"] },
    };
    const aborted = reconcileRollout(
      spec(LOAD),
      status,
      { ...obs([ep("pod-b", undefined, "unreachable")]), action: "abort" },
      at(1),
    );
    expect(ofType(aborted, "unloadAdapter")).toEqual([]);
    expect(aborted.status.adapterReadiness?.loadedOn).toEqual(["pod-b"]);
    const back = reconcileRollout(spec(LOAD), aborted.status, obs([ep("pod-b", true)]), at(31));
    expect(ofType(back, "unloadAdapter")[0]?.endpoints.map(e => e.key)).toEqual(["pod-b"]);
    // The pool cannot be read: nothing is dropped on that account.
    const unread = reconcileRollout(
      spec(LOAD),
      aborted.status,
      obs(undefined, { adapterReadiness: { pool: "pool-a", problem: "no pool", endpoints: [] } }),
      at(61),
    );
    expect(unread.status.adapterReadiness?.loadedOn).toEqual(["pod-b"]);
  });

  it("gives up the unload 10 min after the rollback, naming the pods in a Warning", () => {
    const status: ModelRolloutStatus = {
      ...reconcileRollout(spec(LOAD), undefined, obs([ep("pod-b", true)]), at(0)).status,
      adapterReadiness: { loadedOn: ["pod-b"] },
    };
    const down = obs([ep("pod-b", undefined, "timeout")]);
    const aborted = reconcileRollout(spec(LOAD), status, { ...down, action: "abort" }, at(1));
    const still = reconcileRollout(spec(LOAD), aborted.status, down, at(1 + 599));
    expect(still.status.adapterReadiness?.loadedOn).toEqual(["pod-b"]);
    expect(events(still)).not.toContain("Warning AdapterUnloadGaveUp");
    const over = reconcileRollout(spec(LOAD), still.status, down, at(1 + 601));
    expect(over.status.adapterReadiness?.loadedOn).toBeUndefined();
    const warning = ofType(over, "event").find(e => e.reason === "AdapterUnloadGaveUp");
    expect(warning?.eventType).toBe("Warning");
    expect(warning?.message).toMatch(/a-v2 may still be loaded on pod-b/);
    expect(over.requeueAfterMs).toBeUndefined();
  });

  it("drops recorded pods that left the pool's Ready pods while active", () => {
    const status: ModelRolloutStatus = {
      ...reconcileRollout(spec(LOAD), undefined, obs([ep("pod-b", true)]), at(0)).status,
      adapterReadiness: { loadedOn: ["pod-b", "pod-old"] },
    };
    const r = reconcileRollout(spec(LOAD), status, obs([ep("pod-b", true)]), at(1));
    expect(r.status.adapterReadiness?.loadedOn).toEqual(["pod-b"]);
  });

  describe("a new target", () => {
    const recorded = (loadedOn: string[], extra: Partial<ModelRolloutStatus> = {}) => ({
      ...reconcileRollout(spec(LOAD), undefined, obs([ep("pod-b", true)]), at(0)).status,
      adapterReadiness: { loadedOn },
      ...extra,
    });
    const withCanary = (canary: string, stable = "a-v1") => ({
      ...spec(LOAD),
      adapters: { ...spec(LOAD).adapters!, canary, stable },
    });

    it("unloads the old canary adapter from its recorded pods, names the unreachable ones, forgets the record", () => {
      const o = obs([ep("pod-b", false), ep("pod-c", undefined, "timeout")]);
      const r = reconcileRollout(withCanary("a-v3"), recorded(["pod-b", "pod-c"]), o, at(1));
      expect(ofType(r, "unloadAdapter")).toEqual([
        {
          type: "unloadAdapter",
          adapter: "a-v2",
          endpoints: [{ key: "pod-b", url: "http://127.0.0.9:8000/pod-b" }],
        },
      ]);
      const warning = ofType(r, "event").find(e => e.reason === "AdapterUnloadGaveUp");
      expect(warning?.message).toMatch(/a-v2 may still be loaded on pod-c/);
      expect(r.status.adapterReadiness?.loadedOn).not.toContain("pod-c");
    });

    it("never unloads an old canary that succeeded, that is the new stable, or with unloadOnRollback: false", () => {
      const o = obs([ep("pod-b", true)]);
      const done = recorded(["pod-b"], { phase: "Succeeded" });
      expect(ofType(reconcileRollout(withCanary("a-v3"), done, o, at(1)), "unloadAdapter")).toEqual(
        [],
      );
      const promoted = reconcileRollout(withCanary("a-v3", "a-v2"), recorded(["pod-b"]), o, at(1));
      expect(ofType(promoted, "unloadAdapter")).toEqual([]);
      const keep = withCanary("a-v3");
      keep.adapters.readiness = { load: { path: "/a", unloadOnRollback: false } };
      expect(
        ofType(reconcileRollout(keep, recorded(["pod-b"]), o, at(1)), "unloadAdapter"),
      ).toEqual([]);
    });

    it("also when the new target cannot be used yet (released)", () => {
      const o = obs(undefined, {
        targets: { ready: false, reason: "TargetNotFound", message: "x" },
      });
      const r = reconcileRollout(withCanary("a-v3"), recorded(["pod-b"]), o as Observations, at(1));
      expect(r.status.adapterReadiness).toBeUndefined();
      const warning = ofType(r, "event").find(e => e.reason === "AdapterUnloadGaveUp");
      expect(warning?.message).toMatch(/a-v2 may still be loaded on pod-b/);
    });
  });
});

describe("adapter readiness: properties over random runs", () => {
  const stepArb: fc.Arbitrary<RolloutStep> = fc.oneof(
    fc.integer({ min: 0, max: 100 }).map(w => ({ setWeight: w })),
    fc.constantFrom({ pause: {} }, { pause: { duration: "5s" } }),
  );
  const endpointArb = (key: string) =>
    fc
      .constantFrom<boolean | undefined>(true, true, false, undefined)
      .map(serving => ep(key, serving, serving === undefined ? "unreachable" : undefined));
  const tickArb = fc.record({
    seconds: fc.constantFrom(0, 1, 6),
    pods: fc.tuple(endpointArb("p0"), endpointArb("p1"), fc.boolean()),
    action: fc.constantFrom(undefined, undefined, undefined, "promote", "promote-full", "abort"),
  });

  it("never raises a weight unless every Ready pod serves the adapter; loads and unloads only recorded pods", () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        fc.array(tickArb, { minLength: 1, maxLength: 40 }),
        (steps, withLoad, ticks) => {
          const s = { ...spec(withLoad ? { load: { path: "/a" } } : {}), steps };
          let status: ModelRolloutStatus | undefined;
          let t = 0;
          for (const tick of ticks) {
            t += tick.seconds;
            const endpoints = tick.pods[2] ? [tick.pods[0], tick.pods[1]] : [tick.pods[0]];
            const o = { ...obs(endpoints), ...(tick.action ? { action: tick.action } : {}) };
            const before = status?.canaryWeight ?? 0;
            const recorded = new Set(status?.adapterReadiness?.loadedOn ?? []);
            const r = reconcileRollout(s, status, o as Observations, at(t));
            if (Math.max(before, ...weights(r)) > before)
              expect(endpoints.every(e => e.serving === true)).toBe(true);
            for (const load of ofType(r, "loadAdapter"))
              for (const e of load.endpoints) {
                expect(recorded.has(e.key)).toBe(true);
                expect(endpoints.find(x => x.key === e.key)?.serving).toBe(false);
              }
            for (const unload of ofType(r, "unloadAdapter"))
              for (const e of unload.endpoints) expect(recorded.has(e.key)).toBe(true);
            status = r.status;
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
