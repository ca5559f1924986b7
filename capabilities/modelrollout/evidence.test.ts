// The never-promote rule, end to end through the pure parts: the analysis module judges a query
// outcome (Successful, Error, Failed, empty, NaN) into a gate run, and the engine decides. The
// canary weight never rises and the rollout never completes without a Successful measurement
// of every deciding background metric taken after the current weight was set.
import { describe, expect, it } from "@jest/globals";
import {
  applyMeasurements,
  checkQueries,
  measurementFrom,
  PrometheusError,
  type AnalysisRunStatus,
  type AnalysisSpec,
  type QueryResult,
} from "../analysis";
import {
  needsQueryCheck,
  reconcileFailed,
  reconcileRollout,
  validateSpec,
  type Observations,
  type ReconcileResult,
} from "./engine";
import type { GateRun, ModelRolloutSpec, ModelRolloutStatus, RolloutStep } from "./types";

const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const at = (seconds: number) => new Date(T0 + seconds * 1000);
const OBS: Observations = { generation: 1, targets: { ready: true } };
const GATE: AnalysisSpec = {
  metrics: [
    {
      name: "errors",
      query: "vector(0)",
      successCondition: "result[0] < 0.05",
      failureCondition: "result[0] >= 0.05",
      interval: "1s",
    },
  ],
};
const POOLS = { httpRoute: "route", stable: "v1", canary: "v2" };
const PROMETHEUS = { address: "http://prometheus:9090" };

type Outcome = "Successful" | "Error" | "Failed" | "empty" | "NaN";
function outcome(kind: Outcome): QueryResult | Error {
  switch (kind) {
    case "Successful":
      return { kind: "vector", series: [{ labels: {}, value: 0.01 }] };
    case "Failed":
      return { kind: "vector", series: [{ labels: {}, value: 0.4 }] };
    case "empty":
      return { kind: "vector", series: [] };
    case "NaN":
      return { kind: "vector", series: [{ labels: {}, value: NaN }] };
    case "Error":
      return new Error("Prometheus http://prom: HTTP 503");
  }
}

/** What the reconciler's measureGates does for one due measurement of a running run. */
function measure(
  status: ModelRolloutStatus,
  which: "analysis" | "stepAnalysis",
  kind: Outcome,
  seconds: number,
): ModelRolloutStatus {
  const run = status[which] as unknown as AnalysisRunStatus;
  const metric = GATE.metrics[0];
  const m = measurementFrom({ ...metric, multipleSeries: false }, outcome(kind), at(seconds));
  const next = applyMeasurements(GATE, run, [{ name: metric.name, measurement: m }]);
  return { ...status, [which]: next as unknown as GateRun };
}

const weights = (r: ReconcileResult) =>
  r.actions.flatMap(a => (a.type === "setWeight" ? [a.canaryWeight] : []));

