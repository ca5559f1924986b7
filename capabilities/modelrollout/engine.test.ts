import { describe, expect, it } from "@jest/globals";
import {
  type Action,
  type GateVerdict,
  type Observations,
  type ReconcileResult,
  readActionAnnotation,
  reconcileRollout,
  statusMergePatch,
  targetOf,
  validateSpec,
} from "./engine";
import type { GateRun, ModelRolloutSpec, ModelRolloutStatus, RolloutStep } from "./types";

const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const at = (seconds: number) => new Date(T0 + seconds * 1000);
const iso = (seconds: number) => at(seconds).toISOString();

const POOLS = {
  httpRoute: "inference-route",
  stable: "mymodel-pool-v1",
  canary: "mymodel-pool-v2",
};
const CTX = {
  scope: "pools" as const,
  namespace: "default",
  rollout: "r",
  canary: "v2",
  stable: "v1",
};
const GATE = {
  metrics: [{ name: "error-rate", query: "vector(0)", successCondition: "result[0] < 0.05" }],
};

function specOf(steps: RolloutStep[], extra: Partial<ModelRolloutSpec> = {}): ModelRolloutSpec {
  return {
    pools: { ...POOLS },
    prometheus: { address: "http://prometheus:9090" },
    steps,
    ...extra,
  };
}

function obsOf(extra: Partial<Observations> = {}): Observations {
  return { generation: 1, targets: { ready: true }, ...extra };
}

const types = (r: ReconcileResult) => r.actions.map(a => a.type);
const eventsOf = (r: ReconcileResult) =>
  r.actions.filter((a): a is Extract<Action, { type: "event" }> => a.type === "event");
const reasons = (r: ReconcileResult) => eventsOf(r).map(e => e.reason);
const weights = (r: ReconcileResult) =>
  r.actions.flatMap(a => (a.type === "setWeight" ? [a.canaryWeight] : []));
const condition = (s: ModelRolloutStatus, type: string) => s.conditions?.find(c => c.type === type);

/** Marks a gate run in status as measured with the given verdict (what the analysis module does). */
function withVerdict(
  status: ModelRolloutStatus,
  which: "analysis" | "stepAnalysis",
  verdict: GateVerdict,
): ModelRolloutStatus {
  const run = status[which];
  if (!run) throw new Error(`no ${which} run in status`);
  return {
    ...status,
    [which]: {
      ...run,
      phase: verdict,
      metrics: [
        {
          name: "error-rate",
          phase: verdict,
          count: 1,
          successful: verdict === "Successful" ? 1 : 0,
          failed: verdict === "Failed" ? 1 : 0,
          inconclusive: verdict === "Inconclusive" ? 1 : 0,
          error: verdict === "Error" ? 1 : 0,
          consecutiveErrors: verdict === "Error" ? 1 : 0,
          measurements: [],
        },
      ],
    },
  };
}

/** Calls the engine and checks it is idempotent on its own output before returning. */
function step(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Observations,
  seconds: number,
): ReconcileResult {
  const result = reconcileRollout(spec, status, obs, at(seconds));
  const again = reconcileRollout(spec, result.status, obs, at(seconds));
  expect(again.status).toEqual(result.status);
  for (const action of again.actions) {
    if (action.type === "setWeight") {
      expect(action.step).toBeUndefined();
      expect(action.canaryWeight).toBe(result.status.canaryWeight);
    } else {
      expect(["ensureCanaryPool", "clearActionAnnotation"]).toContain(action.type);
    }
  }
  return result;
}

describe("readActionAnnotation", () => {
  it("recognises the four actions and flags anything else", () => {
    expect(readActionAnnotation(undefined)).toEqual({});
    expect(readActionAnnotation({ other: "x" })).toEqual({});
    expect(readActionAnnotation({ "rollouts.inference.dev/action": "promote" })).toEqual({
      action: "promote",
    });
    expect(readActionAnnotation({ "rollouts.inference.dev/action": " promote-full " })).toEqual({
      action: "promote-full",
    });
    expect(readActionAnnotation({ "rollouts.inference.dev/action": "resume" })).toEqual({
      invalidAction: "resume",
    });
  });
});

