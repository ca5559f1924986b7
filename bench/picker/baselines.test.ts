import { seededRng } from "../../picker/core/rng";
import { Scheduler, defaultSaturationConfig } from "../../picker/core/scheduler";
import { EndpointView } from "../../picker/core/types";
import { Baseline, baselineSchedulerConfig } from "./baselines";

const endpoints: EndpointView[] = ["a", "b", "c"].map(name => ({
  name,
  podName: name,
  address: `${name}:8000`,
  dispatchedSinceScrape: 0,
  inflight: name === "a" ? 100 : 0, // load must not matter to the baselines
}));
const request = {
  model: "m",
  targetModel: "m",
  adapter: false,
  sheddable: false,
  prefixHashes: [],
};
const ctx = { nowMs: 0, rng: seededRng(3), saturation: defaultSaturationConfig };

function picks(strategy: Baseline, n: number): string[] {
  const scheduler = new Scheduler(baselineSchedulerConfig(strategy));
  return Array.from({ length: n }, () => {
    const r = scheduler.schedule(request, endpoints, ctx);
    if (!r.ok) throw new Error(r.error.message);
    expect(r.ranked).toHaveLength(3);
    return r.ranked[0].name;
  });
}

describe("baseline schedulers", () => {
  it("round-robin cycles through the endpoints whatever their load", () => {
    expect(picks("round-robin", 7)).toEqual(["a", "b", "c", "a", "b", "c", "a"]);
  });

  it("queue-only sends to the least loaded endpoint", () => {
    expect(new Set(picks("queue-only", 20))).toEqual(new Set(["b", "c"]));
  });

  it("random spreads about evenly whatever the load", () => {
    const counts: Record<string, number> = {};
    for (const p of picks("random", 3000)) counts[p] = (counts[p] ?? 0) + 1;
    for (const name of ["a", "b", "c"]) {
      expect(counts[name]).toBeGreaterThan(900);
      expect(counts[name]).toBeLessThan(1100);
    }
  });
});
