// The setHeaderRoute step in the engine: written before any weight, recorded in status, re-asserted
// while the rollout runs, removed exactly once at the end, on rollback and on a target change.
import { describe, expect, it } from "@jest/globals";
import {
  type Observations,
  type ReconcileResult,
  reconcileRollout,
  refusedWrite,
  validateSpec,
} from "./engine";
import { removeHeaderRoute, setHeaderRoute } from "./traffic/header-route";
import {
  finalizeHTTPRoute,
  type HTTPRoute,
  inspectHTTPRoute,
  setHTTPRouteWeight,
} from "./traffic/httproute";
import type { ModelRolloutSpec, ModelRolloutStatus, RolloutStep } from "./types";

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

// The property test's counterexample: the route write of a setHeaderRoute step went through but
// the status write was lost, and the step was not entered again (paused, aborted) before the end.
describe("setHeaderRoute step after a lost status write", () => {
  const SPLIT = { stable: "pool-v1", canary: "pool-v2" };
  const RULE = "modelrollout-r-header";
  const A = [{ headerName: "x-tester", headerValue: { exact: "a" } }];
  const steps: RolloutStep[] = [{ setHeaderRoute: { match: A } }, { pause: {} }, { setWeight: 0 }];
  const base: ModelRolloutSpec = { ...specOf(steps), onInconclusive: "Rollback" };
  const route0: HTTPRoute = {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: { name: "route", namespace: "default" },
    spec: {
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: "/v1" } }],
          backendRefs: [
            {
              group: "inference.networking.x-k8s.io",
              kind: "InferencePool",
              name: "pool-v1",
              weight: 1,
            },
          ],
        },
      ],
    },
  };
  const applied = (route: HTTPRoute, r: ReconcileResult) =>
    r.actions.reduce((cur, a) => {
      if (a.type === "setWeight") return setHTTPRouteWeight(cur, SPLIT, a.canaryWeight) ?? cur;
      if (a.type === "finalize") return finalizeHTTPRoute(cur, SPLIT, a.outcome) ?? cur;
      if (a.type === "setHeaderRoute") return setHeaderRoute(cur, SPLIT, RULE, a.match) ?? cur;
      if (a.type === "removeHeaderRoute") return removeHeaderRoute(cur, RULE) ?? cur;
      return cur;
    }, route);
  const headerRules = (route: HTTPRoute) => (route.spec?.rules ?? []).filter(r => r.name === RULE);
  /** The rule is in the route (from the first reconcile), status was never written. */
  const lostStatusWrite = () => {
    const first = reconcileRollout(base, undefined, obsOf(), at(0));
    const route = applied(route0, first);
    expect(headerRules(route)).toHaveLength(1);
    return route;
  };

  it("paused before the step runs again: the rule is removed while status does not record it", () => {
    let route = lostStatusWrite();
    const paused = { ...base, paused: true };
    const r = reconcileRollout(paused, undefined, obsOf({ generation: 2 }), at(0));
    expect(r.status.headerRoute).toBeUndefined();
    expect(traffic(r)).toEqual([{ type: "removeHeaderRoute", target: TARGET }]);
    route = applied(route, r);
    expect(headerRules(route)).toHaveLength(0);
    // Resumed: the step is entered, written and recorded again, and removed once at the end.
    const resumed = reconcileRollout(base, r.status, obsOf({ generation: 3 }), at(1));
    expect(resumed.status.headerRoute).toEqual({ match: A, step: 0 });
    route = applied(route, resumed);
    expect(headerRules(route)).toHaveLength(1);
    const done = reconcileRollout(base, resumed.status, obsOf({ action: "promote" }), at(2));
    expect(done.status.phase).toBe("Succeeded");
    route = applied(route, done);
    expect(headerRules(route)).toHaveLength(0);
  });

  it("aborted before the step runs again: the rollback removes the unrecorded rule", () => {
    let route = lostStatusWrite();
    const paused = { ...base, paused: true };
    const s1 = reconcileRollout(paused, undefined, obsOf({ generation: 2 }), at(0)).status;
    const aborted = reconcileRollout(paused, s1, obsOf({ generation: 2, action: "abort" }), at(1));
    expect(aborted.status.phase).toBe("Aborted");
    expect(traffic(aborted)).toContainEqual({ type: "removeHeaderRoute", target: TARGET });
    route = applied(route, aborted);
    expect(headerRules(route)).toHaveLength(0);
  });

  it("no setHeaderRoute step: nothing is removed (no header action at all)", () => {
    const plain: ModelRolloutSpec = specOf([{ pause: {} }, { setWeight: 10 }]);
    const s1 = reconcileRollout(plain, undefined, obsOf(), at(0));
    const s2 = reconcileRollout(plain, s1.status as ModelRolloutStatus, obsOf(), at(1));
    const aborted = reconcileRollout(plain, s2.status, obsOf({ action: "abort" }), at(2));
    for (const r of [s1, s2, aborted])
      expect(r.actions.some(a => a.type === "removeHeaderRoute")).toBe(false);
  });
});