describe("validateSpec and targetOf", () => {
  it.each([
    [{ steps: [{ setWeight: 1 }] }, "exactly one of spec.pools or spec.adapters"],
    [
      { pools: { ...POOLS, canary: POOLS.stable }, steps: [{ setWeight: 1 }] },
      "stable and canary must differ",
    ],
    [{ pools: POOLS, steps: [] }, "at least one step"],
    [{ pools: POOLS, steps: [{ setWeight: 10, pause: {} }] }, "steps[0] must have exactly one"],
    [{ pools: POOLS, steps: [{}] }, "steps[0] must have exactly one"],
    [{ pools: POOLS, steps: [{ setWeight: 101 }] }, "between 0 and 100"],
    [{ pools: POOLS, steps: [{ setWeight: 1.5 }] }, "between 0 and 100"],
    [{ pools: POOLS, steps: [{ pause: { duration: "5 minutes" } }] }, "is not a duration"],
    [
      { adapters: { stable: "a", canary: "b" }, steps: [{ setWeight: 1 }] },
      "exactly one of adapters.inferenceModel or adapters.inferenceModelRewrite",
    ],
  ])("rejects %j", (spec, message) => {
    expect(validateSpec(spec as ModelRolloutSpec)?.message).toContain(message);
  });

  it("accepts the seed scenarios and derives their targets", () => {
    const pools = specOf([{ setWeight: 10 }, { pause: { duration: "1m30s" } }]);
    expect(validateSpec(pools)).toBeUndefined();
    expect(targetOf(pools)).toEqual({
      kind: "HTTPRoute",
      name: "inference-route",
      ...POOLS,
      httpRoute: undefined,
    });
    const lora: ModelRolloutSpec = {
      adapters: {
        inferenceModel: "loramodel",
        stable: "travel-helper-v1",
        canary: "travel-helper-v2",
      },
      steps: [{ setWeight: 10 }],
    };
    expect(validateSpec(lora)).toBeUndefined();
    expect(targetOf(lora)).toEqual({
      kind: "InferenceModel",
      name: "loramodel",
      stable: "travel-helper-v1",
      canary: "travel-helper-v2",
    });
    const rewrite: ModelRolloutSpec = {
      adapters: { inferenceModelRewrite: { name: "rw" }, stable: "a", canary: "b" },
      steps: [{ setWeight: 10 }],
    };
    expect(targetOf(rewrite)).toEqual({
      kind: "InferenceModelRewrite",
      name: "rw",
      group: "llm-d.ai",
      stable: "a",
      canary: "b",
    });
    expect(targetOf(specOf([], { pools: { ...POOLS, httpRouteRule: "chat" } }))?.rule).toBe("chat");
  });
});

describe("reconcileRollout: steps", () => {
  it("setWeight writes the split and moves on; a timed pause then waits with a requeue", () => {
    const spec = specOf([{ setWeight: 10 }, { pause: { duration: "30s" } }, { setWeight: 50 }]);
    const r = step(spec, undefined, obsOf(), 0);
    expect(r.actions[0]).toEqual({
      type: "setWeight",
      canaryWeight: 10,
      step: 0,
      target: {
        kind: "HTTPRoute",
        name: "inference-route",
        stable: POOLS.stable,
        canary: POOLS.canary,
      },
    });
    expect(reasons(r)).toEqual(["WeightSet", "PauseStarted"]);
    expect(eventsOf(r).map(e => e.step)).toEqual([0, 1]);
    expect(r.status).toMatchObject({
      phase: "Paused",
      currentStep: 1,
      canaryWeight: 10,
      stableWeight: 90,
      observedGeneration: 1,
      stepStartedAt: iso(0),
      pauseStartedAt: iso(0),
    });
    expect(r.status.message).toBe("steps[1]: pause until 2025-01-01T00:00:30.000Z (canary 10%)");
    expect(r.requeueAfterMs).toBe(30_000);
    expect(condition(r.status, "Paused")).toMatchObject({ status: "True", reason: "PauseStep" });
    expect(condition(r.status, "Progressing")).toMatchObject({
      status: "False",
      reason: "RolloutPaused",
    });
  });

  it("a timed pause keeps waiting until due, re-asserting only the weight", () => {
    const spec = specOf([{ setWeight: 10 }, { pause: { duration: "30s" } }, { setWeight: 50 }]);
    const s0 = step(spec, undefined, obsOf(), 0).status;
    const early = step(spec, s0, obsOf(), 29.5);
    expect(early.actions).toEqual([
      expect.objectContaining({ type: "setWeight", canaryWeight: 10 }),
    ]);
    expect(early.actions[0]).not.toHaveProperty("step");
    expect(early.requeueAfterMs).toBe(500);
    expect(early.status).toEqual(s0);
    const due = step(spec, s0, obsOf(), 30);
    expect(weights(due)).toEqual([50, 100]);
    expect(reasons(due)).toEqual(["WeightSet", "Succeeded"]);
    expect(due.status.phase).toBe("Succeeded");
  });

  it("an indefinite pause waits for promote without a requeue", () => {
    const spec = specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 50 }, { pause: {} }]);
    const s0 = step(spec, undefined, obsOf(), 0).status;
    const later = step(spec, s0, obsOf(), 3600);
    expect(later.requeueAfterMs).toBeUndefined();
    expect(later.status.message).toBe("steps[1]: paused until promote (canary 10%)");
    const promoted = step(spec, s0, obsOf({ action: "promote" }), 3600);
    expect(reasons(promoted)).toEqual(["Promoted", "WeightSet", "PauseStarted"]);
    expect(promoted.status).toMatchObject({ currentStep: 3, canaryWeight: 50, phase: "Paused" });
    expect(promoted.status.pauseStartedAt).toBe(iso(3600));
    expect(promoted.status.lastAction).toMatchObject({
      action: "promote",
      result: "Applied",
      annotationRemoved: false,
    });
    expect(types(promoted)).toContain("clearActionAnnotation");
  });

  it("completion sets 100 %, removes the stable reference and stops acting", () => {
    const spec = specOf([{ setWeight: 30 }]);
    const r = step(spec, undefined, obsOf(), 0);
    expect(r.actions.filter(a => a.type !== "event")).toEqual([
      expect.objectContaining({ type: "setWeight", canaryWeight: 30, step: 0 }),
      expect.objectContaining({ type: "setWeight", canaryWeight: 100 }),
      expect.objectContaining({ type: "finalize", outcome: "Promoted" }),
    ]);
    expect(r.status).toMatchObject({
      phase: "Succeeded",
      currentStep: 1,
      canaryWeight: 100,
      stableWeight: 0,
    });
    expect(condition(r.status, "Completed")).toMatchObject({
      status: "True",
      reason: "RolloutSucceeded",
    });
    const after = step(spec, r.status, obsOf(), 100);
    expect(after.actions).toEqual([]);
    expect(after.status).toEqual(r.status);
  });

  it("a last setWeight of 100 is not written twice", () => {
    const r = step(specOf([{ setWeight: 100 }]), undefined, obsOf(), 0);
    expect(weights(r)).toEqual([100]);
  });

  it("postRollout.unusedPool=Delete deletes the losing pool", () => {
    const spec = specOf([{ setWeight: 30 }], { postRollout: { unusedPool: "Delete" } });
    const ok = step(spec, undefined, obsOf(), 0);
    expect(ok.actions).toContainEqual({
      type: "deletePool",
      pool: POOLS.stable,
      onlyIfManaged: false,
    });
    const failSpec = specOf([{ setWeight: 30 }, { pause: {} }], {
      postRollout: { unusedPool: "Delete" },
    });
    const s0 = step(failSpec, undefined, obsOf(), 0).status;
    const aborted = step(failSpec, s0, obsOf({ action: "abort" }), 1);
    expect(aborted.actions).toContainEqual({
      type: "deletePool",
      pool: POOLS.canary,
      onlyIfManaged: true,
    });
    const kept = step(specOf([{ setWeight: 30 }]), undefined, obsOf(), 0);
    expect(types(kept)).not.toContain("deletePool");
  });

  it("canaryTemplate makes every active call ensure the canary pool first", () => {
    const spec = specOf([{ setWeight: 10 }, { pause: {} }], {
      pools: { ...POOLS, canaryTemplate: { selector: { app: "x" } } },
    });
    const r = step(spec, undefined, obsOf(), 0);
    expect(types(r).slice(0, 2)).toEqual(["ensureCanaryPool", "setWeight"]);
    const again = step(spec, r.status, obsOf(), 5);
    expect(types(again)).toEqual(["ensureCanaryPool", "setWeight"]);
  });
});

