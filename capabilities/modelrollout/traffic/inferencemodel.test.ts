import { describe, expect, it } from "@jest/globals";
import {
  finalizeInferenceModel,
  type InferenceModel,
  inspectInferenceModel,
  setInferenceModelWeight,
  type TargetModel,
} from "./inferencemodel";

const SPLIT = { stable: "travel-helper-v1", canary: "travel-helper-v2" };

function loramodel(targetModels: TargetModel[] | undefined): InferenceModel {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferenceModel",
    metadata: { name: "loramodel", namespace: "default", resourceVersion: "3" },
    spec: {
      criticality: "Critical",
      modelName: "travelhelper",
      poolRef: {
        group: "inference.networking.x-k8s.io",
        kind: "InferencePool",
        name: "mymodel-pool-v1",
      },
      ...(targetModels ? { targetModels } : {}),
    },
  };
}

const pairs = (m: InferenceModel | null) => m?.spec?.targetModels?.map(t => [t.name, t.weight]);

/** The CRD's rules: weight 1..1e6 on all entries or none, at most 10 entries. */
function expectValid(m: InferenceModel | null) {
  const list = m?.spec?.targetModels ?? [];
  expect(list.length).toBeLessThanOrEqual(10);
  const weighted = list.filter(t => t.weight !== undefined);
  expect(weighted.length === 0 || weighted.length === list.length).toBe(true);
  for (const t of weighted) {
    expect(Number.isInteger(t.weight)).toBe(true);
    expect(t.weight).toBeGreaterThanOrEqual(1);
    expect(t.weight).toBeLessThanOrEqual(1_000_000);
  }
}

describe("setInferenceModelWeight", () => {
  it("gives the seed's 90/10 split from a stable-only model and keeps every other field", () => {
    const before = loramodel([{ name: "travel-helper-v1", weight: 100 }]);
    const after = setInferenceModelWeight(before, SPLIT, 10);
    expect(pairs(after)).toEqual([
      ["travel-helper-v1", 90],
      ["travel-helper-v2", 10],
    ]);
    expect({ ...after, spec: { ...after!.spec, targetModels: [] } }).toEqual({
      ...before,
      spec: { ...before.spec, targetModels: [] },
    });
    expectValid(after);
    expect(setInferenceModelWeight(after!, SPLIT, 10)).toBeNull();
  });

  it("removes the entry whose weight would be 0 (0 is invalid there)", () => {
    const at10 = setInferenceModelWeight(loramodel([{ name: "travel-helper-v1" }]), SPLIT, 10)!;
    expect(pairs(setInferenceModelWeight(at10, SPLIT, 100))).toEqual([["travel-helper-v2", 100]]);
    expect(pairs(setInferenceModelWeight(at10, SPLIT, 0))).toEqual([["travel-helper-v1", 100]]);
  });

  it("sets weights on all entries when the list had none, keeping unrelated entries' share", () => {
    const before = loramodel([{ name: "travel-helper-v1" }, { name: "other-adapter" }]);
    const after = setInferenceModelWeight(before, SPLIT, 10);
    // other-adapter had 1/2 of the traffic and still has 100/200.
    expect(pairs(after)).toEqual([
      ["travel-helper-v1", 90],
      ["travel-helper-v2", 10],
      ["other-adapter", 100],
    ]);
    expectValid(after);
    expect(pairs(setInferenceModelWeight(after!, SPLIT, 50))).toEqual([
      ["travel-helper-v1", 50],
      ["travel-helper-v2", 50],
      ["other-adapter", 100],
    ]);
  });

  it("scales unrelated weighted entries once so the pair can be split in percent", () => {
    const before = loramodel([
      { name: "other-adapter", weight: 500 },
      { name: "travel-helper-v1", weight: 1000, extra: "kept" },
    ]);
    const after = setInferenceModelWeight(before, SPLIT, 25);
    expect(after?.spec?.targetModels).toEqual([
      { name: "other-adapter", weight: 50 },
      { name: "travel-helper-v1", weight: 75, extra: "kept" },
      { name: "travel-helper-v2", weight: 25, extra: "kept" },
    ]);
  });

  it("keeps the order when the canary comes first", () => {
    const before = loramodel([
      { name: "travel-helper-v2", weight: 10 },
      { name: "travel-helper-v1", weight: 90 },
    ]);
    expect(pairs(setInferenceModelWeight(before, SPLIT, 30))).toEqual([
      ["travel-helper-v2", 30],
      ["travel-helper-v1", 70],
    ]);
  });

  it("throws with a clear message when it cannot", () => {
    expect(() => setInferenceModelWeight(loramodel([{ name: "x" }]), SPLIT, 10)).toThrow(
      "neither travel-helper-v1 nor travel-helper-v2 is in the list",
    );
    const full = loramodel([
      { name: "travel-helper-v1", weight: 1 },
      ...Array.from({ length: 9 }, (_, i) => ({ name: `a${i}`, weight: 1 })),
    ]);
    expect(() => setInferenceModelWeight(full, SPLIT, 10)).toThrow(
      "exceed the limit of 10 entries",
    );
    expect(() =>
      setInferenceModelWeight(loramodel([{ name: "travel-helper-v1" }]), SPLIT, -1),
    ).toThrow(RangeError);
  });
});

describe("finalizeInferenceModel", () => {
  const at10 = () =>
    setInferenceModelWeight(loramodel([{ name: "travel-helper-v1", weight: 100 }]), SPLIT, 10)!;
  it("Promoted leaves only the canary, RolledBack only the stable", () => {
    expect(pairs(finalizeInferenceModel(at10(), SPLIT, "Promoted"))).toEqual([
      ["travel-helper-v2", 100],
    ]);
    expect(pairs(finalizeInferenceModel(at10(), SPLIT, "RolledBack"))).toEqual([
      ["travel-helper-v1", 100],
    ]);
    const done = finalizeInferenceModel(at10(), SPLIT, "RolledBack")!;
    expect(finalizeInferenceModel(done, SPLIT, "RolledBack")).toBeNull();
  });
});

describe("inspectInferenceModel", () => {
  it("reports entries, split, claims and problems", () => {
    const at10 = setInferenceModelWeight(
      loramodel([{ name: "travel-helper-v1", weight: 100 }]),
      SPLIT,
      10,
    )!;
    expect(inspectInferenceModel(at10, SPLIT)).toEqual({
      hasStable: true,
      hasCanary: true,
      canaryWeight: 10,
      claims: ["InferenceModel/default/loramodel"],
    });
    expect(inspectInferenceModel(loramodel(undefined), SPLIT).problem?.reason).toBe(
      "TargetModelNotFound",
    );
    const full = loramodel([
      { name: "travel-helper-v1" },
      ...Array.from({ length: 9 }, (_, i) => ({ name: `a${i}` })),
    ]);
    expect(inspectInferenceModel(full, SPLIT).problem?.reason).toBe("TooManyTargetModels");
  });
});