describe("the never-promote rule: background analysis", () => {
  // The reproduction: setWeight 10, pause 2s, setWeight 100.
  const spec: ModelRolloutSpec = {
    pools: POOLS,
    prometheus: PROMETHEUS,
    steps: [{ setWeight: 10 }, { pause: { duration: "2s" } }, { setWeight: 100 }],
    analysis: GATE,
  };
  const start = () => {
    const r = reconcileRollout(spec, undefined, OBS, at(0));
    expect(weights(r)).toEqual([10]);
    expect(r.status.analysis?.phase).toBe("Running");
    return r.status;
  };

  it("a Successful measurement at the current weight lets it rise; completion needs one at 100 %", () => {
    let st = measure(start(), "analysis", "Successful", 1);
    let r = reconcileRollout(spec, st, OBS, at(3));
    expect(weights(r)).toEqual([100]);
    expect(r.status.phase).toBe("Progressing");
    expect(r.status.conditions?.find(c => c.type === "Progressing")?.reason).toBe(
      "WaitingForEvidence",
    );
    st = measure(r.status, "analysis", "Successful", 4);
    r = reconcileRollout(spec, st, OBS, at(5));
    expect(r.status.phase).toBe("Succeeded");
  });

  it("a Successful measurement taken before the weight was set is no evidence for it", () => {
    const st = measure(start(), "analysis", "Successful", 0);
    const r = reconcileRollout(spec, st, OBS, at(3));
    expect(weights(r)).toEqual([10]);
    expect(r.status.message).toContain("waits for a Successful measurement at 10%");
  });

  it.each<[Outcome, string]>([
    ["Error", "Progressing"],
    ["empty", "Paused"],
    ["NaN", "Paused"],
    ["Failed", "Failed"],
  ])("after a %s measurement the weight does not rise (phase %s)", (kind, phase) => {
    const st = measure(start(), "analysis", kind, 1);
    const r = reconcileRollout(spec, st, OBS, at(3));
    expect(r.status.phase).toBe(phase);
    expect(Math.max(0, ...weights(r))).toBeLessThanOrEqual(10);
    expect(r.status.canaryWeight).toBeLessThanOrEqual(10);
  });

  it("errors only never promote: the fifth error in a row rolls back", () => {
    let st = start();
    for (let s = 1; s <= 4; s++) {
      st = measure(st, "analysis", "Error", s);
      const r = reconcileRollout(spec, st, OBS, at(s + 0.5));
      expect(r.status.canaryWeight).toBe(10);
      st = r.status;
    }
    st = measure(st, "analysis", "Error", 5);
    const r = reconcileRollout(spec, st, OBS, at(6));
    expect(r.status.phase).toBe("Failed");
    expect(weights(r)).toEqual([0]);
  });

  it("steps that end on setWeight 0 do not complete a canary whose weight was never judged", () => {
    const down: ModelRolloutSpec = { ...spec, steps: [{ setWeight: 10 }, { setWeight: 0 }] };
    // Lowering the weight needs nothing; the canary taking all traffic at the end does.
    let r = reconcileRollout(down, undefined, OBS, at(0));
    expect(weights(r)).toEqual([10, 0]);
    expect(r.status.phase).not.toBe("Succeeded");
    expect(r.status.message).toContain("completing waits for a Successful measurement at 0%");
    r = reconcileRollout(down, r.status, OBS, at(1));
    expect(r.status.analysis?.phase).toBe("Running");
    expect(r.status.phase).not.toBe("Succeeded");
    r = reconcileRollout(down, measure(r.status, "analysis", "Successful", 2), OBS, at(3));
    expect(r.status.phase).toBe("Succeeded");
  });

  it("promote-full skips steps, not the evidence", () => {
    const st = start();
    const r = reconcileRollout(spec, st, { ...OBS, action: "promote-full" }, at(1));
    expect(r.status.phase).toBe("Progressing");
    expect(r.status.canaryWeight).toBe(10);
    expect(weights(r)).toEqual([10]);
  });
});

describe("the never-promote rule: step gates", () => {
  const steps: RolloutStep[] = [{ setWeight: 10 }, { analysis: GATE }, { setWeight: 100 }];
  const spec: ModelRolloutSpec = { pools: POOLS, prometheus: PROMETHEUS, steps };
  const start = () => {
    const r = reconcileRollout(spec, undefined, OBS, at(0));
    expect(r.status.stepAnalysis?.phase).toBe("Running");
    return r.status;
  };

  it.each<[Outcome, string]>([
    ["Error", "Progressing"],
    ["empty", "Paused"],
    ["NaN", "Paused"],
    ["Failed", "Failed"],
  ])("a %s measurement does not pass the gate (phase %s)", (kind, phase) => {
    const st = measure(start(), "stepAnalysis", kind, 1);
    const r = reconcileRollout(spec, st, OBS, at(2));
    expect(r.status.phase).toBe(phase);
    expect(r.status.canaryWeight).toBeLessThanOrEqual(10);
    expect(Math.max(0, ...weights(r))).toBeLessThanOrEqual(10);
  });

  it("a Successful measurement passes it", () => {
    const st = measure(start(), "stepAnalysis", "Successful", 1);
    const r = reconcileRollout(spec, st, OBS, at(2));
    expect(r.status.phase).toBe("Succeeded");
  });
});

