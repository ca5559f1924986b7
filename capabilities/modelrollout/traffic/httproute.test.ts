import { describe, expect, it } from "@jest/globals";
import {
  detectPoolGroup,
  finalizeHTTPRoute,
  type HTTPRoute,
  inspectHTTPRoute,
  setHTTPRouteWeight,
} from "./httproute";

const X = "inference.networking.x-k8s.io";
const GA = "inference.networking.k8s.io";
const SPLIT = { stable: "mymodel-pool-v1", canary: "mymodel-pool-v2" };

/** The seed's HTTPRoute (scenario 1 preparation) plus fields other clients own. */
function seedRoute(): HTTPRoute {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: {
      name: "inference-route",
      namespace: "default",
      resourceVersion: "7",
      labels: { team: "a" },
    },
    spec: {
      parentRefs: [
        {
          group: "gateway.networking.k8s.io",
          kind: "Gateway",
          name: "inference-gateway",
          sectionName: "llm-gw",
        },
      ],
      hostnames: ["llm.example.com"],
      rules: [
        {
          backendRefs: [
            {
              group: X,
              kind: "InferencePool",
              name: "mymodel-pool-v1",
              port: 8000,
              weight: 1,
              filters: [
                {
                  type: "RequestHeaderModifier",
                  requestHeaderModifier: { add: [{ name: "x", value: "1" }] },
                },
              ],
            },
          ],
          matches: [
            { path: { type: "PathPrefix", value: "/v1/completions" } },
            { path: { type: "PathPrefix", value: "/v1/chat/completions" } },
          ],
          timeouts: { request: "300s" },
          futureField: { kept: true },
        },
        {
          name: "health",
          matches: [{ path: { type: "Exact", value: "/healthz" } }],
          backendRefs: [{ name: "mymodel-pool-v1", kind: "Service", port: 80 }],
        },
      ],
    },
    status: { parents: [] },
  };
}

const refs = (route: HTTPRoute | null, rule = 0) => route?.spec?.rules?.[rule].backendRefs ?? [];

