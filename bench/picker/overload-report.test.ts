import { OverloadRecord, overloadFigures, overloadTable } from "./overload-report";

const record: OverloadRecord = {
  contender: "picker",
  multiple: 1.5,
  rate: 60,
  critical: [
    { status: 200, latencyMs: 100 },
    { status: 200, latencyMs: 300 },
    { status: 429, latencyMs: 2 },
    { status: 0, latencyMs: NaN }, // never sent
  ],
  sheddable: [
    { status: 429, latencyMs: 1 },
    { status: 429, latencyMs: 3 },
    { status: 200, latencyMs: 50 },
    { status: 503, latencyMs: 10 },
  ],
  unsent: 1,
  seconds: 2,
  mostHeld: 7,
  mostPodWaiting: 1,
};

describe("overloadFigures", () => {
  it("counts goodput, admitted latency per class, 429s apart from failures and unsent", () => {
    const f = overloadFigures(record);
    expect(f.goodput).toBe(1.5); // 3 answered 200 in 2 s
    expect([f.criticalP50, f.criticalP99]).toEqual([100, 300]);
    expect([f.sheddableP50, f.sheddableP99]).toEqual([50, 50]);
    expect(f.share429).toBe(3 / 8);
    expect([f.criticalShare429, f.sheddableShare429]).toEqual([1 / 4, 2 / 4]);
    expect([f.p50Of429, f.p99Of429]).toEqual([2, 3]);
    expect(f.failedShare).toBe(1 / 8); // the 503; the unsent one is counted apart
    expect(f.unsentShare).toBe(1 / 8);
  });

  it("makes one column per picker and rate", () => {
    const table = overloadTable([record, { ...record, contender: "epp", mostHeld: NaN }]);
    expect(table).toContain("picker at 1.5× (60 req/s)");
    expect(table).toContain("EPP v1.5.0 at 1.5×");
    expect(table).toContain("| 7 / 1 | – / 1 |");
  });
});
