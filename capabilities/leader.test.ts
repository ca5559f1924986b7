import { describe, expect, it } from "@jest/globals";
import { DEFAULT_TIMING, leaseName, leaseStep, microTime, observe } from "./leader";

const T = 1_000_000;

describe("leaseStep", () => {
  it("creates a missing lease, renews its own, takes an empty one", () => {
    expect(leaseStep(undefined, false, "a", undefined, T)).toEqual({ kind: "create" });
    expect(leaseStep({ holderIdentity: "a" }, true, "a", undefined, T)).toEqual({ kind: "renew" });
    expect(leaseStep({ holderIdentity: "" }, true, "a", undefined, T)).toEqual({ kind: "acquire" });
  });

  it("takes another's lease only after its renewTime stayed unchanged for the lease duration (local clock)", () => {
    const lease = {
      holderIdentity: "b",
      renewTime: "2026-01-01T00:00:00.000000Z",
      leaseDurationSeconds: 12,
    };
    // First sight: whatever its renewTime says (another machine's clock), wait a full duration.
    let seen = observe(lease, undefined, T);
    expect(leaseStep(lease, true, "a", seen, T)).toEqual({ kind: "wait", holder: "b" });
    expect(leaseStep(lease, true, "a", seen, T + 11_999).kind).toBe("wait");
    expect(leaseStep(lease, true, "a", seen, T + 12_000).kind).toBe("acquire");
    // A renewal restarts the wait.
    const renewed = { ...lease, renewTime: "2026-01-01T00:00:05.000000Z" };
    seen = observe(renewed, seen, T + 6_000);
    expect(leaseStep(renewed, true, "a", seen, T + 12_000).kind).toBe("wait");
    expect(leaseStep(renewed, true, "a", seen, T + 18_000).kind).toBe("acquire");
  });

  it("uses the configured duration when the lease has none", () => {
    const lease = { holderIdentity: "b", renewTime: "x" };
    const seen = observe(lease, undefined, T);
    expect(leaseStep(lease, true, "a", seen, T + DEFAULT_TIMING.leaseDurationMs).kind).toBe(
      "acquire",
    );
  });
});

describe("lease helpers", () => {
  it("writes MicroTime with six fractional digits", () => {
    expect(microTime(Date.parse("2026-12-07T06:28:32.123Z"))).toBe("2026-12-07T06:28:32.123000Z");
  });
  it("names one lease per set of namespaces", () => {
    expect(leaseName(undefined)).toBe("modelrollout-operator");
    expect(leaseName(["b", "a"])).toBe(leaseName(["a", "b"]));
    expect(leaseName(["a"])).not.toBe(leaseName(["b"]));
    expect(leaseName(["a"])).toMatch(/^modelrollout-operator-[0-9a-f]{10}$/);
  });
});
