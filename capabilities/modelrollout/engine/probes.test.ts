// Probes before the first weight, as the engine judges them: a failing canary is Failed with the
// metric and what was seen and no weight ever moves; inconclusive holds; a refused URL is invalid.
import { describe, expect, it } from "@jest/globals";
import type { ProbeAnswer, ProbeCheck } from "../../analysis";
import { reconcileRollout, type Observations } from "../engine";
import type { ModelRolloutSpec } from "../types";

const NOW = new Date("2025-01-01T00:00:00.000Z");
const PROBE_METRIC = {
  name: "answers",
  probe: { url: "http://gw/v1/chat/completions", prompts: ["hi"], expect: { contains: ["Paris"] } },
};
const SPEC: ModelRolloutSpec = {
  adapters: { inferenceModel: "m", stable: "v1", canary: "v2" },
  analysis: { metrics: [PROBE_METRIC] },
  steps: [{ setWeight: 10 }, { setWeight: 100 }],
};
const CTX = {
  scope: "adapters" as const,
  namespace: "ns",
  rollout: "r",
  canary: "v2",
  stable: "v1",
};
const answer = (model: string, content: string): ProbeAnswer => ({
  prompt: 0,
  status: 200,
  model,
  content,
  latencyMs: 9,
});

function obsWith(outcome: ProbeCheck["outcome"]["outcome"]): Observations {
  const timing = { startedAt: NOW.toISOString(), finishedAt: NOW.toISOString() };
  return {
    generation: 1,
    targets: { ready: true },
    templateContext: CTX,
    probeCheck: [
      {
        where: "analysis.metrics[0] (answers)",
        metric: PROBE_METRIC,
        outcome: { metric: "answers", outcome, ...timing },
      },
    ],
  };
}

const weights = (r: ReturnType<typeof reconcileRollout>) =>
  r.actions.flatMap(a => (a.type === "setWeight" ? [a.canaryWeight] : []));

describe("probes before the first weight", () => {
  it("a passing canary gets its first weight", () => {
    const r = reconcileRollout(
      SPEC,
      undefined,
      obsWith({ probe: { canary: [answer("v2", "Paris")], stable: [answer("v1", "Paris")] } }),
      NOW,
    );
    expect(weights(r)).toEqual([10]);
  });

  it("a failing canary ends Failed naming the metric and what was seen; no weight above 0", () => {
    const r = reconcileRollout(
      SPEC,
      undefined,
      obsWith({ probe: { canary: [answer("v2", "Rome")], stable: [answer("v1", "Paris")] } }),
      NOW,
    );
    expect(r.status.phase).toBe("Failed");
    expect(Math.max(...weights(r))).toBe(0);
    expect(r.status.message).toMatch(
      /failed its probe before any traffic moved: analysis.metrics\[0\] \(answers\) Failed/,
    );
    expect(r.status.message).toMatch(/content lacks "Paris".*content "Rome"/);
    expect(r.status.conditions?.find(c => c.type === "Progressing")?.reason).toBe("ProbeFailed");
  });

  it("holds without moving traffic when the stable fails too or the probe errs", () => {
    for (const outcome of [
      { probe: { canary: [answer("v2", "Rome")], stable: [answer("v1", "Rome")] } },
      { error: "connection refused", permanent: false },
    ]) {
      const r = reconcileRollout(SPEC, undefined, obsWith(outcome), NOW);
      expect(weights(r)).toEqual([]);
      // Started and held before its first weight (steps before it, e.g. a header route, run).
      expect(r.status.phase).toBe("Progressing");
      expect(r.status.conditions?.find(c => c.type === "Ready")).toMatchObject({
        status: "False",
        reason: "ProbePending",
      });
      expect(r.status.conditions?.find(c => c.type === "Progressing")).toMatchObject({
        status: "False",
        reason: "ProbePending",
      });
      expect(r.requeueAfterMs).toBeGreaterThan(0);
    }
  });

  it("a URL the address policy refuses is InvalidAnalysis", () => {
    const r = reconcileRollout(
      SPEC,
      undefined,
      obsWith({ error: "probe url http://169.254.169.254: refused", permanent: true }),
      NOW,
    );
    expect(weights(r)).toEqual([]);
    expect(r.status.conditions?.find(c => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "InvalidAnalysis",
    });
  });

  it("wait for adapter readiness: no verdict while a Ready pod lacks the canary adapter", () => {
    // The probe would see the 404 of an adapter the operator is about to load (demo scenario 2).
    const readySpec: ModelRolloutSpec = {
      ...SPEC,
      adapters: { ...SPEC.adapters!, readiness: { load: { path: "/adapters/v2" } } },
    };
    const notFound = {
      probe: { canary: [{ ...answer("", ""), status: 404 }], stable: [answer("v1", "Paris")] },
    };
    const endpoint = { key: "pod-a", url: "http://127.0.0.9:8000" };
    const held = reconcileRollout(
      readySpec,
      undefined,
      {
        ...obsWith(notFound),
        adapterReadiness: { pool: "p", endpoints: [{ ...endpoint, serving: false }] },
      },
      NOW,
    );
    expect(held.status.phase).not.toBe("Failed");
    expect(weights(held)).toEqual([]);
    expect(held.status.conditions?.find(c => c.type === "Progressing")?.reason).toBe(
      "AdapterNotReady",
    );
    // Once every Ready pod serves it, the same failing answers are judged: Failed, no weight.
    const judged = reconcileRollout(
      readySpec,
      held.status,
      {
        ...obsWith(notFound),
        adapterReadiness: { pool: "p", endpoints: [{ ...endpoint, serving: true }] },
      },
      NOW,
    );
    expect(judged.status.phase).toBe("Failed");
    expect(weights(judged).filter(w => w > 0)).toEqual([]);
  });
});

