import { describe, expect, it } from "@jest/globals";
import { headerRuleName, isHeaderRuleName } from "./header-rule-name";
import {
  droppedHeaderRule,
  headerRouteProblem,
  removeHeaderRoute,
  setHeaderRoute,
  toHeaderMatch,
} from "./header-route";
import {
  finalizeHTTPRoute,
  type HTTPRoute,
  inspectHTTPRoute,
  setHTTPRouteWeight,
} from "./httproute";
import { weightPatch } from "./weight-patch";

const X = "inference.networking.x-k8s.io";
const SPLIT = { stable: "pool-v1", canary: "pool-v2" };
const RULE = "modelrollout-r-header";
const TESTERS = [{ headerName: "X-Canary", headerValue: { exact: "yes" } }];

function route(): HTTPRoute {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: { name: "route", namespace: "default", resourceVersion: "3" },
    spec: {
      parentRefs: [{ name: "gw" }],
      rules: [
        {
          name: "other",
          matches: [{ path: { type: "PathPrefix", value: "/other" } }],
          backendRefs: [{ name: "svc", port: 80 }],
        },
        {
          matches: [
            { path: { type: "PathPrefix", value: "/v1" } },
            {
              path: { type: "Exact", value: "/health" },
              headers: [
                { name: "x-canary", value: "old" },
                { name: "x-team", value: "a" },
              ],
            },
          ],
          filters: [
            {
              type: "RequestHeaderModifier",
              requestHeaderModifier: { set: [{ name: "a", value: "b" }] },
            },
          ],
          timeouts: { request: "30s" },
          backendRefs: [
            { group: X, kind: "InferencePool", name: "pool-v1", weight: 100, port: 8000 },
          ],
        },
      ],
    },
  };
}

describe("headerRuleName", () => {
  it("names the rule after the rollout, as a Gateway API rule name", () => {
    expect(headerRuleName("r")).toBe(RULE);
    expect(isHeaderRuleName(RULE)).toBe(true);
    expect(isHeaderRuleName("modelrollout--header")).toBe(false);
    expect(isHeaderRuleName("canary")).toBe(false);
    expect(isHeaderRuleName(undefined)).toBe(false);
  });

  it("keeps a long name within 253 characters, distinct per rollout", () => {
    const a = headerRuleName(`${"a".repeat(230)}.${"b".repeat(22)}`);
    const b = headerRuleName(`${"a".repeat(230)}.${"c".repeat(22)}`);
    for (const n of [a, b]) {
      expect(n.length).toBeLessThanOrEqual(253);
      expect(n).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
      expect(isHeaderRuleName(n)).toBe(true);
    }
    expect(a).not.toBe(b);
  });
});

describe("toHeaderMatch", () => {
  it("maps exact, prefix (escaped, as a regular expression) and regex", () => {
    expect(toHeaderMatch({ headerName: "h", headerValue: { exact: "a.b" } })).toEqual({
      name: "h",
      type: "Exact",
      value: "a.b",
    });
    const prefix = toHeaderMatch({ headerName: "h", headerValue: { prefix: "qa.(1)" } });
    expect(prefix).toEqual({ name: "h", type: "RegularExpression", value: "qa\\.\\(1\\).*" });
    const re = new RegExp(`^(?:${prefix.value})$`);
    expect(re.test("qa.(1)-team")).toBe(true);
    expect(re.test("qaX(1)")).toBe(false);
    expect(toHeaderMatch({ headerName: "h", headerValue: { regex: "t[0-9]+" } })).toEqual({
      name: "h",
      type: "RegularExpression",
      value: "t[0-9]+",
    });
  });
});