describe("setHTTPRouteWeight", () => {
  it("adds the canary ref as a copy of the stable ref and splits 90/10 (the seed's scenario 1)", () => {
    const before = seedRoute();
    const after = setHTTPRouteWeight(before, SPLIT, 10);
    expect(refs(after)).toEqual([
      { ...refs(before)[0], weight: 90 },
      { ...refs(before)[0], name: "mymodel-pool-v2", weight: 10 },
    ]);
    // Everything else is untouched, including the Service ref that shares the stable pool's name.
    const { rules: rulesBefore, ...specBefore } = before.spec!;
    const { rules: rulesAfter, ...specAfter } = after!.spec!;
    expect(specAfter).toEqual(specBefore);
    expect(rulesAfter![1]).toEqual(rulesBefore![1]);
    expect({ ...rulesAfter![0], backendRefs: [] }).toEqual({ ...rulesBefore![0], backendRefs: [] });
    expect(after!.metadata).toEqual(before.metadata);
    expect(after!.status).toEqual(before.status);
    expect(before).toEqual(seedRoute()); // the input is not mutated
  });

  it("returns null when the route already has the split, and moves on from there", () => {
    const at10 = setHTTPRouteWeight(seedRoute(), SPLIT, 10)!;
    expect(setHTTPRouteWeight(at10, SPLIT, 10)).toBeNull();
    const at50 = setHTTPRouteWeight(at10, SPLIT, 50)!;
    expect(refs(at50).map(r => [r.name, r.weight])).toEqual([
      ["mymodel-pool-v1", 50],
      ["mymodel-pool-v2", 50],
    ]);
  });

  it("keeps a 0 weight on an existing ref but never adds a ref just to give it 0", () => {
    expect(refs(setHTTPRouteWeight(seedRoute(), SPLIT, 0)).map(r => [r.name, r.weight])).toEqual([
      ["mymodel-pool-v1", 100],
    ]);
    const at100 = setHTTPRouteWeight(seedRoute(), SPLIT, 100)!;
    expect(refs(at100).map(r => [r.name, r.weight])).toEqual([
      ["mymodel-pool-v1", 0],
      ["mymodel-pool-v2", 100],
    ]);
  });

  it("re-adds a missing stable ref from the canary ref (after a promotion)", () => {
    const promoted = finalizeHTTPRoute(
      setHTTPRouteWeight(seedRoute(), SPLIT, 10)!,
      SPLIT,
      "Promoted",
    )!;
    expect(setHTTPRouteWeight(promoted, SPLIT, 100)).toBeNull();
    const back = setHTTPRouteWeight(promoted, SPLIT, 30)!;
    expect(refs(back).map(r => [r.name, r.weight, r.port])).toEqual([
      ["mymodel-pool-v1", 70, 8000],
      ["mymodel-pool-v2", 30, 8000],
    ]);
  });

  it("operates on every rule that references the pools unless a rule is chosen", () => {
    const route = seedRoute();
    route.spec!.rules!.push({
      name: "batch",
      matches: [{ path: { type: "PathPrefix", value: "/batch" } }],
      backendRefs: [{ group: X, kind: "InferencePool", name: "mymodel-pool-v1" }],
    });
    const all = setHTTPRouteWeight(route, SPLIT, 20)!;
    expect(refs(all, 0).map(r => r.weight)).toEqual([80, 20]);
    expect(refs(all, 2).map(r => r.weight)).toEqual([80, 20]);
    const byName = setHTTPRouteWeight(route, { ...SPLIT, rule: "batch" }, 20)!;
    expect(refs(byName, 0)).toEqual(refs(route, 0));
    expect(refs(byName, 2).map(r => r.weight)).toEqual([80, 20]);
    const byIndex = setHTTPRouteWeight(route, { ...SPLIT, rule: 0 }, 20)!;
    expect(refs(byIndex, 2)).toEqual(refs(route, 2));
    expect(() => setHTTPRouteWeight(route, { ...SPLIT, rule: 5 }, 20)).toThrow("has no rule 5");
    expect(() => setHTTPRouteWeight(route, { ...SPLIT, rule: "health" }, 20)).toThrow(
      'rule "health" of HTTPRoute inference-route has no backendRef',
    );
  });

  it("matches only InferencePool refs of the right group and namespace", () => {
    const route = seedRoute();
    route.spec!.rules![0].backendRefs!.push({
      group: X,
      kind: "InferencePool",
      name: "mymodel-pool-v2",
      namespace: "other",
    });
    const after = setHTTPRouteWeight(route, SPLIT, 10)!;
    expect(refs(after).map(r => [r.name, r.namespace, r.weight])).toEqual([
      ["mymodel-pool-v1", undefined, 90],
      ["mymodel-pool-v2", undefined, 10],
      ["mymodel-pool-v2", "other", undefined],
    ]);
    expect(() => setHTTPRouteWeight(seedRoute(), { ...SPLIT, group: GA }, 10)).toThrow(
      "no rule with a backendRef",
    );
  });

  it("works with GA (inference.networking.k8s.io/v1) pools", () => {
    const route = seedRoute();
    route.spec!.rules![0].backendRefs![0].group = GA;
    const after = setHTTPRouteWeight(route, { ...SPLIT, group: GA }, 10)!;
    expect(refs(after).map(r => [r.group, r.name, r.weight])).toEqual([
      [GA, "mymodel-pool-v1", 90],
      [GA, "mymodel-pool-v2", 10],
    ]);
    expect(detectPoolGroup(route, SPLIT)).toBe(GA);
    expect(detectPoolGroup(seedRoute(), SPLIT)).toBe(X);
  });

  it("rejects weights that are not integer percents", () => {
    expect(() => setHTTPRouteWeight(seedRoute(), SPLIT, 101)).toThrow(RangeError);
    expect(() => setHTTPRouteWeight(seedRoute(), SPLIT, 2.5)).toThrow(RangeError);
  });
});

