// statusMergePatch (json-merge-patch, RFC 7386) gives the patches the engine's former
// hand-written one gave (the cases below were its tests), and applying a patch to the old status
// gives the new one, for any two statuses.
import { describe, expect, it } from "@jest/globals";
import fc from "fast-check";
import { apply } from "json-merge-patch";
import { statusMergePatch } from "./engine";
import type { ModelRolloutStatus } from "./types";

/** What goes on the wire (undefined members dropped); key order is not compared. */
const wire = (v: unknown) => (v === null ? null : (JSON.parse(JSON.stringify(v)) as unknown));

const iso = (s: number) => new Date(Date.UTC(2025, 0, 1) + s * 1000).toISOString();

describe("statusMergePatch", () => {
  const a: ModelRolloutStatus = {
    phase: "Paused",
    currentStep: 1,
    pauseStartedAt: iso(0),
    conditions: [],
  };
  const b: ModelRolloutStatus = { phase: "Progressing", currentStep: 2, conditions: [] };
  // x: a member the current types do not know (written by an older or newer operator).
  const withRun = {
    analysis: { startedAt: iso(0), phase: "Running", metrics: [], x: 1 },
  } as unknown as ModelRolloutStatus;
  const failed: ModelRolloutStatus = {
    analysis: { startedAt: iso(0), phase: "Failed", metrics: [] },
  };

  const ready = {
    type: "Ready",
    status: "True" as const,
    reason: "Progressing",
    message: "",
    lastTransitionTime: iso(0),
  };
  const cases: [string, ModelRolloutStatus | undefined, ModelRolloutStatus, unknown][] = [
    ["nothing changed", a, structuredClone(a), null],
    [
      "removed fields become null",
      a,
      b,
      { phase: "Progressing", currentStep: 2, pauseStartedAt: null },
    ],
    ["no status yet", undefined, b, b],
    ["nested members", withRun, failed, { analysis: { phase: "Failed", x: null } }],
    [
      "a member set to undefined is removed",
      a,
      { ...a, pauseStartedAt: undefined },
      { pauseStartedAt: null },
    ],
    [
      "arrays are replaced whole",
      { conditions: [ready] },
      { conditions: [ready, { ...ready, type: "Progressing" }] },
      { conditions: [ready, { ...ready, type: "Progressing" }] },
    ],
  ];
  it.each(cases)("%s", (_, prev, next, expected) => {
    expect(wire(statusMergePatch(prev, next))).toEqual(expected);
  });

  it("turns any status into any other, and is null when nothing changed", () => {
    // JSON values as a status holds them: no nulls (null in a merge patch means "remove"),
    // members that may be undefined, arrays replaced whole.
    const { value } = fc.letrec<{ value: unknown }>(tie => ({
      value: fc.oneof(
        { depthSize: "small" },
        fc.boolean(),
        fc.integer({ min: -3, max: 3 }),
        fc.constantFrom("a", "b", iso(0)),
        fc.array(tie("value"), { maxLength: 3 }),
        fc.dictionary(fc.constantFrom("p", "q", "r"), fc.option(tie("value"), { nil: undefined })),
      ),
    }));
    const status = fc.dictionary(
      fc.constantFrom("phase", "currentStep", "analysis", "conditions", "message"),
      fc.option(value, { nil: undefined }),
    ) as fc.Arbitrary<ModelRolloutStatus>;
    // Half the time `next` is a small edit of `prev`, so unchanged subtrees are exercised too.
    const pair = status.chain(prev =>
      fc.tuple(fc.constant(prev), fc.oneof(status, fc.constant(structuredClone(prev)))),
    );
    fc.assert(
      fc.property(pair, ([prev, next]) => {
        const patch = statusMergePatch(prev, next);
        expect(apply(wire(prev) ?? {}, patch ?? {})).toEqual(wire(next ?? {}));
        if (JSON.stringify(wire(prev)) === JSON.stringify(wire(next))) expect(patch).toBeNull();
      }),
      { numRuns: 3000 },
    );
  });
});