describe("setHeaderRoute", () => {
  it("appends a copy of the managed rule with the headers ANDed into each match, to the canary only", () => {
    const before = route();
    const next = setHeaderRoute(before, SPLIT, RULE, TESTERS)!;
    const rules = next.spec!.rules!;
    expect(rules).toHaveLength(3);
    expect(rules.slice(0, 2)).toEqual(before.spec!.rules);
    expect(rules[2]).toEqual({
      name: RULE,
      matches: [
        {
          path: { type: "PathPrefix", value: "/v1" },
          headers: [{ name: "X-Canary", type: "Exact", value: "yes" }],
        },
        {
          path: { type: "Exact", value: "/health" },
          // the copied header of the same name (case-insensitive) gives way to the testers' one
          headers: [
            { name: "X-Canary", type: "Exact", value: "yes" },
            { name: "x-team", value: "a" },
          ],
        },
      ],
      filters: before.spec!.rules![1].filters,
      timeouts: { request: "30s" },
      backendRefs: [{ group: X, kind: "InferencePool", name: "pool-v2", port: 8000, weight: 1 }],
    });
    expect(before).toEqual(route()); // input untouched
  });

  it("is idempotent, and the managed rule stays the managed rule", () => {
    const once = setHeaderRoute(route(), SPLIT, RULE, TESTERS)!;
    expect(setHeaderRoute(once, SPLIT, RULE, TESTERS)).toBeNull();
    expect(inspectHTTPRoute(once, SPLIT)).toMatchObject({ rules: [1], canaryRef: false });
    // weights and the end states touch the managed rule only, never the header rule
    const weighted = setHTTPRouteWeight(once, SPLIT, 30)!;
    expect(weighted.spec!.rules![2]).toEqual(once.spec!.rules![2]);
    expect(weighted.spec!.rules![1].backendRefs!.map(r => [r.name, r.weight])).toEqual([
      ["pool-v1", 70],
      ["pool-v2", 30],
    ]);
    const rolledBack = finalizeHTTPRoute(weighted, SPLIT, "RolledBack")!;
    expect(rolledBack.spec!.rules![2]).toEqual(once.spec!.rules![2]);
  });

  it("copies the canary ref when the managed rule has one, and ignores a rule index pointing at it", () => {
    const weighted = setHTTPRouteWeight(route(), SPLIT, 20)!;
    const next = setHeaderRoute(weighted, SPLIT, RULE, TESTERS)!;
    expect(next.spec!.rules![2].backendRefs).toEqual([
      { group: X, kind: "InferencePool", name: "pool-v2", port: 8000, weight: 1 },
    ]);
    expect(inspectHTTPRoute(next, { ...SPLIT, rule: RULE }).problem?.reason).toBe(
      "HTTPRouteRuleNotFound",
    );
    expect(inspectHTTPRoute(next, { ...SPLIT, rule: 2 }).problem?.message).toContain(
      "setHeaderRoute",
    );
  });

  it("replaces a changed header route where it is; an empty match list removes it", () => {
    const once = setHeaderRoute(route(), SPLIT, RULE, TESTERS)!;
    const other = [{ headerName: "x-tester", headerValue: { prefix: "qa" } }];
    const changed = setHeaderRoute(once, SPLIT, RULE, other)!;
    expect(changed.spec!.rules).toHaveLength(3);
    expect(changed.spec!.rules![2].matches![0].headers).toEqual([
      { name: "x-tester", type: "RegularExpression", value: "qa.*" },
    ]);
    expect(setHeaderRoute(changed, SPLIT, RULE, [])).toEqual(route());
    expect(removeHeaderRoute(changed, RULE)).toEqual(route());
    expect(removeHeaderRoute(route(), RULE)).toBeNull();
  });

  it("a route without matches gets the Gateway API default path", () => {
    const r = route();
    delete r.spec!.rules![1].matches;
    const next = setHeaderRoute(r, SPLIT, RULE, TESTERS)!;
    expect(next.spec!.rules![2].matches).toEqual([
      {
        path: { type: "PathPrefix", value: "/" },
        headers: [{ name: "X-Canary", type: "Exact", value: "yes" }],
      },
    ]);
  });

  it("refuses what the route cannot take, with the reason", () => {
    const full = route();
    for (let i = 0; i < 14; i++)
      full.spec!.rules!.push({ name: `r${i}`, backendRefs: [{ name: "svc", port: 80 }] });
    expect(() => setHeaderRoute(full, SPLIT, RULE, TESTERS)).toThrow("limit of 16");
    const twoManaged = route();
    twoManaged.spec!.rules!.push(structuredClone(twoManaged.spec!.rules![1]));
    expect(() => setHeaderRoute(twoManaged, SPLIT, RULE, TESTERS)).toThrow(
      "set spec.pools.httpRouteRule",
    );
    expect(() =>
      setHeaderRoute(route(), { ...SPLIT, stable: "nope", canary: "nada" }, RULE, TESTERS),
    ).toThrow("no rule with a backendRef");
    const many = Array.from({ length: 16 }, (_, i) => ({
      headerName: `h${i}`,
      headerValue: { exact: "1" },
    }));
    expect(() => setHeaderRoute(route(), SPLIT, RULE, many)).toThrow("more than 16 header matches");
  });
});

describe("the JSON Patch of a header route", () => {
  it("adds and removes the rule whole at its index, nothing else", () => {
    const before = route();
    const added = setHeaderRoute(before, SPLIT, RULE, TESTERS)!;
    expect(weightPatch(before.spec, added.spec)).toEqual([
      { op: "add", path: "/spec/rules/2", value: added.spec!.rules![2] },
    ]);
    expect(weightPatch(added.spec, before.spec)).toEqual([{ op: "remove", path: "/spec/rules/2" }]);
    const changed = setHeaderRoute(added, SPLIT, RULE, [
      { headerName: "x-b", headerValue: { exact: "1" } },
    ])!;
    expect(weightPatch(added.spec, changed.spec)).toEqual([
      { op: "remove", path: "/spec/rules/2" },
      { op: "add", path: "/spec/rules/2", value: changed.spec!.rules![2] },
    ]);
  });

  it("still refuses to add or remove any other rule", () => {
    const before = route();
    const extra = structuredClone(before);
    extra.spec!.rules!.push({ name: "not-ours", backendRefs: [{ name: "svc", port: 80 }] });
    expect(() => weightPatch(before.spec, extra.spec)).toThrow(
      "refusing to write add /spec/rules/2",
    );
    expect(() => weightPatch(extra.spec, before.spec)).toThrow(
      "refusing to write remove /spec/rules/2",
    );
    // a header-route-like name anywhere but spec.rules is no licence either
    const nested = { a: { rules: [] } };
    expect(() => weightPatch(nested, { a: { rules: [{ name: RULE }] } })).toThrow(
      "refusing to write add /spec/a/rules/0",
    );
  });
});

