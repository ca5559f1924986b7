import { describe, expect, it } from "@jest/globals";
import { type Claimant, conflictingOwner } from "./conflict";

const claimant = (name: string, created: string, extra: Partial<Claimant> = {}): Claimant => ({
  name,
  creationTimestamp: `2025-01-0${created}T00:00:00Z`,
  started: false,
  finished: false,
  claims: ["HTTPRoute/default/r/rule/index=0"],
  ...extra,
});

describe("conflictingOwner", () => {
  it("the older of two new rollouts wins", () => {
    const a = claimant("a", "1");
    const b = claimant("b", "2");
    expect(conflictingOwner(a, [a, b])).toBeUndefined();
    expect(conflictingOwner(b, [a, b])).toBe("a");
  });

  it("a started rollout keeps its target against an older newcomer", () => {
    const running = claimant("running", "2", { started: true });
    const older = claimant("older", "1");
    expect(conflictingOwner(running, [running, older])).toBeUndefined();
    expect(conflictingOwner(older, [running, older])).toBe("running");
  });

  it("finished rollouts and disjoint claims do not conflict; ties break by name", () => {
    const done = claimant("done", "1", { finished: true, started: true });
    const other = claimant("other", "1", { claims: ["InferenceModel/default/m"] });
    const me = claimant("me", "2");
    expect(conflictingOwner(me, [done, other, me])).toBeUndefined();
    expect(conflictingOwner(done, [me])).toBeUndefined();
    expect(conflictingOwner(claimant("b", "1"), [claimant("a", "1")])).toBe("a");
  });
});