describe("durations too large for a date", () => {
  it.each(["9999999999999h", "8761h", "99999999999999999999999ms"])(
    "pause.duration %s is refused, naming the field",
    duration => {
      const spec: ModelRolloutSpec = { pools: POOLS, steps: [{ pause: { duration } }] };
      expect(validateSpec(spec)?.message).toContain(`steps[0].pause.duration "${duration}"`);
      const r = reconcileRollout(spec, undefined, OBS, at(0));
      expect(r.actions.filter(a => a.type !== "event")).toEqual([]);
      expect(r.status.conditions?.find(c => c.type === "Ready")?.reason).toBe("InvalidSpec");
    },
  );

  it("a 720h pause is valid and asks for a single wake-up at its end", () => {
    const spec: ModelRolloutSpec = {
      pools: POOLS,
      steps: [{ setWeight: 10 }, { pause: { duration: "720h" } }, { setWeight: 100 }],
    };
    const r = reconcileRollout(spec, undefined, OBS, at(0));
    expect(r.requeueAfterMs).toBe(720 * 3600_000);
  });
});

describe("checking the queries before any traffic moves", () => {
  const spec: ModelRolloutSpec = {
    pools: POOLS,
    prometheus: PROMETHEUS,
    steps: [{ setWeight: 10 }, { analysis: GATE }, { setWeight: 100 }],
  };
  const route = { kind: "HTTPRoute" as const, name: "route", stable: "v1", canary: "v2" };

  it("is needed while the canary has no traffic, for a new target and for a retry", () => {
    expect(needsQueryCheck(spec, undefined, {})).toBe(true);
    expect(needsQueryCheck(spec, { target: route, phase: "Progressing" }, {})).toBe(true);
    expect(
      needsQueryCheck(spec, { target: route, phase: "Progressing", canaryWeight: 0 }, {}),
    ).toBe(true);
    expect(
      needsQueryCheck(spec, { target: route, phase: "Progressing", canaryWeight: 10 }, {}),
    ).toBe(false);
    expect(needsQueryCheck(spec, { target: route, phase: "Failed", canaryWeight: 0 }, {})).toBe(
      false,
    );
    expect(
      needsQueryCheck(
        spec,
        { target: route, phase: "Failed", canaryWeight: 0 },
        { action: "retry" },
      ),
    ).toBe(true);
    const other = { ...route, canary: "v3" };
    expect(
      needsQueryCheck(spec, { target: other, phase: "Succeeded", canaryWeight: 100 }, {}),
    ).toBe(true);
    expect(needsQueryCheck({ ...spec, steps: [{ setWeight: 10 }] }, undefined, {})).toBe(false);
  });

  it("an invalid query blocks the start with InvalidAnalysis: no weight is written", () => {
    const r = reconcileRollout(
      spec,
      undefined,
      { ...OBS, specError: { reason: "InvalidAnalysis", message: "Prometheus refuses a query" } },
      at(0),
    );
    expect(weights(r)).toEqual([]);
    expect(r.status.conditions?.find(c => c.type === "Ready")?.reason).toBe("InvalidAnalysis");
  });

  it("a permanent error in a running gate rolls back with reason InvalidAnalysis", () => {
    let st = reconcileRollout(spec, undefined, OBS, at(0)).status;
    const run = st.stepAnalysis as unknown as AnalysisRunStatus;
    const m = { ...measurementFrom(GATE.metrics[0] as never, new Error("bad_data"), at(1)) };
    m.permanent = true;
    st = {
      ...st,
      stepAnalysis: applyMeasurements(GATE, run, [
        { name: "errors", measurement: m },
      ]) as unknown as GateRun,
    };
    const r = reconcileRollout(spec, st, OBS, at(2));
    expect(r.status.phase).toBe("Failed");
    expect(weights(r)).toEqual([0]);
    expect(r.status.conditions?.find(c => c.type === "Progressing")?.reason).toBe(
      "InvalidAnalysis",
    );
  });
});

