// weightPatch: the patch holds only weights and whole list entries, and applied (RFC 6902, by the
// small applier below) to the object as read gives exactly the adapter's result.
import { describe, expect, it } from "@jest/globals";
import fc from "fast-check";
import type { Operation } from "kubernetes-fluent-client";
import { finalizeHTTPRoute, type HTTPRoute, setHTTPRouteWeight } from "./httproute";
import { type InferenceModel, setInferenceModelWeight } from "./inferencemodel";
import {
  type InferenceModelRewrite,
  setInferenceModelRewriteWeight,
} from "./inferencemodelrewrite";
import { weightPatch } from "./weight-patch";
import { splitWeightedList } from "./weighted";

/** RFC 6902 add / remove / replace on a copy of `doc` (what the apiserver does with them). */
function applyPatch<T>(doc: T, operations: Operation[]): T {
  const root = structuredClone(doc) as unknown;
  for (const operation of operations) {
    const tokens = operation.path
      .split("/")
      .slice(1)
      .map(t => t.replaceAll("~1", "/").replaceAll("~0", "~"));
    const last = tokens.pop()!;
    let parent = root as Record<string, unknown>;
    for (const t of tokens) {
      parent = parent[t] as Record<string, unknown>;
      if (parent === undefined) throw new Error(`${operation.path}: no ${t}`);
    }
    if (Array.isArray(parent)) {
      const index = Number(last);
      const inRange = operation.op === "add" ? index <= parent.length : index < parent.length;
      if (!Number.isInteger(index) || !inRange) throw new Error(`${operation.path}: bad index`);
      if (operation.op === "add") parent.splice(index, 0, operation.value);
      else if (operation.op === "remove") parent.splice(index, 1);
      else if (operation.op === "replace") parent[index] = operation.value;
      else throw new Error(`unexpected ${operation.op}`);
    } else {
      if (operation.op !== "add" && !(last in parent))
        throw new Error(`${operation.path}: no such member`);
      if (operation.op === "remove") delete parent[last];
      else if (operation.op === "add" || operation.op === "replace") parent[last] = operation.value;
      else throw new Error(`unexpected ${operation.op}`);
    }
  }
  return root as T;
}

const X = "inference.networking.x-k8s.io";
const SPLIT = { stable: "pool-v1", canary: "pool-v2" };

/** A route with members the operator does not know, a rule it must not touch, odd member names. */
function route(): HTTPRoute {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: { name: "r", namespace: "default", resourceVersion: "7" },
    spec: {
      parentRefs: [{ name: "gw" }],
      rules: [
        { name: "other", backendRefs: [{ kind: "Service", name: "svc", port: 80, weight: 3 }] },
        {
          name: "llm",
          backendRefs: [
            { kind: "Service", name: "mirror", port: 80, weight: 1 },
            { group: X, kind: "InferencePool", name: "pool-v1", port: 8000, weight: 1 },
          ],
          "x.example.com/a~b": { kept: true },
        },
      ],
      futureField: [1, 2, 3],
    },
  } as unknown as HTTPRoute;
}

