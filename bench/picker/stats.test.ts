import { percentile, poissonArrivals, seededRandom, summarize } from "./stats";

describe("bench statistics", () => {
  it("takes nearest-rank percentiles", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it("summarizes unsorted values", () => {
    const s = summarize([5, 1, 3, 2, 4]);
    expect(s).toMatchObject({ count: 5, mean: 3, p50: 3, p99: 5, max: 5 });
  });

  it("draws the same Poisson arrivals from the same seed, at about the asked rate", () => {
    const a = poissonArrivals(100, 60_000, seededRandom(42));
    const b = poissonArrivals(100, 60_000, seededRandom(42));
    expect(a).toEqual(b);
    expect(a.length).toBeGreaterThan(5700);
    expect(a.length).toBeLessThan(6300);
    expect(a.every((t, i) => i === 0 || t >= a[i - 1])).toBe(true);
  });
});
