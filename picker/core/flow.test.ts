import { seededRng } from "./rng";
import {
  FlowQueue,
  currentLoad,
  defaultFlowControlConfig,
  endpointsWithFreeSlot,
  localityChoice,
  runningCapacity,
} from "./flow";
import { SchedulingContext, SchedulingRequest, defaultSaturationConfig } from "./scheduler";
import { EndpointMetrics, EndpointView } from "./types";

const NOW = 5000;
const ctx: SchedulingContext = {
  nowMs: NOW,
  rng: seededRng(1),
  saturation: defaultSaturationConfig,
};

function ep(
  name: string,
  m: Partial<EndpointMetrics> | undefined,
  extra: Partial<EndpointView> = {},
): EndpointView {
  return {
    name,
    address: `${name}:8000`,
    podName: name,
    metrics: m && { waiting: 0, running: 0, kvCacheUsage: 0, scrapedAtMs: NOW, ...m },
    dispatchedSinceScrape: 0,
    inflight: 0,
    ...extra,
  };
}

const req = (over: Partial<SchedulingRequest> = {}): SchedulingRequest => ({
  model: "m",
  targetModel: "m",
  adapter: false,
  sheddable: false,
  prefixHashes: [],
  ...over,
});

const learn = { ...defaultFlowControlConfig, maxRunning: 0 };

describe("running capacity", () => {
  it("is the flag when given, else the most any endpoint was seen running while others waited", () => {
    const pods = [
      ep("a", {}, { learntMaxRunning: 2 }),
      ep("b", {}),
      ep("c", {}, { learntMaxRunning: 3 }),
    ];
    expect(runningCapacity(pods, { ...learn, maxRunning: 8 })).toBe(8);
    expect(runningCapacity(pods, learn)).toBe(3);
    expect(runningCapacity([ep("b", {})], learn)).toBeUndefined();
  });
});

describe("current load", () => {
  it("takes requests that finished since the scrape off at once, never below our own count", () => {
    expect(currentLoad(ep("a", { running: 2, waiting: 1 }, { completedSinceScrape: 1 }))).toBe(2);
    expect(currentLoad(ep("a", { running: 2 }, { dispatchedSinceScrape: 1 }))).toBe(3);
    expect(currentLoad(ep("a", { running: 0 }, { inflight: 2, completedSinceScrape: 1 }))).toBe(2);
    expect(currentLoad(ep("a", undefined, { inflight: 1 }))).toBe(1);
  });
});

describe("endpoints with a free slot", () => {
  it("are those below the running capacity; everyone while it is unknown", () => {
    const pods = [ep("full", { running: 2 }, { learntMaxRunning: 2 }), ep("free", { running: 1 })];
    expect(endpointsWithFreeSlot(req(), pods, learn, ctx).map(e => e.name)).toEqual(["free"]);
    const unknown = [ep("x", { running: 5 }), ep("y", { running: 9 })];
    expect(endpointsWithFreeSlot(req(), unknown, learn, ctx)).toHaveLength(2);
  });

  it("leave out pods whose adapter slots all run other adapters", () => {
    const lora = (running: string[]) => ({ running, waiting: [], maxLora: 1 });
    const pods = [
      ep("other", { running: 1, lora: lora(["v1"]) }, { learntMaxRunning: 2 }),
      ep("same", { running: 1, lora: lora(["v2"]) }),
    ];
    const v2 = req({ targetModel: "v2", adapter: true });
    expect(endpointsWithFreeSlot(v2, pods, learn, ctx).map(e => e.name)).toEqual(["same"]);
  });
});

describe("delay scheduling for prefix locality", () => {
  const [a, b, c] = ["a", "b", "c"].map(n => ep(n, {}));
  const config = { ...defaultFlowControlConfig, localityWaitMs: 200 };

  it("starts on a free endpoint that holds the prefix, else waits up to localityWaitMs", () => {
    expect(localityChoice([a, b], [b, c], 0, config)).toEqual([b]);
    expect(localityChoice([a], [b, c], 0, config)).toBeUndefined();
    expect(localityChoice([a], [b, c], 199, config)).toBeUndefined();
    expect(localityChoice([a], [b, c], 200, config)).toEqual([a]);
  });

  it("without a preferred endpoint or a free one, changes nothing", () => {
    expect(localityChoice([a, b], [], 0, config)).toEqual([a, b]);
    expect(localityChoice([], [a], 500, config)).toEqual([]);
  });
});

describe("FlowQueue", () => {
  it("offers held items oldest first, keeps refused ones, and forces overdue ones", () => {
    const q = new FlowQueue<string>();
    q.hold("a", 0);
    q.hold("b", 50);
    q.hold("c", 90);
    const seen: string[] = [];
    q.drain(100, 100, (item, overdue) => {
      seen.push(`${item}${overdue ? "!" : ""}`);
      return item === "b";
    });
    expect(seen).toEqual(["a!", "b", "c"]);
    expect(q.size).toBe(2);
    const h = q.hold("d", 100);
    expect(q.remove(h)).toBe(true);
    expect(q.remove(h)).toBe(false);
  });
});

describe("FlowQueue", () => {
  it("offers critical requests before sheddable ones, each oldest first", () => {
    const q = new FlowQueue<string>();
    q.hold("s1", 0, true);
    q.hold("c1", 1);
    q.hold("s2", 2, true);
    q.hold("c2", 3);
    const offered: string[] = [];
    q.drain(10, 1000, item => {
      offered.push(item);
      return item === "c2" || item === "s1";
    });
    expect(offered).toEqual(["c1", "c2", "s1", "s2"]);
    expect(q.size).toBe(2);
    expect(q.sheddable).toBe(1);
  });

  it("marks requests held maxWaitMs as overdue", () => {
    const q = new FlowQueue<string>();
    q.hold("old", 0);
    q.hold("young", 500);
    const overdue: string[] = [];
    q.drain(1000, 1000, (item, isOverdue) => {
      if (isOverdue) overdue.push(item);
      return isOverdue;
    });
    expect(overdue).toEqual(["old"]);
    expect(q.size).toBe(1);
  });

  it("displaces the newest held sheddable request, and none when only critical ones wait", () => {
    const q = new FlowQueue<string>();
    q.hold("s1", 0, true);
    const c = q.hold("c1", 1);
    q.hold("s2", 2, true);
    expect(q.displaceSheddable()).toBe("s2");
    expect(q.displaceSheddable()).toBe("s1");
    expect(q.displaceSheddable()).toBeUndefined();
    expect(q.sheddable).toBe(0);
    expect(q.remove(c)).toBe(true);
    expect(q.size).toBe(0);
  });
});
