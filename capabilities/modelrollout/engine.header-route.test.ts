// The setHeaderRoute step in the engine: written before any weight, recorded in status, re-asserted
// while the rollout runs, removed exactly once at the end, on rollback and on a target change.
import { describe, expect, it } from "@jest/globals";
import { type Observations, type ReconcileResult, reconcileRollout, validateSpec } from "./engine";
import type { ModelRolloutSpec, RolloutStep } from "./types";

const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const at = (s: number) => new Date(T0 + s * 1000);
const POOLS = { httpRoute: "route", stable: "pool-v1", canary: "pool-v2" };
const TESTERS = [{ headerName: "x-canary", headerValue: { exact: "yes" } }];
const TARGET = { kind: "HTTPRoute", name: "route", stable: "pool-v1", canary: "pool-v2" };

const specOf = (steps: RolloutStep[], pools = POOLS): ModelRolloutSpec => ({ pools, steps });
const obsOf = (extra: Partial<Observations> = {}): Observations => ({
  generation: 1,
  targets: { ready: true },
  ...extra,
});
const traffic = (r: ReconcileResult) =>
  r.actions.filter(a => a.type !== "event" && a.type !== "clearActionAnnotation");
const reasons = (r: ReconcileResult) =>
  r.actions.flatMap(a => (a.type === "event" ? [a.reason] : []));

const PLAN: RolloutStep[] = [
  { setHeaderRoute: { match: TESTERS } },
  { pause: {} },
  { setWeight: 50 },
];

describe("setHeaderRoute step", () => {
  it("writes the header route before any weight and records it in status", () => {
    const r = reconcileRollout(specOf(PLAN), undefined, obsOf(), at(0));
    expect(traffic(r)).toEqual([{ type: "setHeaderRoute", match: TESTERS, target: TARGET }]);
    expect(r.status.canaryWeight).toBeUndefined();
    expect(r.status.headerRoute).toEqual({ match: TESTERS, step: 0 });
    expect(r.status).toMatchObject({ currentStep: 1, phase: "Paused" });
    expect(reasons(r)).toContain("HeaderRouteSet");
  });

  it("is re-asserted idempotently while the rollout runs (a lost write heals)", () => {
    const s1 = reconcileRollout(specOf(PLAN), undefined, obsOf(), at(0)).status;
    const again = reconcileRollout(specOf(PLAN), s1, obsOf(), at(10));
    expect(again.status).toEqual(s1);
    expect(traffic(again)).toEqual([{ type: "setHeaderRoute", match: TESTERS, target: TARGET }]);
    expect(reasons(again)).toEqual([]);
  });

  it("a crash before the status write enters the step again: same write, no second rule", () => {
    const first = reconcileRollout(specOf(PLAN), undefined, obsOf(), at(0));
    const replay = reconcileRollout(specOf(PLAN), undefined, obsOf(), at(1));
    expect(traffic(replay)).toEqual(traffic(first));
  });

  it("is removed once when the rollout succeeds, after the weights", () => {
    const s1 = reconcileRollout(specOf(PLAN), undefined, obsOf(), at(0)).status;
    const done = reconcileRollout(specOf(PLAN), s1, obsOf({ action: "promote" }), at(10));
    expect(done.status.phase).toBe("Succeeded");
    expect(done.status.headerRoute).toBeUndefined();
    expect(traffic(done).map(a => a.type)).toEqual([
      "setWeight",
      "setWeight",
      "finalize",
      "removeHeaderRoute",
    ]);
    const after = reconcileRollout(specOf(PLAN), done.status, obsOf(), at(20));
    expect(traffic(after)).toEqual([]);
  });

  it("is removed on abort, after the weights", () => {
    const s1 = reconcileRollout(specOf(PLAN), undefined, obsOf(), at(0)).status;
    const aborted = reconcileRollout(specOf(PLAN), s1, obsOf({ action: "abort" }), at(10));
    expect(aborted.status).toMatchObject({ phase: "Aborted", canaryWeight: 0 });
    expect(aborted.status.headerRoute).toBeUndefined();
    expect(traffic(aborted)).toEqual([
      { type: "setWeight", canaryWeight: 0, target: TARGET },
      { type: "finalize", outcome: "RolledBack", target: TARGET },
      { type: "removeHeaderRoute", target: TARGET },
    ]);
  });

  it("an empty match list removes it; a second one with nothing recorded does nothing", () => {
    const plan: RolloutStep[] = [
      { setHeaderRoute: { match: TESTERS } },
      { setWeight: 10 },
      { setHeaderRoute: { match: [] } },
      { setHeaderRoute: { match: [] } },
      { pause: {} },
    ];
    const r = reconcileRollout(specOf(plan), undefined, obsOf(), at(0));
    expect(traffic(r).map(a => a.type)).toEqual([
      "setHeaderRoute",
      "setWeight",
      "removeHeaderRoute",
    ]);
    expect(r.status.headerRoute).toBeUndefined();
    expect(reasons(r).filter(x => x.startsWith("HeaderRoute"))).toEqual([
      "HeaderRouteSet",
      "HeaderRouteRemoved",
      "HeaderRouteRemoved",
    ]);
  });

  it("a changed target removes the header route from the old one", () => {
    const s1 = reconcileRollout(specOf(PLAN), undefined, obsOf(), at(0)).status;
    const moved = specOf(PLAN, { ...POOLS, canary: "pool-v3" });
    const r = reconcileRollout(moved, s1, obsOf({ generation: 2 }), at(10));
    expect(r.actions[0]).toEqual({ type: "removeHeaderRoute", target: TARGET });
    // and the new target gets its own from steps[0]
    expect(traffic(r)[1]).toMatchObject({ type: "setHeaderRoute", target: { canary: "pool-v3" } });
    expect(r.status.headerRoute).toEqual({ match: TESTERS, step: 0 });
  });

  it("is refused for adapters and for malformed headers", () => {
    const adapters = {
      adapters: { inferenceModel: "m", stable: "a", canary: "b" },
      steps: [{ setHeaderRoute: { match: TESTERS } }],
    } as ModelRolloutSpec;
    expect(validateSpec(adapters)?.message).toContain("needs spec.pools");
    const bad = (match: unknown) =>
      validateSpec(specOf([{ setHeaderRoute: { match } } as RolloutStep]))?.message;
    expect(bad([{ headerName: "bad name", headerValue: { exact: "1" } }])).toContain("headerName");
    expect(bad([{ headerName: "a", headerValue: { exact: "1", prefix: "2" } }])).toContain(
      "exactly one",
    );
    expect(bad([{ headerName: "a", headerValue: {} }])).toContain("exactly one");
    expect(
      bad([
        { headerName: "X-A", headerValue: { exact: "1" } },
        { headerName: "x-a", headerValue: { exact: "2" } },
      ]),
    ).toContain("twice");
    expect(
      validateSpec(specOf([{ setWeight: 1, setHeaderRoute: { match: [] } }]))?.message,
    ).toContain("exactly one of setWeight, pause, analysis or setHeaderRoute");
    expect(bad(TESTERS)).toBeUndefined();
    // a blocked spec changes nothing
    const r = reconcileRollout(adapters, undefined, obsOf(), at(0));
    expect(traffic(r)).toEqual([]);
    expect(r.status.conditions?.find(c => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "InvalidSpec",
    });
  });
});
