// json-merge-patch (RFC 7386) against the engine's hand-written statusMergePatch: same patches on
// the wire, so the engine can switch to the library. The library keeps keys whose value is
// undefined (a status member set to undefined would not be removed), hence the JSON round trip.
import { describe, expect, it } from "@jest/globals";
import fc from "fast-check";
import { apply, generate } from "json-merge-patch";
import { statusMergePatch } from "./engine";
import type { ModelRolloutStatus } from "./types";

/** The replacement for engine.statusMergePatch: null when nothing changed (skip the write). */
function libraryMergePatch(
  prev: ModelRolloutStatus | undefined,
  next: ModelRolloutStatus,
): Record<string, unknown> | null {
  const json = (v: unknown) => JSON.parse(JSON.stringify(v ?? {})) as Record<string, unknown>;
  return generate(json(prev), json(next)) ?? null;
}

/** What goes on the wire (undefined members dropped); key order is not compared. */
const wire = (v: unknown) => (v === null ? null : (JSON.parse(JSON.stringify(v)) as unknown));

const iso = (s: number) => new Date(Date.UTC(2025, 0, 1) + s * 1000).toISOString();

describe("json-merge-patch gives the engine's status patches", () => {
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
    expect(wire(libraryMergePatch(prev, next))).toEqual(expected);
    expect(wire(statusMergePatch(prev, next))).toEqual(expected);
  });

  it("agrees with statusMergePatch on any two statuses, and the patch turns one into the other", () => {
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
        const ours = libraryMergePatch(prev, next);
        expect(wire(ours)).toEqual(wire(statusMergePatch(prev, next)));
        expect(apply(wire(prev), ours ?? {})).toEqual(wire(next));
      }),
      { numRuns: 3000 },
    );
  });
});