describe("reconcileRollout: step gates", () => {
  const spec = (extra: Partial<ModelRolloutSpec> = {}) =>
    specOf([{ setWeight: 10 }, { analysis: GATE }, { setWeight: 50 }, { pause: {} }], extra);

  it("entering an analysis step starts a run and waits for its verdict", () => {
    const r = step(spec(), undefined, obsOf(), 0);
    expect(reasons(r)).toEqual(["WeightSet", "AnalysisStarted"]);
    expect(r.status.stepAnalysis).toEqual({
      stepIndex: 1,
      startedAt: iso(0),
      phase: "Running",
      metrics: [],
    });
    expect(r.status.phase).toBe("Progressing");
    expect(r.status.message).toBe("steps[1]: waiting for analysis (canary 10%)");
    expect(condition(r.status, "Progressing")).toMatchObject({
      status: "True",
      reason: "WaitingForAnalysis",
    });
    expect(condition(r.status, "AnalysisPassing")).toMatchObject({
      status: "True",
      reason: "AnalysisRunning",
    });
    const running = step(spec(), withVerdict(r.status, "stepAnalysis", "Running"), obsOf(), 60);
    expect(running.status.currentStep).toBe(1);
    expect(reasons(running)).toEqual([]);
  });

  it("observed outcomes are judged into the run, and its verdict acts in the same call", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const outcome = (value: number) => ({
      templateContext: CTX,
      measurements: {
        stepAnalysis: [
          {
            metric: "error-rate",
            outcome: { result: { kind: "vector" as const, series: [{ labels: {}, value }] } },
            startedAt: iso(60),
            finishedAt: iso(60),
          },
        ],
      },
    });
    const passed = step(spec(), s0, obsOf(outcome(0.01)), 60);
    expect(passed.status.stepAnalysis?.phase).toBe("Successful");
    expect(passed.status.currentStep).toBe(3);
    const failed = step(spec(), s0, obsOf(outcome(0.5)), 60);
    expect(failed.status.phase).toBe("Failed");
  });

  it("Successful advances", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const r = step(spec(), withVerdict(s0, "stepAnalysis", "Successful"), obsOf(), 60);
    expect(reasons(r)).toEqual(["AnalysisPassed", "WeightSet", "PauseStarted"]);
    expect(r.status).toMatchObject({ currentStep: 3, canaryWeight: 50 });
    expect(condition(r.status, "AnalysisPassing")).toMatchObject({
      status: "True",
      reason: "AnalysisSuccessful",
    });
  });

  it.each(["Failed", "Error"] as const)("%s rolls back and fails", verdict => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const r = step(spec(), withVerdict(s0, "stepAnalysis", verdict), obsOf(), 60);
    expect(r.actions.filter(a => a.type !== "event")).toEqual([
      expect.objectContaining({ type: "setWeight", canaryWeight: 0 }),
      expect.objectContaining({ type: "finalize", outcome: "RolledBack" }),
    ]);
    expect(r.status).toMatchObject({
      phase: "Failed",
      canaryWeight: 0,
      stableWeight: 100,
      currentStep: 1,
    });
    expect(reasons(r)).toEqual(["Failed"]);
    expect(eventsOf(r)[0]).toMatchObject({ eventType: "Warning" });
    expect(r.status.message).toBe(
      `analysis steps[1] ${verdict}; all traffic back on stable mymodel-pool-v1`,
    );
    expect(condition(r.status, "Progressing")).toMatchObject({
      status: "False",
      reason: `Analysis${verdict}`,
    });
    expect(condition(r.status, "Completed")).toMatchObject({
      status: "False",
      reason: "RolledBack",
    });
    expect(condition(r.status, "AnalysisPassing")).toMatchObject({
      status: "False",
      reason: `Analysis${verdict}`,
    });
  });

  it("Inconclusive holds (Paused) until promote", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const held = step(spec(), withVerdict(s0, "stepAnalysis", "Inconclusive"), obsOf(), 60);
    expect(held.status.phase).toBe("Paused");
    expect(condition(held.status, "Paused")).toMatchObject({
      status: "True",
      reason: "AnalysisInconclusive",
    });
    expect(reasons(held)).toEqual(["AnalysisInconclusive"]);
    expect(weights(held)).toEqual([10]);
    const promoted = step(spec(), held.status, obsOf({ action: "promote" }), 120);
    expect(promoted.status).toMatchObject({ currentStep: 3, canaryWeight: 50 });
    expect(reasons(promoted)).toEqual(["Promoted", "WeightSet", "PauseStarted"]);
  });

  it("Inconclusive rolls back with onInconclusive=Rollback", () => {
    const s0 = step(spec({ onInconclusive: "Rollback" }), undefined, obsOf(), 0).status;
    const r = step(
      spec({ onInconclusive: "Rollback" }),
      withVerdict(s0, "stepAnalysis", "Inconclusive"),
      obsOf(),
      60,
    );
    expect(r.status.phase).toBe("Failed");
    expect(condition(r.status, "Progressing")?.reason).toBe("AnalysisInconclusive");
  });

  it("never advances past a failed gate, even with promote-full in the same call", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const r = step(
      spec(),
      withVerdict(s0, "stepAnalysis", "Failed"),
      obsOf({ action: "promote-full" }),
      60,
    );
    expect(r.status.phase).toBe("Failed");
    expect(r.status.lastAction).toMatchObject({ action: "promote-full", result: "Ignored" });
    expect(weights(r)).toEqual([0]);
  });
});