describe("a reconcile that throws", () => {
  const spec: ModelRolloutSpec = { pools: POOLS, steps: [{ setWeight: 10 }] };
  it("is reported once as Ready=False ReconcileError with a Warning Event, touching nothing", () => {
    const st = reconcileRollout(spec, undefined, OBS, at(0)).status;
    const r = reconcileFailed(spec, st, 1, "boom", at(1));
    expect(r.actions.map(a => a.type)).toEqual(["event"]);
    expect(r.status.canaryWeight).toBe(st.canaryWeight);
    const ready = r.status.conditions?.find(c => c.type === "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "ReconcileError" });
    expect(ready?.message).toContain("boom");
    // The same failure again: no second Event.
    expect(reconcileFailed(spec, r.status, 1, "boom", at(2)).actions).toEqual([]);
    // The next good reconcile clears it.
    const ok = reconcileRollout(spec, r.status, OBS, at(3));
    expect(ok.status.conditions?.find(c => c.type === "Ready")?.status).toBe("True");
  });
});

describe("checkQueries", () => {
  const ctx = {
    scope: "adapters" as const,
    namespace: "ns",
    rollout: "r",
    canary: "v2",
    stable: "v1",
  };
  const provider = { address: "http://prom:9090" };
  const gates = [
    { where: "analysis", spec: GATE },
    {
      where: "steps[1].analysis",
      spec: {
        metrics: [{ name: "ttft", query: "sum(rate(up[5m]", successCondition: "result[0] < 1" }],
      },
    },
  ];

  it("sorts each query into accepted, refused for good (invalid) or not answerable now", async () => {
    const seen: string[] = [];
    const check = await checkQueries(gates, { ...ctx, defaultProvider: provider }, async query => {
      seen.push(query);
      if (query.includes("rate(up[5m]"))
        throw new PrometheusError("prometheus", "query rejected (HTTP 400, bad_data)", {
          address: provider.address,
          query,
          status: 400,
          errorType: "bad_data",
        });
      return { kind: "vector", series: [] };
    });
    expect(seen).toEqual(["vector(0)", "sum(rate(up[5m]"]);
    expect(check.unavailable).toEqual([]);
    expect(check.invalid).toEqual([
      expect.stringMatching(/^steps\[1\]\.analysis\.metrics\[0\] \(ttft\): .*bad_data/),
    ]);
  });

  it("a network failure is not a verdict on the spec", async () => {
    const check = await checkQueries(gates, { ...ctx, defaultProvider: provider }, async query => {
      throw new PrometheusError("network", "connection refused", {
        address: provider.address,
        query,
      });
    });
    expect(check.invalid).toEqual([]);
    expect(check.unavailable).toHaveLength(2);
  });

  it("a metric without a provider is invalid", async () => {
    const check = await checkQueries(gates, ctx, async () => ({ kind: "scalar", value: 1 }));
    expect(check.invalid).toHaveLength(2);
  });
});

describe("object names that could leave the namespace", () => {
  it.each([
    ["pools.httpRoute", { pools: { ...POOLS, httpRoute: "../../victim/httproutes/r" } }],
    ["pools.canary", { pools: { ...POOLS, canary: "v2/../../x" } }],
    [
      "adapters.inferenceModel",
      { adapters: { inferenceModel: "Model", stable: "a", canary: "b" } },
    ],
  ])("%s is refused as InvalidSpec", (field, target) => {
    const spec = { ...target, steps: [{ setWeight: 10 }] } as ModelRolloutSpec;
    expect(validateSpec(spec)?.message).toContain(field);
    expect(
      reconcileRollout(spec, undefined, OBS, at(0)).actions.some(a => a.type === "setWeight"),
    ).toBe(false);
  });
});