describe("weightPatch on the HTTPRoute adapter", () => {
  it("first step: the canary ref added next to the stable one, the stable weight replaced", () => {
    const before = route();
    const after = setHTTPRouteWeight(before, SPLIT, 10)!;
    const patch = weightPatch(before.spec, after.spec);
    expect(patch).toEqual([
      {
        op: "add",
        path: "/spec/rules/1/backendRefs/2",
        value: { group: X, kind: "InferencePool", name: "pool-v2", port: 8000, weight: 10 },
      },
      { op: "replace", path: "/spec/rules/1/backendRefs/1/weight", value: 90 },
    ]);
    expect(applyPatch(before, patch)).toEqual(after);
  });

  it("later steps replace the two weights and nothing else", () => {
    const before = setHTTPRouteWeight(route(), SPLIT, 10)!;
    const after = setHTTPRouteWeight(before, SPLIT, 50)!;
    expect(weightPatch(before.spec, after.spec)).toEqual([
      { op: "replace", path: "/spec/rules/1/backendRefs/1/weight", value: 50 },
      { op: "replace", path: "/spec/rules/1/backendRefs/2/weight", value: 50 },
    ]);
  });

  it("promotion removes the stable ref and gives the canary the weight; rollback the reverse", () => {
    const during = setHTTPRouteWeight(route(), SPLIT, 50)!;
    const promoted = finalizeHTTPRoute(during, SPLIT, "Promoted")!;
    const patch = weightPatch(during.spec, promoted.spec);
    expect(patch).toEqual([
      { op: "remove", path: "/spec/rules/1/backendRefs/1" },
      { op: "replace", path: "/spec/rules/1/backendRefs/1/weight", value: 100 },
    ]);
    expect(applyPatch(during, patch)).toEqual(promoted);
    const rolledBack = finalizeHTTPRoute(during, SPLIT, "RolledBack")!;
    expect(weightPatch(during.spec, rolledBack.spec)).toEqual([
      { op: "remove", path: "/spec/rules/1/backendRefs/2" },
      { op: "replace", path: "/spec/rules/1/backendRefs/1/weight", value: 100 },
    ]);
  });

  it("a ref without a weight (the API's default 1) gets one with `add`", () => {
    const before = route();
    delete (before.spec!.rules![1].backendRefs![1] as { weight?: number }).weight;
    const after = setHTTPRouteWeight(before, SPLIT, 0)!;
    expect(weightPatch(before.spec, after.spec)).toEqual([
      { op: "add", path: "/spec/rules/1/backendRefs/1/weight", value: 100 },
    ]);
  });

  it("is empty when nothing changes", () => {
    const r = setHTTPRouteWeight(route(), SPLIT, 10)!;
    expect(weightPatch(r.spec, structuredClone(r.spec))).toEqual([]);
  });
});

describe("weightPatch on the weighted lists", () => {
  it("InferenceModel: an unweighted list gets a weight on every entry, the canary is added", () => {
    const before = {
      metadata: { name: "m" },
      spec: {
        modelName: "m",
        criticality: "Critical",
        targetModels: [{ name: "a-v1" }, { name: "other" }],
      },
    } as InferenceModel;
    const after = setInferenceModelWeight(before, { stable: "a-v1", canary: "a-v2" }, 10)!;
    const patch = weightPatch(before.spec, after.spec);
    expect(patch).toEqual([
      { op: "add", path: "/spec/targetModels/1", value: { name: "a-v2", weight: 10 } },
      { op: "add", path: "/spec/targetModels/0/weight", value: 90 },
      { op: "add", path: "/spec/targetModels/2/weight", value: 100 },
    ]);
    expect(applyPatch(before, patch)).toEqual(after);
  });

  it("InferenceModelRewrite: every rule that lists the pair, other rules and matches untouched", () => {
    const before = {
      metadata: { name: "rw" },
      spec: {
        poolRef: { name: "p" },
        rules: [
          { matches: [{ model: "x" }], targets: [{ modelRewrite: "x-v1", weight: 100 }] },
          { matches: [{ model: "a" }], targets: [{ modelRewrite: "a-v1", weight: 100 }] },
          { matches: [{ model: "b" }], targets: [{ modelRewrite: "a-v1", weight: 100 }] },
        ],
      },
    } as unknown as InferenceModelRewrite;
    const after = setInferenceModelRewriteWeight(before, { stable: "a-v1", canary: "a-v2" }, 30)!;
    const patch = weightPatch(before.spec, after.spec);
    expect(patch.map(o => `${o.op} ${o.path}`)).toEqual([
      "add /spec/rules/1/targets/1",
      "replace /spec/rules/1/targets/0/weight",
      "add /spec/rules/2/targets/1",
      "replace /spec/rules/2/targets/0/weight",
    ]);
    expect(applyPatch(before, patch)).toEqual(after);
  });

  it("any split of any list: only weights and whole entries, and it gives the adapter's result", () => {
    const names = fc.constantFrom("s", "c", "u1", "u2", "u~/3");
    const entry = fc.record(
      { name: names, weight: fc.integer({ min: 1, max: 1000 }), extra: fc.constantFrom("x", "y") },
      { requiredKeys: ["name"] },
    );
    fc.assert(
      fc.property(
        fc.array(entry, { maxLength: 6 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 100 }),
        (list, weighted, canaryWeight) => {
          const entries = list.map(e => (weighted ? e : { ...e, weight: undefined }));
          fc.pre(entries.some(e => e.name === "s" || e.name === "c"));
          const before = {
            spec: { keep: { "a/b": 1 }, targetModels: JSON.parse(JSON.stringify(entries)) },
          };
          const after = {
            spec: {
              ...before.spec,
              targetModels: splitWeightedList(
                before.spec.targetModels,
                "name",
                "s",
                "c",
                canaryWeight,
              ),
            },
          };
          const patch = weightPatch(before.spec, after.spec);
          expect(applyPatch(before, patch)).toEqual(after);
          for (const o of patch) expect(o.path).toMatch(/^\/spec\/targetModels\/\d+(\/weight)?$/);
        },
      ),
    );
  });
});