describe("reconcileRollout: background analysis", () => {
  const spec = (extra: Partial<ModelRolloutSpec> = {}) =>
    specOf([{ pause: { duration: "10s" } }, { setWeight: 10 }, { pause: {} }, { setWeight: 50 }], {
      analysis: GATE,
      ...extra,
    });

  it("starts when the canary first takes traffic", () => {
    const r0 = step(spec(), undefined, obsOf(), 0);
    expect(r0.status.analysis).toBeUndefined();
    expect(condition(r0.status, "AnalysisPassing")).toMatchObject({
      status: "Unknown",
      reason: "NotStarted",
    });
    const r1 = step(spec(), r0.status, obsOf(), 10);
    expect(r1.status.analysis).toEqual({ startedAt: iso(10), phase: "Running", metrics: [] });
    expect(r1.status.analysisHash).toMatch(/^[0-9a-f]{8}$/);
    expect(reasons(r1)).toEqual(["WeightSet", "PauseStarted", "AnalysisStarted"]);
  });

  it.each(["Failed", "Error"] as const)("%s rolls back at any step", verdict => {
    const s1 = step(spec(), step(spec(), undefined, obsOf(), 0).status, obsOf(), 10).status;
    const r = step(spec(), withVerdict(s1, "analysis", verdict), obsOf(), 20);
    expect(r.status.phase).toBe("Failed");
    expect(weights(r)).toEqual([0]);
    expect(r.status.message).toContain(`background analysis ${verdict}`);
  });

  it("rolls back even while paused by spec.paused", () => {
    const s1 = step(spec(), step(spec(), undefined, obsOf(), 0).status, obsOf(), 10).status;
    const r = step(
      spec({ paused: true }),
      withVerdict(s1, "analysis", "Failed"),
      obsOf({ generation: 2 }),
      20,
    );
    expect(r.status.phase).toBe("Failed");
  });

  it("Inconclusive holds; promote restarts the run and continues", () => {
    const s1 = step(spec(), step(spec(), undefined, obsOf(), 0).status, obsOf(), 10).status;
    const held = step(spec(), withVerdict(s1, "analysis", "Inconclusive"), obsOf(), 20);
    expect(held.status.phase).toBe("Paused");
    expect(held.status.message).toBe(
      "background analysis inconclusive: holding at canary 10% until promote",
    );
    expect(reasons(held)).toEqual(["AnalysisInconclusive"]);
    const promoted = step(spec(), held.status, obsOf({ action: "promote" }), 30);
    expect(promoted.status.analysis).toEqual({ startedAt: iso(30), phase: "Running", metrics: [] });
    // The run restarted; the indefinite pause at steps[2] still waits for its own promote.
    expect(promoted.status).toMatchObject({ phase: "Paused", currentStep: 2 });
    expect(condition(promoted.status, "Paused")?.reason).toBe("PauseStep");
  });

  it("Inconclusive fails with onInconclusive=Rollback", () => {
    const sp = spec({ onInconclusive: "Rollback" });
    const s1 = step(sp, step(sp, undefined, obsOf(), 0).status, obsOf(), 10).status;
    expect(step(sp, withVerdict(s1, "analysis", "Inconclusive"), obsOf(), 20).status.phase).toBe(
      "Failed",
    );
  });

  it("a changed spec.analysis restarts the run, a removed one drops it", () => {
    const s1 = step(spec(), step(spec(), undefined, obsOf(), 0).status, obsOf(), 10).status;
    const failing = withVerdict(s1, "analysis", "Failed");
    const changed = { metrics: [{ name: "other", query: "vector(1)" }] };
    const r = step(spec({ analysis: changed }), failing, obsOf({ generation: 2 }), 20);
    expect(r.status.phase).toBe("Paused");
    expect(r.status.analysis).toEqual({ startedAt: iso(20), phase: "Running", metrics: [] });
    const removed = step(spec({ analysis: undefined }), failing, obsOf({ generation: 2 }), 20);
    expect(removed.status.analysis).toBeUndefined();
    expect(removed.status.phase).toBe("Paused");
  });
});