describe("probes and manual actions", () => {
  const failing = obsWith({
    probe: { canary: [answer("v2", "Rome")], stable: [answer("v1", "Paris")] },
  });

  it("a retry of a rollout that failed its probe judges the probe again: no weight above 0", () => {
    const failed = reconcileRollout(SPEC, undefined, failing, NOW);
    expect(failed.status.phase).toBe("Failed");
    const retried = reconcileRollout(SPEC, failed.status, { ...failing, action: "retry" }, NOW);
    expect(weights(retried).filter(w => w > 0)).toEqual([]);
    expect(retried.status.canaryWeight ?? 0).toBe(0);
    expect(retried.status.phase).toBe("Failed");
    expect(retried.status.conditions?.find(c => c.type === "Progressing")?.reason).toBe(
      "ProbeFailed",
    );
  });

  // The header route sends testers to the canary before any weight; pending probes hold only the
  // first weight rise, so abort, failed gates and the header route still work meanwhile.
  const POOLS_SPEC: ModelRolloutSpec = {
    pools: { httpRoute: "route", stable: "pool-v1", canary: "pool-v2" },
    analysis: { metrics: [PROBE_METRIC] },
    steps: [
      { setHeaderRoute: { match: [{ headerName: "x-canary", headerValue: { exact: "yes" } }] } },
      { pause: {} },
      { setWeight: 10 },
    ],
  };
  // Both pools answer for model m: the same wrong answer from both is inconclusive.
  const poolsObs = (canary: string, stable: string, extra: Partial<Observations> = {}) => ({
    ...obsWith({ probe: { canary: [answer("m", canary)], stable: [answer("m", stable)] } }),
    templateContext: {
      ...CTX,
      scope: "pools" as const,
      canary: "pool-v2",
      stable: "pool-v1",
      modelName: "m",
    },
    ...extra,
  });
  const pendingObs = (extra: Partial<Observations> = {}) => poolsObs("Rome", "Rome", extra);

  it("abort while the probes are pending: Aborted and the header route removed", () => {
    const held = reconcileRollout(POOLS_SPEC, undefined, pendingObs(), NOW);
    expect(held.status.headerRoute).toBeDefined();
    const aborted = reconcileRollout(POOLS_SPEC, held.status, pendingObs({ action: "abort" }), NOW);
    expect(aborted.status.phase).toBe("Aborted");
    expect(aborted.status.headerRoute).toBeUndefined();
    expect(aborted.actions.map(a => a.type)).toContain("removeHeaderRoute");
    expect(weights(aborted)).toEqual([0]);
  });

  it("pending probes never let the first weight rise, whatever is promoted", () => {
    const paused = reconcileRollout(POOLS_SPEC, undefined, pendingObs(), NOW).status;
    const held = [];
    for (const action of ["promote", "promote-full"] as const) {
      const r = reconcileRollout(POOLS_SPEC, paused, pendingObs({ action }), NOW);
      expect(weights(r).filter(w => w > 0)).toEqual([]);
      expect(r.status.phase).toBe("Progressing");
      expect(r.status.conditions?.find(c => c.type === "Ready")?.reason).toBe("ProbePending");
      expect(r.status.conditions?.find(c => c.type === "Progressing")?.reason).toBe("ProbePending");
      expect(r.requeueAfterMs).toBeGreaterThan(0);
      held.push(r.status);
    }
    // Once they pass, the weight rises.
    expect(weights(reconcileRollout(POOLS_SPEC, held[0], poolsObs("Paris", "Paris"), NOW))).toEqual(
      [10],
    );
  });
});
