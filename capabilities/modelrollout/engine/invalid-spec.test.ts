// A spec that turns invalid mid-rollout (e.g. its ClusterAnalysisTemplate was deleted): the weight
// stays where it is, and an abort still rolls the traffic back to stable.
import { describe, expect, it } from "@jest/globals";
import { reconcileRollout, type Observations } from "../engine";
import type { ModelRolloutSpec } from "../types";

const NOW = new Date("2025-01-01T00:00:00.000Z");
const SPEC: ModelRolloutSpec = {
  pools: { httpRoute: "route", stable: "pool-v1", canary: "pool-v2" },
  steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }],
};
const TARGET = { kind: "HTTPRoute", name: "route", stable: "pool-v1", canary: "pool-v2" };
const broken = (extra: Partial<Observations> = {}): Observations => ({
  generation: 2,
  targets: { ready: true },
  specError: {
    reason: "TemplateNotFound",
    message: "ClusterAnalysisTemplate error-rate not found",
  },
  ...extra,
});

describe("invalid spec mid-rollout", () => {
  const at50 = reconcileRollout(SPEC, undefined, { generation: 1, targets: { ready: true } }, NOW);

  it("keeps the weight and touches no traffic", () => {
    expect(at50.status.canaryWeight).toBe(50);
    const r = reconcileRollout(SPEC, at50.status, broken({ action: "promote" }), NOW);
    expect(r.actions.filter(a => a.type === "setWeight")).toEqual([]);
    expect(r.status.canaryWeight).toBe(50);
    expect(r.status.conditions?.find(c => c.type === "Ready")?.reason).toBe("TemplateNotFound");
  });

  it("an abort rolls back to stable on the target in status", () => {
    const r = reconcileRollout(SPEC, at50.status, broken({ action: "abort" }), NOW);
    expect(r.status.phase).toBe("Aborted");
    expect(r.status.canaryWeight).toBe(0);
    expect(r.actions).toContainEqual({ type: "setWeight", canaryWeight: 0, target: TARGET });
    expect(r.actions).toContainEqual({ type: "finalize", outcome: "RolledBack", target: TARGET });
    expect(r.status.lastAction).toMatchObject({ action: "abort", result: "Applied" });
    expect(r.status.conditions?.find(c => c.type === "Ready")?.reason).toBe("TemplateNotFound");
    // Applied once: the annotation still there is recognised as handled.
    const again = reconcileRollout(SPEC, r.status, broken({ action: "abort" }), NOW);
    expect(again.actions.filter(a => a.type === "setWeight")).toEqual([]);
    expect(again.status.phase).toBe("Aborted");
  });
});