describe("reconcileRollout: manual control", () => {
  const spec = (extra: Partial<ModelRolloutSpec> = {}) =>
    specOf(
      [{ setWeight: 10 }, { pause: { duration: "1m" } }, { setWeight: 50 }, { pause: {} }],
      extra,
    );

  it("spec.paused holds even a due pause, and resuming continues", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const paused = step(spec({ paused: true }), s0, obsOf({ generation: 2 }), 10);
    expect(paused.status).toMatchObject({
      phase: "Paused",
      currentStep: 1,
      pauseStartedAt: iso(10),
    });
    expect(condition(paused.status, "Paused")).toMatchObject({
      status: "True",
      reason: "PausedByUser",
    });
    expect(reasons(paused)).toEqual(["Paused"]);
    const stillPaused = step(spec({ paused: true }), paused.status, obsOf({ generation: 2 }), 120);
    expect(stillPaused.status.currentStep).toBe(1);
    expect(reasons(stillPaused)).toEqual([]);
    const resumed = step(
      spec({ paused: false }),
      stillPaused.status,
      obsOf({ generation: 3 }),
      130,
    );
    expect(reasons(resumed)).toEqual(["WeightSet", "PauseStarted", "Resumed"]);
    expect(resumed.status).toMatchObject({ currentStep: 3, canaryWeight: 50 });
  });

  it("abort rolls back, records the action and clears the annotation", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const r = step(spec(), s0, obsOf({ action: "abort" }), 5);
    expect(r.status).toMatchObject({
      phase: "Aborted",
      abortedAt: iso(5),
      finishedAt: iso(5),
      canaryWeight: 0,
    });
    expect(r.status.lastAction).toMatchObject({ action: "abort", result: "Applied", at: iso(5) });
    expect(types(r)).toEqual(["setWeight", "finalize", "event", "clearActionAnnotation"]);
    expect(eventsOf(r)[0]).toMatchObject({ eventType: "Warning", reason: "Aborted" });
    expect(condition(r.status, "Progressing")?.reason).toBe("RolloutAborted");
  });

  it("abort of a finished rollout is ignored", () => {
    const done = step(specOf([{ setWeight: 10 }]), undefined, obsOf(), 0).status;
    const r = step(specOf([{ setWeight: 10 }]), done, obsOf({ action: "abort" }), 5);
    expect(r.status.phase).toBe("Succeeded");
    expect(r.status.lastAction).toMatchObject({
      result: "Ignored",
      message: "the rollout is already Succeeded",
    });
    expect(types(r)).toEqual(["event", "clearActionAnnotation"]);
  });

  it("retry after Aborted restarts from steps[0]; retry while progressing is ignored", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const ignored = step(spec(), s0, obsOf({ action: "retry" }), 1);
    expect(ignored.status.lastAction).toMatchObject({ result: "Ignored" });
    expect(ignored.status.currentStep).toBe(1);
    const aborted = step(spec(), s0, obsOf({ action: "abort" }), 2).status;
    // The annotation is removed, then the user asks for retry.
    const cleared = step(spec(), aborted, obsOf(), 3).status;
    expect(cleared.lastAction?.annotationRemoved).toBe(true);
    const retried = step(spec(), cleared, obsOf({ action: "retry" }), 4);
    expect(reasons(retried)).toEqual(["Retried", "WeightSet", "PauseStarted"]);
    expect(retried.status).toMatchObject({
      phase: "Paused",
      currentStep: 1,
      canaryWeight: 10,
      stepStartedAt: iso(4),
    });
    expect(retried.status.abortedAt).toBeUndefined();
    expect(retried.status.finishedAt).toBeUndefined();
  });

  it("promote-full goes to the end", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const r = step(spec(), s0, obsOf({ action: "promote-full" }), 1);
    expect(r.status.phase).toBe("Succeeded");
    expect(weights(r)).toEqual([100]);
    expect(reasons(r)).toEqual(["Promoted", "Succeeded"]);
  });

  it("promote-full while paused by spec.paused waits for the resume", () => {
    const s0 = step(spec(), undefined, obsOf(), 0).status;
    const r = step(spec({ paused: true }), s0, obsOf({ action: "promote-full", generation: 2 }), 1);
    expect(r.status).toMatchObject({ phase: "Paused", currentStep: 4 });
    expect(r.status.lastAction?.message).toContain("still paused by spec.paused");
    const resumed = step(spec({ paused: false }), r.status, obsOf({ generation: 3 }), 2);
    expect(resumed.status.phase).toBe("Succeeded");
  });

  it("promote with nothing to promote is ignored", () => {
    const s0 = step(specOf([{ setWeight: 10 }, { analysis: GATE }]), undefined, obsOf(), 0).status;
    const sp = specOf([{ setWeight: 10 }, { analysis: GATE }]);
    expect(step(sp, s0, obsOf({ action: "promote" }), 1).status.currentStep).toBe(2); // gate: promoted
    const blocked = specOf([{ setWeight: 10 }, { pause: {} }], { paused: true });
    const p0 = step(blocked, undefined, obsOf(), 0).status; // user-paused before any step
    const r = step(blocked, p0, obsOf({ action: "promote" }), 1);
    expect(r.status.lastAction).toMatchObject({ result: "Ignored" });
    expect(r.status.currentStep).toBe(0);
  });

  it("an invalid action is rejected with a Warning and removed", () => {
    const r = step(spec(), undefined, obsOf({ invalidAction: "resume" }), 0);
    expect(r.status.lastAction).toMatchObject({ action: "resume", result: "Rejected" });
    expect(eventsOf(r).find(e => e.reason === "InvalidAction")).toMatchObject({
      eventType: "Warning",
      message: expect.stringContaining('unknown action "resume"'),
    });
    expect(types(r)).toContain("clearActionAnnotation");
  });

  it("an action still annotated after it was handled is not applied twice", () => {
    const sp = specOf([
      { setWeight: 10 },
      { pause: {} },
      { setWeight: 20 },
      { pause: {} },
      { setWeight: 30 },
    ]);
    const s0 = step(sp, undefined, obsOf(), 0).status;
    const once = step(sp, s0, obsOf({ action: "promote" }), 1);
    expect(once.status.currentStep).toBe(3);
    // The annotation removal has not landed yet (or the operator crashed before it).
    const again = step(sp, once.status, obsOf({ action: "promote" }), 2);
    expect(again.status).toEqual(once.status);
    expect(types(again)).toEqual(["setWeight", "clearActionAnnotation"]);
    // Seen gone: recorded; the same action given again later applies again.
    const gone = step(sp, again.status, obsOf(), 3);
    expect(gone.status.lastAction?.annotationRemoved).toBe(true);
    const second = step(sp, gone.status, obsOf({ action: "promote" }), 4);
    expect(second.status.phase).toBe("Succeeded");
  });
});