describe("headerRouteProblem (checked when the target is inspected)", () => {
  it("is nothing for a route that takes every setHeaderRoute step, its own rule included", () => {
    const full = route();
    for (let i = 0; i < 13; i++)
      full.spec!.rules!.push({ name: `r${i}`, backendRefs: [{ name: "svc", port: 80 }] });
    // 15 rules: room for one header rule; with ours already there, a rewrite still fits.
    expect(headerRouteProblem(full, SPLIT, RULE, [TESTERS, []])).toBeUndefined();
    const ours = setHeaderRoute(full, SPLIT, RULE, TESTERS)!;
    const other = [{ headerName: "x-b", headerValue: { exact: "1" } }];
    expect(headerRouteProblem(ours, SPLIT, RULE, [other])).toBeUndefined();
    // Only removals: no room needed.
    ours.spec!.rules!.push({ name: "r99", backendRefs: [{ name: "svc", port: 80 }] });
    expect(headerRouteProblem(ours, SPLIT, RULE, [[]])).toBeUndefined();
  });

  it("names the limit and the fix, as HeaderRouteInvalid", () => {
    const full = route();
    for (let i = 0; i < 14; i++)
      full.spec!.rules!.push({ name: `r${i}`, backendRefs: [{ name: "svc", port: 80 }] });
    const problem = headerRouteProblem(full, SPLIT, RULE, [TESTERS]);
    expect(problem?.reason).toBe("HeaderRouteInvalid");
    expect(problem?.message).toMatch(
      /limit of 16.*change the HTTPRoute or the setHeaderRoute step/,
    );
    const twoManaged = route();
    twoManaged.spec!.rules!.push(structuredClone(twoManaged.spec!.rules![1]));
    expect(headerRouteProblem(twoManaged, SPLIT, RULE, [[], TESTERS])?.message).toContain(
      "set spec.pools.httpRouteRule",
    );
    const many = Array.from({ length: 16 }, (_, i) => ({
      headerName: `h${i}`,
      headerValue: { exact: "1" },
    }));
    expect(headerRouteProblem(route(), SPLIT, RULE, [TESTERS, many])).toMatchObject({
      reason: "HeaderRouteInvalid",
      message: expect.stringContaining("more than 16 header matches"),
    });
  });
});

describe("droppedHeaderRule (a CRD without spec.rules[].name)", () => {
  const withoutNames = (r: HTTPRoute): HTTPRoute => {
    const out = structuredClone(r);
    for (const rule of out.spec!.rules!) delete rule.name;
    return out;
  };

  it("is nothing when the written route keeps the rule's name, or when no rule was written", () => {
    const sent = setHeaderRoute(route(), SPLIT, RULE, TESTERS)!;
    expect(droppedHeaderRule(sent, structuredClone(sent), RULE)).toBeUndefined();
    const removed = removeHeaderRoute(sent, RULE)!;
    expect(droppedHeaderRule(removed, withoutNames(removed), RULE)).toBeUndefined();
  });

  it("finds the unnamed copy the write appended and refuses, naming Gateway API v1.4.0", () => {
    const sent = setHeaderRoute(route(), SPLIT, RULE, TESTERS)!;
    const dropped = droppedHeaderRule(sent, withoutNames(sent), RULE);
    expect(dropped?.index).toBe(2);
    expect(dropped?.error.reason).toBe("HeaderRouteUnsupported");
    expect(dropped?.error.message).toContain("Gateway API v1.4.0 or later");
    // Were the copy left (the take-back raced another writer), it refers to the canary pool: the
    // next inspection sees two rules to copy and blocks, rather than appending a third.
    expect(headerRouteProblem(withoutNames(sent), SPLIT, RULE, [TESTERS])?.message).toContain(
      "2 rules",
    );
  });

  it("takes nothing back when it cannot tell which rule is the copy", () => {
    const sent = setHeaderRoute(route(), SPLIT, RULE, TESTERS)!;
    const written = withoutNames(sent);
    written.spec!.rules!.push({ backendRefs: [{ name: "svc", port: 80 }] });
    expect(droppedHeaderRule(sent, written, RULE)?.index).toBe(-1);
  });
});
