import {
  describeProgress,
  describeStep,
  formatDetail,
  formatTable,
  gatesShort,
  RolloutJson,
  shortValue,
  weightBar,
} from "./format";

const measured = (phase: string, value: string) => ({
  phase,
  value,
  finishedAt: "2026-01-01T00:00:10Z",
});

const rollout: RolloutJson = {
  metadata: { name: "qwen-to-deepseek", namespace: "demo" },
  spec: {
    pools: { httpRoute: "inference-route", stable: "mymodel-pool-v1", canary: "mymodel-pool-v2" },
    steps: [
      { setWeight: 10 },
      { pause: { duration: "20s" } },
      { analysis: { metrics: [{ name: "canary-traffic" }, { name: "observed-split" }] } },
      { setWeight: 50 },
      { pause: {} },
      { setWeight: 100 },
    ],
  },
  status: {
    phase: "Progressing",
    currentStep: 2,
    canaryWeight: 10,
    stableWeight: 90,
    message: "steps[2]: waiting for analysis (canary 10%)",
    analysis: {
      phase: "Running",
      metrics: [
        {
          name: "canary-error-rate",
          phase: "Running",
          successful: 3,
          inconclusive: 1,
          measurements: [measured("Inconclusive", "[]"), measured("Successful", "[0.0123456]")],
        },
      ],
    },
    stepAnalysis: {
      phase: "Running",
      stepIndex: 2,
      metrics: [
        {
          name: "canary-traffic",
          phase: "Successful",
          successful: 1,
          measurements: [measured("Successful", "[36.8]")],
        },
        { name: "observed-split", phase: "Pending", measurements: [] },
      ],
    },
    conditions: [{ type: "Ready", status: "True", reason: "TargetsReady" }],
  },
};

describe("format", () => {
  it("describes steps, progress and weights", () => {
    expect(describeStep({ setWeight: 10 })).toBe("setWeight 10");
    expect(describeStep({ pause: {} })).toBe("pause (until promoted)");
    expect(
      describeStep({
        setHeaderRoute: {
          match: [
            { headerName: "x-canary", headerValue: { exact: "yes" } },
            { headerName: "x-team", headerValue: { prefix: "qa-" } },
            { headerName: "x-id", headerValue: { regex: "t[0-9]+" } },
          ],
        },
      }),
    ).toBe("setHeaderRoute x-canary=yes x-team=qa-* x-id~t[0-9]+");
    expect(describeStep({ setHeaderRoute: { match: [] } })).toBe("setHeaderRoute (remove)");
    expect(describeStep({ pause: { duration: "5m" } })).toBe("pause 5m");
    expect(describeStep({ analysis: { metrics: [{ name: "a" }, { name: "b" }] } })).toBe(
      "analysis: a, b",
    );
    expect(describeProgress(rollout)).toBe("step 3/6 (analysis: canary-traffic, observed-split)");
    expect(describeProgress({ ...rollout, status: { currentStep: 6 } })).toBe("done (6/6)");
    expect(weightBar(10)).toBe("[##------------------]");
    expect(weightBar(100, 4)).toBe("[####]");
    expect(weightBar(undefined, 4)).toBe("[----]");
  });

  it("shortens measurement values", () => {
    expect(shortValue("[0.0123456]")).toBe("0.0123");
    expect(shortValue("[]")).toBe("no data");
    expect(shortValue("[1,2.34567]")).toBe("1,2.35");
    expect(shortValue("0.5")).toBe("0.5");
    expect(shortValue(undefined)).toBe("");
  });

  it("summarises gates with the last verdict of a running metric", () => {
    expect(gatesShort(rollout)).toBe(
      "canary-error-rate ok 0.0123 | canary-traffic ok 36.8 | observed-split pending",
    );
    expect(gatesShort({ metadata: { name: "x" } })).toBe("-");
  });

  it("lists rollouts in aligned columns", () => {
    const table = formatTable([
      rollout,
      {
        metadata: { name: "new" },
        spec: { adapters: { stable: "a", canary: "b" }, steps: [{ setWeight: 5 }] },
      },
    ]);
    expect(table.split("\n")).toEqual([
      "NAME              PHASE        STEP  WEIGHTS (stable | canary)                  GATES",
      "qwen-to-deepseek  Progressing  2/6   mymodel-pool-v1 90% | mymodel-pool-v2 10%  canary-error-rate ok 0.0123 | canary-traffic ok 36.8 | observed-split pending",
      "new               Pending      0/1   a 100% | b 0%                              -",
    ]);
    expect(formatTable([])).toBe("No ModelRollouts found.");
  });

  it("details one rollout: target, steps with the current one marked, gates, conditions, events", () => {
    const text = formatDetail(
      rollout,
      [
        {
          type: "Normal",
          reason: "WeightSet",
          message: "steps[0] of 6: canary 10%",
          lastTimestamp: "2026-01-01T00:00:00Z",
        },
      ],
      new Date("2026-01-01T00:00:30Z"),
    );
    expect(text).toContain(
      "Target:      HTTPRoute inference-route: stable mymodel-pool-v1 -> canary mymodel-pool-v2",
    );
    expect(text).toContain(
      "Weights:     [##------------------]  mymodel-pool-v1 90% | mymodel-pool-v2 10%",
    );
    expect(text).toContain("  [x] 1  pause 20s");
    expect(text).toContain("  [>] 2  analysis: canary-traffic, observed-split");
    expect(text).toContain("  [ ] 3  setWeight 50");
    expect(text).toMatch(/background\s+canary-error-rate\s+ok\s+0\.0123\s+3 ok, 1 inconclusive/);
    expect(text).toMatch(/steps\[2\]\s+observed-split\s+pending\s+-/);
    expect(text).toMatch(/Ready\s+True\s+TargetsReady/);
    expect(text).toMatch(/30s ago\s+Normal\s+WeightSet\s+steps\[0\] of 6: canary 10%/);
  });

  it("marks no step as current once the rollout has finished", () => {
    const done = formatDetail(
      { ...rollout, status: { ...rollout.status, phase: "Failed", currentStep: 2 } },
      [],
      new Date(),
    );
    expect(done).not.toContain("[>]");
    expect(done).toContain("  [ ] 2  analysis");
  });

  it("shows the header route while status records one", () => {
    expect(formatDetail(rollout, [], new Date())).not.toContain("Headers:");
    const withHeader = formatDetail(
      {
        ...rollout,
        status: {
          ...rollout.status,
          headerRoute: { match: [{ headerName: "x-canary", headerValue: { exact: "yes" } }] },
        },
      },
      [],
      new Date(),
    );
    expect(withHeader).toContain("Headers:     x-canary=yes -> canary mymodel-pool-v2");
  });
});