describe("reconcileRollout: blocked", () => {
  const spec = specOf([{ setWeight: 10 }, { pause: {} }]);
  const missing = obsOf({
    targets: {
      ready: false,
      reason: "HTTPRouteNotFound",
      message: "HTTPRoute inference-route not found",
    },
  });

  it("missing targets: Pending, Ready=False with the reason, one Warning, growing backoff", () => {
    const r = step(spec, undefined, missing, 0);
    expect(r.actions).toEqual([
      {
        type: "event",
        eventType: "Warning",
        reason: "HTTPRouteNotFound",
        message: "HTTPRoute inference-route not found",
      },
    ]);
    expect(r.status.phase).toBe("Pending");
    expect(condition(r.status, "Ready")).toMatchObject({
      status: "False",
      reason: "HTTPRouteNotFound",
    });
    expect(r.requeueAfterMs).toBe(5_000);
    const later = step(spec, r.status, missing, 40);
    expect(later.actions).toEqual([]);
    expect(later.requeueAfterMs).toBe(40_000);
    expect(step(spec, r.status, missing, 4000).requeueAfterMs).toBe(300_000);
    const found = step(spec, later.status, obsOf(), 50);
    expect(found.status.phase).toBe("Paused");
    expect(condition(found.status, "Ready")).toMatchObject({
      status: "True",
      lastTransitionTime: iso(50),
    });
  });

  it("a blocked active rollout touches nothing, not even the weight", () => {
    const s0 = step(spec, undefined, obsOf(), 0).status;
    const r = step(spec, s0, missing, 10);
    expect(types(r)).toEqual(["event"]);
    expect(r.status.phase).toBe("Paused");
  });

  it("conflict: blocked with the owner's name", () => {
    const r = step(spec, undefined, obsOf({ conflict: { owner: "other" } }), 0);
    expect(condition(r.status, "Ready")).toMatchObject({
      status: "False",
      reason: "Conflict",
      message: expect.stringContaining("already managed by ModelRollout other"),
    });
    expect(types(r)).toEqual(["event"]);
  });

  it("an invalid spec: InvalidSpec, no action; a bad reason string is sanitised", () => {
    const r = step(
      spec,
      undefined,
      obsOf({ specError: { reason: "bad expr!", message: "cannot parse" } }),
      0,
    );
    expect(condition(r.status, "Ready")).toMatchObject({ status: "False", reason: "badexpr" });
    expect(r.status.message).toBe("invalid spec: cannot parse");
    expect(types(r)).toEqual(["event"]);
    const own = step(specOf([{ setWeight: 500 }]), undefined, obsOf(), 0);
    expect(condition(own.status, "Ready")).toMatchObject({ reason: "InvalidSpec" });
  });

  it("a pending action waits while blocked", () => {
    const s0 = step(spec, undefined, obsOf(), 0).status;
    const r = step(spec, s0, { ...missing, action: "abort" }, 1);
    expect(r.status.phase).toBe("Paused");
    expect(types(r)).not.toContain("clearActionAnnotation");
  });
});