describe("weightPatch on any HTTPRoute rule", () => {
  it("any step or end state: only weights and whole refs, and it gives the adapter's result", () => {
    const ref = fc.record(
      {
        kind: fc.constantFrom("InferencePool", "Service"),
        name: fc.constantFrom("pool-v1", "pool-v2", "svc"),
        weight: fc.integer({ min: 0, max: 1000 }),
        port: fc.constant(8000),
      },
      { requiredKeys: ["kind", "name"] },
    );
    const action = fc.oneof(
      fc.integer({ min: 0, max: 100 }),
      fc.constantFrom("Promoted" as const, "RolledBack" as const),
    );
    fc.assert(
      fc.property(fc.array(ref, { maxLength: 5 }), action, (refs, act) => {
        const before = route();
        before.spec!.rules![1].backendRefs = refs.map(r => ({ group: X, ...r }));
        fc.pre(refs.some(r => r.kind === "InferencePool" && r.name !== "svc"));
        fc.pre(
          new Set(refs.map(r => `${r.kind}/${r.name}`)).size === refs.length, // no duplicate refs
        );
        const after =
          typeof act === "number"
            ? setHTTPRouteWeight(before, SPLIT, act)
            : finalizeHTTPRoute(before, SPLIT, act);
        const patch = after ? weightPatch(before.spec, after.spec) : [];
        expect(applyPatch(before, patch)).toEqual(after ?? before);
        for (const o of patch)
          expect(o.path).toMatch(/^\/spec\/rules\/1\/backendRefs\/\d+(\/weight)?$/);
      }),
    );
  });
});

describe("weightPatch refuses anything but weights", () => {
  it.each([
    ["a changed name", { rules: [{ name: "b", weight: 1 }] }, "replace /spec/rules/0/name"],
    [
      "a changed entry of a weighted list",
      { rules: [{ name: "a", weight: 1, backendRefs: [{ name: "y" }] }] },
      "add /spec/rules/0/backendRefs",
    ],
    [
      "a new member",
      { rules: [{ name: "a", weight: 1 }], hostnames: ["h"] },
      "add /spec/hostnames",
    ],
    ["a removed member", {}, "remove /spec/rules"],
    ["an entry of a list that is not weighted", { rules: [] }, "remove /spec/rules/0"],
  ])("%s", (_, after, what) => {
    expect(() => weightPatch({ rules: [{ name: "a", weight: 1 }] }, after)).toThrow(
      `refusing to write ${what}: the operator writes only weights and list entries`,
    );
  });
});
