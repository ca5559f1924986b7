import {
  PathRecord,
  PickerKind,
  RateRecord,
  SideBySide,
  ratio,
  rateFigures,
  ratioTable,
} from "./side-by-side-report";

const rate = (latenciesMs: number[], extra: Partial<RateRecord> = {}): RateRecord => ({
  latenciesMs,
  requests: latenciesMs.length,
  unsent: 0,
  failed: 0,
  cpuSeconds: 0,
  seconds: 1,
  ...extra,
});

function path(
  kind: PickerKind,
  phases: "request" | "both",
  r: RateRecord,
  tput: number,
): PathRecord {
  return {
    kind,
    phases,
    byRate: new Map([[1000, r]]),
    throughput: [tput],
    coresAt64: [0.5],
    oneCoreDecisions: phases === "request" ? [tput * 2] : [],
    rssMiB: [100, 200],
  };
}

describe("side-by-side figures", () => {
  it("divides picker by EPP, and says when a ratio has no meaning", () => {
    expect(ratio(3190, 3666)).toBe("0.87");
    expect(ratio(0, 0)).toBe("=");
    expect(ratio(1, 0)).toBe("–");
    expect(ratio(NaN, 2)).toBe("–");
    expect(ratio(-0.1, 0.2)).toBe("–");
    expect(ratio(42, 2)).toBe("21");
  });

  it("measures added latency against the direct path, shares against all requests", () => {
    const direct = rate([1, 1, 1, 1]);
    const r = rate([2, 2, 3, 5], { requests: 10, unsent: 2, failed: 4, cpuSeconds: 0.004 });
    expect(rateFigures(r, direct, 2)).toEqual({
      addedP50: 1,
      addedP99: 4,
      unsentShare: 0.2,
      failedShare: 0.4,
      cpuPerRequestUs: 500,
      // 2 ms/s idle over the phases' 1 s: 2 ms of the 4 ms were not the requests'.
      cpuAboveIdlePerRequestUs: 250,
    });
  });

  it("prints each picker's figure per phase mode and the ratio to the EPP's", () => {
    const s: SideBySide = {
      rates: [1000],
      rounds: 3,
      sliceSeconds: 4,
      idleSeconds: 10,
      direct: new Map([[1000, rate([1, 1])]]),
      paths: [
        path("picker", "request", rate([2, 2], { cpuSeconds: 0.0008 }), 3000),
        path("epp", "request", rate([3, 3], { cpuSeconds: 0.001 }), 4000),
        path("lwepp", "request", rate([1.5, 1.5]), 6000),
        path("picker", "both", rate([2, 2]), 2000),
        path("epp", "both", rate([2, 2]), 2000),
        path("lwepp", "both", rate([2, 2]), 4000),
      ],
      pickers: (["picker", "epp", "lwepp"] as PickerKind[]).map(kind => ({
        kind,
        idleCpuMsPerSecond: [kind === "picker" ? 60 : 30, 40],
        peakMiB: 300,
      })),
    };
    const table = ratioTable(s).split("\n");
    const row = (start: string) => table.find(l => l.startsWith(`| ${start}`));
    expect(row("throughput")).toBe(
      "| throughput with 64 in flight (req/s, median of rounds) | 3000 / 2000 | 4000 / 2000 | 6000 / 4000 | 0.75 / 1.00 | 0.50 / 0.50 |",
    );
    expect(row("its CPU with 64 in flight")).toContain("| 0.50 / 0.50 | 0.50 / 0.50 |");
    expect(row("decisions per second alone")).toContain(
      "| 6000 / – | 8000 / – | 12000 / – | 0.75 / – |",
    );
    expect(row("added p50 at 1000")).toBe(
      "| added p50 at 1000 req/s (ms) | 1.00 / 1.00 | 2.00 / 1.00 | 0.50 / 1.00 | 0.50 / 1.00 | 2.00 / 1.00 |",
    );
    expect(row("CPU per request at 1000")).toContain("| 400 / 0 | 500 / 0 |");
    expect(row("idle CPU")).toContain("| 60.0 / 40.0 | 30.0 / 40.0 | 30.0 / 40.0 | 2.00 / 1.00 |");
    expect(row("RSS while its load ran, highest")).toContain("| 200 / 200 |");
    expect(row("unsent at 1000")).toContain("| = / = |");
  });
});