describe("reconcileRollout: spec changes mid-rollout", () => {
  const steps: RolloutStep[] = [{ setWeight: 10 }, { pause: {} }, { setWeight: 50 }, { pause: {} }];

  it("a new canary rolls the old one back and restarts from steps[0]", () => {
    const s0 = step(specOf(steps), undefined, obsOf(), 0).status;
    const next = specOf(steps, { pools: { ...POOLS, canary: "mymodel-pool-v3" } });
    const r = step(next, s0, obsOf({ generation: 2 }), 10);
    expect(r.actions.filter(a => a.type !== "event")).toEqual([
      {
        type: "setWeight",
        canaryWeight: 0,
        target: expect.objectContaining({ canary: "mymodel-pool-v2" }),
      },
      {
        type: "finalize",
        outcome: "RolledBack",
        target: expect.objectContaining({ canary: "mymodel-pool-v2" }),
      },
      {
        type: "setWeight",
        canaryWeight: 10,
        step: 0,
        target: expect.objectContaining({ canary: "mymodel-pool-v3" }),
      },
    ]);
    expect(reasons(r)).toEqual(["TargetChanged", "WeightSet", "PauseStarted"]);
    expect(r.status).toMatchObject({
      currentStep: 1,
      observedGeneration: 2,
      target: { canary: "mymodel-pool-v3" },
    });
  });

  it("a new canary that is not usable yet still releases the old one, then starts when found", () => {
    const s0 = step(specOf(steps), undefined, obsOf(), 0).status;
    const next = specOf(steps, { pools: { ...POOLS, canary: "mymodel-pool-v3" } });
    const missing = obsOf({
      generation: 2,
      targets: {
        ready: false,
        reason: "CanaryPoolNotFound",
        message: "InferencePool mymodel-pool-v3 not found",
      },
    });
    const r = step(next, s0, missing, 10);
    expect(r.actions.filter(a => a.type !== "event")).toEqual([
      {
        type: "setWeight",
        canaryWeight: 0,
        target: expect.objectContaining({ canary: "mymodel-pool-v2" }),
      },
      {
        type: "finalize",
        outcome: "RolledBack",
        target: expect.objectContaining({ canary: "mymodel-pool-v2" }),
      },
    ]);
    expect(reasons(r)).toEqual(["TargetChanged", "CanaryPoolNotFound"]);
    expect(r.status.phase).toBe("Pending");
    expect(r.status.target).toBeUndefined();
    expect(r.status.canaryWeight).toBeUndefined();
    const found = step(next, r.status, obsOf({ generation: 2 }), 20);
    expect(found.actions.filter(a => a.type !== "event")).toEqual([
      {
        type: "setWeight",
        canaryWeight: 10,
        step: 0,
        target: expect.objectContaining({ canary: "mymodel-pool-v3" }),
      },
    ]);
    expect(reasons(found)).toEqual(["WeightSet", "PauseStarted"]);
  });

  it("a new target after Succeeded starts a new rollout without rolling back", () => {
    const done = step(specOf([{ setWeight: 10 }]), undefined, obsOf(), 0).status;
    const next = specOf([{ setWeight: 10 }, { pause: {} }], {
      pools: { ...POOLS, stable: "mymodel-pool-v2", canary: "mymodel-pool-v3" },
    });
    const r = step(next, done, obsOf({ generation: 2 }), 10);
    expect(weights(r)).toEqual([10]);
    expect(r.status).toMatchObject({ phase: "Paused", currentStep: 1 });
    expect(r.status.finishedAt).toBeUndefined();
  });

  it("removed steps clamp currentStep to the end (completes)", () => {
    const sp = specOf(steps);
    const s = step(
      sp,
      step(sp, undefined, obsOf(), 0).status,
      obsOf({ action: "promote" }),
      1,
    ).status;
    expect(s.currentStep).toBe(3);
    const r = step(specOf([{ setWeight: 10 }, { pause: {} }]), s, obsOf({ generation: 2 }), 2);
    expect(reasons(r)).toEqual(["StepsChanged", "Succeeded"]);
    expect(r.status.phase).toBe("Succeeded");
  });

  it("a changed current step restarts it; changed earlier steps change nothing", () => {
    const sp = specOf(steps);
    const s0 = step(sp, undefined, obsOf(), 0).status;
    const timed = specOf([
      { setWeight: 10 },
      { pause: { duration: "1m" } },
      { setWeight: 50 },
      { pause: {} },
    ]);
    const r = step(timed, s0, obsOf({ generation: 2 }), 30);
    expect(reasons(r)).toEqual(["StepsChanged", "PauseStarted"]);
    expect(r.status).toMatchObject({ currentStep: 1, stepStartedAt: iso(30), canaryWeight: 10 });
    expect(r.requeueAfterMs).toBe(60_000);
    const earlier = specOf([
      { setWeight: 20 },
      { pause: { duration: "1m" } },
      { setWeight: 50 },
      { pause: {} },
    ]);
    const r2 = step(earlier, r.status, obsOf({ generation: 3 }), 40);
    expect(reasons(r2)).toEqual([]);
    expect(r2.status).toMatchObject({
      canaryWeight: 10,
      stepStartedAt: iso(30),
      observedGeneration: 3,
    });
  });

  it("a finished rollout ignores step changes", () => {
    const done = step(specOf([{ setWeight: 10 }]), undefined, obsOf(), 0).status;
    const r = step(specOf([{ setWeight: 10 }, { pause: {} }]), done, obsOf({ generation: 2 }), 5);
    expect(r.actions).toEqual([]);
    expect(r.status.phase).toBe("Succeeded");
    expect(r.status.observedGeneration).toBe(2);
    expect(r.status.conditions?.every(c => c.observedGeneration === 2)).toBe(true);
  });
});