describe("finalizeHTTPRoute", () => {
  const split10 = () => setHTTPRouteWeight(seedRoute(), SPLIT, 10)!;

  it("Promoted removes the stable ref and gives the canary the pair's weight", () => {
    const promoted = finalizeHTTPRoute(split10(), SPLIT, "Promoted");
    expect(refs(promoted).map(r => [r.name, r.weight])).toEqual([["mymodel-pool-v2", 100]]);
    expect(refs(promoted)[0].filters).toEqual(refs(seedRoute())[0].filters);
    expect(finalizeHTTPRoute(promoted!, SPLIT, "Promoted")).toBeNull();
  });

  it("RolledBack removes the canary ref and gives the stable all of it", () => {
    const rolledBack = finalizeHTTPRoute(split10(), SPLIT, "RolledBack");
    expect(refs(rolledBack).map(r => [r.name, r.weight])).toEqual([["mymodel-pool-v1", 100]]);
    expect(finalizeHTTPRoute(rolledBack!, SPLIT, "RolledBack")).toBeNull();
    expect(rolledBack!.spec!.rules![1]).toEqual(seedRoute().spec!.rules![1]);
  });

  it("Promoted without a canary ref adds it first, so traffic never has nowhere to go", () => {
    const promoted = finalizeHTTPRoute(seedRoute(), SPLIT, "Promoted");
    expect(refs(promoted).map(r => [r.name, r.weight, r.port])).toEqual([
      ["mymodel-pool-v2", 100, 8000],
    ]);
  });
});

describe("inspectHTTPRoute", () => {
  it("reports rules, claims, group, refs and the current split", () => {
    expect(inspectHTTPRoute(seedRoute(), SPLIT)).toEqual({
      rules: [0],
      claims: ["HTTPRoute/default/inference-route/rule/index=0"],
      group: X,
      stableRef: true,
      canaryRef: false,
      canaryWeight: 0,
    });
    const at10 = setHTTPRouteWeight(seedRoute(), SPLIT, 10)!;
    expect(inspectHTTPRoute(at10, SPLIT)).toMatchObject({
      stableRef: true,
      canaryRef: true,
      canaryWeight: 10,
    });
    const named = seedRoute();
    named.spec!.rules![0].name = "chat";
    expect(inspectHTTPRoute(named, SPLIT).claims).toEqual([
      "HTTPRoute/default/inference-route/rule/name=chat",
    ]);
  });

  it("reports why it cannot operate", () => {
    const none = inspectHTTPRoute(seedRoute(), { stable: "a", canary: "b" });
    expect(none.problem).toEqual({
      reason: "BackendRefNotFound",
      message: "HTTPRoute inference-route has no rule with a backendRef to InferencePool a or b",
    });
    expect(inspectHTTPRoute(seedRoute(), { ...SPLIT, rule: "nope" }).problem?.reason).toBe(
      "HTTPRouteRuleNotFound",
    );
    const twice = seedRoute();
    twice.spec!.rules![0].backendRefs!.push({ ...twice.spec!.rules![0].backendRefs![0] });
    expect(inspectHTTPRoute(twice, SPLIT).problem?.reason).toBe("DuplicateBackendRef");
  });
});

describe("optimistic concurrency around the transform", () => {
  /** A store with resourceVersion preconditions, like the apiserver's PUT. */
  class Store {
    private version = 1;
    constructor(private object: HTTPRoute) {}
    get(): HTTPRoute {
      return structuredClone({
        ...this.object,
        metadata: { ...this.object.metadata, resourceVersion: String(this.version) },
      });
    }
    put(next: HTTPRoute): boolean {
      if (next.metadata?.resourceVersion !== String(this.version)) return false; // 409 Conflict
      this.object = structuredClone(next);
      this.version++;
      return true;
    }
  }

  it("a concurrent edit by another client between GET and PUT is kept (re-GET, re-apply)", () => {
    const store = new Store(seedRoute());
    let interfere = true;
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = store.get();
      const next = setHTTPRouteWeight(current, SPLIT, 10);
      if (!next) break;
      if (interfere) {
        // Another client adds a hostname and a rule while the operator computes its change.
        const other = store.get();
        other.spec!.hostnames = ["llm.example.com", "llm2.example.com"];
        other.spec!.rules!.push({ matches: [{ path: { type: "PathPrefix", value: "/new" } }] });
        expect(store.put(other)).toBe(true);
        interfere = false;
      }
      if (store.put(next)) break;
    }
    const final = store.get();
    expect(final.spec!.hostnames).toEqual(["llm.example.com", "llm2.example.com"]);
    expect(final.spec!.rules).toHaveLength(3);
    expect(refs(final).map(r => r.weight)).toEqual([90, 10]);
  });
});
