import { Job, p95, simulate } from "./queue-sim";

describe("queue model of bench part (b)", () => {
  it("lets a central queue use whichever slot frees first, where a pod's queue waits", () => {
    // Eight jobs fill the eight slots; jobs 0 and 4 are long and round-robin puts both on pod
    // 0 — and the ninth job behind them.
    const jobs: Job[] = Array.from({ length: 9 }, (_, i) => ({
      arrival: i < 8 ? 0 : 0.001,
      service: i === 0 || i === 4 ? 1 : 0.1,
    }));
    expect(simulate(jobs, "round-robin")[8]).toBeCloseTo(1.099, 6);
    expect(simulate(jobs, "central-fifo")[8]).toBeCloseTo(0.199, 6);
  });

  it("takes the 95th percentile of the counted jobs", () => {
    const jobs = Array.from({ length: 100 }, (_, i) => ({ arrival: 3 + i, service: 1 }));
    const latency = jobs.map((_, i) => i + 1);
    expect(p95(jobs, latency)).toBe(95);
  });
});