describe("reconcileRollout: conditions and restart safety", () => {
  it("lastTransitionTime changes only when a condition flips", () => {
    const sp = specOf([
      { setWeight: 10 },
      { pause: { duration: "10s" } },
      { setWeight: 20 },
      { pause: {} },
    ]);
    const s0 = step(sp, undefined, obsOf(), 0).status;
    const s1 = step(sp, s0, obsOf(), 10).status; // timed pause → indefinite pause: still Paused
    expect(condition(s1, "Paused")).toMatchObject({ status: "True", lastTransitionTime: iso(0) });
    expect(condition(s1, "Ready")?.lastTransitionTime).toBe(iso(0));
    expect(s1.pauseStartedAt).toBe(iso(10)); // a new pause, though
    const s2 = step(sp, s1, obsOf({ action: "promote" }), 20).status;
    expect(condition(s2, "Paused")).toMatchObject({ status: "False", lastTransitionTime: iso(20) });
    expect(condition(s2, "Completed")).toMatchObject({
      status: "True",
      lastTransitionTime: iso(20),
    });
  });

  it("a crash between the weight write and the status write repeats the same weight only", () => {
    const sp = specOf([{ setWeight: 10 }, { pause: {} }, { setWeight: 40 }, { pause: {} }]);
    const stored = step(sp, undefined, obsOf(), 0).status;
    const first = step(sp, stored, obsOf({ action: "promote" }), 5);
    // The weight 40 was written, the status was not: the operator restarts from `stored`.
    const replay = step(sp, stored, obsOf({ action: "promote" }), 7);
    expect(weights(replay)).toEqual(weights(first));
    expect(replay.status.currentStep).toBe(first.status.currentStep);
  });

  it("a crash after the status write converges by re-asserting the weight", () => {
    const sp = specOf([{ setWeight: 10 }, { pause: {} }]);
    const stored = step(sp, undefined, obsOf(), 0).status;
    const r = step(sp, stored, obsOf(), 60);
    expect(r.actions).toEqual([expect.objectContaining({ type: "setWeight", canaryWeight: 10 })]);
  });
});

describe("statusMergePatch", () => {
  it("is null when nothing changed and nulls removed fields", () => {
    const a: ModelRolloutStatus = {
      phase: "Paused",
      currentStep: 1,
      pauseStartedAt: iso(0),
      conditions: [],
    };
    expect(statusMergePatch(a, structuredClone(a))).toBeNull();
    const b: ModelRolloutStatus = { phase: "Progressing", currentStep: 2, conditions: [] };
    expect(statusMergePatch(a, b)).toEqual({
      phase: "Progressing",
      currentStep: 2,
      pauseStartedAt: null,
    });
    expect(statusMergePatch(undefined, b)).toEqual(b);
    const withRun: ModelRolloutStatus = {
      analysis: { startedAt: iso(0), phase: "Running", metrics: [], x: 1 } as GateRun,
    };
    expect(
      statusMergePatch(withRun, { analysis: { startedAt: iso(0), phase: "Failed", metrics: [] } }),
    ).toEqual({
      analysis: { phase: "Failed", x: null },
    });
  });
});

describe("reconcileRollout: finished rollouts and invalid specs", () => {
  it("an invalid spec after Succeeded is reported in Ready only, and clears when fixed", () => {
    const sp = specOf([{ setWeight: 10 }]);
    const done = step(sp, undefined, obsOf(), 0).status;
    const bad = step(
      sp,
      done,
      obsOf({ generation: 2, specError: { reason: "InvalidSpec", message: "bad gate" } }),
      5,
    );
    expect(bad.actions.filter(a => a.type !== "event")).toEqual([]);
    expect(bad.status).toMatchObject({ phase: "Succeeded", message: done.message });
    expect(condition(bad.status, "Ready")).toMatchObject({
      status: "False",
      reason: "InvalidSpec",
    });
    const fixed = step(sp, bad.status, obsOf({ generation: 3 }), 6);
    expect(condition(fixed.status, "Ready")).toMatchObject({
      status: "True",
      reason: "RolloutFinished",
    });
    expect(fixed.actions).toEqual([]);
  });
});