// A setHeaderRoute step the route cannot take (here: already 16 rules), right after a weight step.
// The reconciler applies the actions in order and, when one throws, lets refusedWrite decide the
// status from the previous one: the weights already written must be the ones status records.
describe("setHeaderRoute step refused after a weight step", () => {
  const SPLIT = { stable: "pool-v1", canary: "pool-v2" };
  const RULE = "modelrollout-r-header";
  const spec = specOf([{ setWeight: 10 }, { setHeaderRoute: { match: TESTERS } }, { pause: {} }]);
  const full = (): HTTPRoute => ({
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: { name: "route", namespace: "default" },
    spec: {
      rules: [
        {
          backendRefs: [
            { group: "inference.networking.x-k8s.io", kind: "InferencePool", name: "pool-v1" },
          ],
        },
        ...Array.from({ length: 15 }, (_, i) => ({
          name: `r${i}`,
          backendRefs: [{ name: "svc", port: 80 }],
        })),
      ],
    },
  });
  /** One reconcile as reconciler.ts runs it: engine, actions in order, refusal judged. */
  const reconcileOnce = (route: HTTPRoute, prev: ModelRolloutStatus | undefined, s: number) => {
    const obs = obsOf();
    let result = reconcileRollout(spec, prev, obs, at(s));
    for (const action of result.actions) {
      try {
        if (action.type === "setWeight")
          route = setHTTPRouteWeight(route, SPLIT, action.canaryWeight) ?? route;
        if (action.type === "setHeaderRoute")
          route = setHeaderRoute(route, SPLIT, RULE, action.match) ?? route;
      } catch (err) {
        const refused = refusedWrite(spec, prev, obs, { err, action, namespace: "default" }, at(s));
        expect(refused).toBeDefined(); // judged, not thrown past the status write
        result = refused!.result;
        break;
      }
    }
    return { route, status: result.status };
  };

  it("leaves no weight unrecorded: the weight is written and recorded, then the step is refused", () => {
    let route = full();
    let status: ModelRolloutStatus | undefined;
    for (let s = 0; s < 4; s++) {
      ({ route, status } = reconcileOnce(route, status, s * 10));
      expect(inspectHTTPRoute(route, SPLIT).canaryWeight ?? 0).toBe(status.canaryWeight ?? 0);
    }
    expect(status!.canaryWeight).toBe(10);
    expect(status!.currentStep).toBe(1);
    expect(status!.headerRoute).toBeUndefined();
    expect(status!.conditions?.find(c => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "HeaderRouteInvalid",
      message: expect.stringContaining("limit of 16"),
    });
  });

  it("enters the header step only in a later reconcile than the weight it follows", () => {
    const first = reconcileRollout(spec, undefined, obsOf(), at(0));
    // (the removal by name is the lost-status-write guard: it writes nothing on this route)
    expect(traffic(first).map(a => a.type)).toEqual(["setWeight", "removeHeaderRoute"]);
    expect(first.status).toMatchObject({ currentStep: 1, canaryWeight: 10 });
    expect(first.requeueAfterMs).toBeDefined();
    const second = reconcileRollout(spec, first.status, obsOf(), at(0.5));
    expect(traffic(second).map(a => a.type)).toEqual(["setHeaderRoute", "setWeight"]);
    expect(second.status).toMatchObject({ currentStep: 2, headerRoute: { step: 1 } });
  });
});
