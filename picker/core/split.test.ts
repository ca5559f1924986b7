import { mathRandom, seededRng } from "./rng";
import { TrafficSplitter, weightedChoice } from "./split";
import { WeightedTarget } from "./types";

/** Pearson chi-square statistic of observed counts against expected shares. */
function chiSquare(observed: number[], shares: number[]): number {
  const n = observed.reduce((a, b) => a + b, 0);
  return observed.reduce((acc, o, i) => acc + (o - n * shares[i]) ** 2 / (n * shares[i]), 0);
}
// Critical value of chi-square with 1 degree of freedom at p = 0.0001.
const CHI2_1DF_P0001 = 15.137;

function draw(targets: WeightedTarget[], rng: () => number, n: number): number[] {
  const counts = targets.map(() => 0);
  for (let i = 0; i < n; i++) {
    const name = weightedChoice(targets, rng);
    counts[targets.findIndex(t => t.name === name)]++;
  }
  return counts;
}

const ninetyTen: WeightedTarget[] = [
  { name: "travel-helper-v1", weight: 90 },
  { name: "travel-helper-v2", weight: 10 },
];

describe("weightedChoice", () => {
  it("splits 90/10 within chi-square bounds (seeded RNG, 5,000 draws)", () => {
    const counts = draw(ninetyTen, seededRng(42), 5000);
    expect(chiSquare(counts, [0.9, 0.1])).toBeLessThan(CHI2_1DF_P0001);
  });

  it("splits 90/10 within chi-square bounds (Math.random, 2,000 draws)", () => {
    const counts = draw(ninetyTen, mathRandom, 2000);
    expect(chiSquare(counts, [0.9, 0.1])).toBeLessThan(CHI2_1DF_P0001);
  });

  it("the test can fail: a 90/10 split is far outside 50/50 bounds", () => {
    const counts = draw(ninetyTen, seededRng(7), 2000);
    expect(chiSquare(counts, [0.5, 0.5])).toBeGreaterThan(CHI2_1DF_P0001);
  });

  it("weights are proportions, not percentages", () => {
    const counts = draw(
      [
        { name: "a", weight: 3 },
        { name: "b", weight: 1 },
      ],
      seededRng(3),
      4000,
    );
    expect(chiSquare(counts, [0.75, 0.25])).toBeLessThan(CHI2_1DF_P0001);
  });

  it("never picks a zero weight and returns undefined when nothing has weight", () => {
    const rng = seededRng(1);
    for (let i = 0; i < 1000; i++) {
      expect(
        weightedChoice(
          [
            { name: "off", weight: 0 },
            { name: "on", weight: 5 },
          ],
          rng,
        ),
      ).toBe("on");
    }
    expect(weightedChoice([{ name: "off", weight: 0 }], rng)).toBeUndefined();
    expect(weightedChoice([], rng)).toBeUndefined();
  });

  it("an RNG at its top end still returns a positive-weight target", () => {
    expect(
      weightedChoice(
        [
          { name: "a", weight: 1 },
          { name: "b", weight: 0 },
        ],
        () => 0.9999999999999999,
      ),
    ).toBe("a");
  });
});

describe("TrafficSplitter stickiness", () => {
  it("keeps a session on its version while that version has weight", () => {
    const splitter = new TrafficSplitter({ rng: seededRng(9), stickyCapacity: 1000 });
    const first = splitter.choose("travel-helper", ninetyTen, "session-1")!;
    for (let i = 0; i < 200; i++) {
      expect(splitter.choose("travel-helper", ninetyTen, "session-1")).toBe(first);
    }
    // Weights change but the version keeps weight > 0: the session stays.
    const shifted = [
      { name: "travel-helper-v1", weight: 1 },
      { name: "travel-helper-v2", weight: 99 },
    ];
    expect(splitter.choose("travel-helper", shifted, "session-1")).toBe(first);
  });

  it("moves a session when its version leaves the split", () => {
    const splitter = new TrafficSplitter({ rng: seededRng(5), stickyCapacity: 10 });
    const onlyV1 = [{ name: "v1", weight: 1 }];
    expect(splitter.choose("m", onlyV1, "s")).toBe("v1");
    const onlyV2 = [
      { name: "v1", weight: 0 },
      { name: "v2", weight: 1 },
    ];
    expect(splitter.choose("m", onlyV2, "s")).toBe("v2");
    expect(splitter.choose("m", [{ name: "v2", weight: 1 }], "s")).toBe("v2");
  });

  it("sessions as a whole still follow the weights", () => {
    const splitter = new TrafficSplitter({ rng: seededRng(11), stickyCapacity: 100000 });
    const counts = [0, 0];
    for (let s = 0; s < 3000; s++) {
      const t = splitter.choose("m", ninetyTen, `s${s}`);
      counts[t === "travel-helper-v1" ? 0 : 1]++;
    }
    expect(chiSquare(counts, [0.9, 0.1])).toBeLessThan(CHI2_1DF_P0001);
  });

  it("draws independently without a session key and separates models", () => {
    const splitter = new TrafficSplitter({ rng: seededRng(13), stickyCapacity: 10 });
    const seen = new Set<string>();
    const even = [
      { name: "a", weight: 1 },
      { name: "b", weight: 1 },
    ];
    for (let i = 0; i < 50; i++) seen.add(splitter.choose("m", even)!);
    expect(seen.size).toBe(2);
    expect(splitter.stickySessions).toBe(0);
    splitter.choose("m1", [{ name: "x", weight: 1 }], "s");
    expect(splitter.choose("m2", [{ name: "y", weight: 1 }], "s")).toBe("y");
  });

  it("forgets the least recently used session when full", () => {
    const splitter = new TrafficSplitter({ rng: seededRng(17), stickyCapacity: 2 });
    const t = [{ name: "v", weight: 1 }];
    splitter.choose("m", t, "a");
    splitter.choose("m", t, "b");
    splitter.choose("m", t, "c");
    expect(splitter.stickySessions).toBe(2);
  });
});
