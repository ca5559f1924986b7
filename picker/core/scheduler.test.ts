import { PrefixIndex, defaultPrefixConfig, hashPromptBlocks } from "./prefix";
import { seededRng } from "./rng";
import { capacityFilter } from "./plugins/capacity-filter";
import { kvCacheScorer } from "./plugins/kv-cache-utilization-scorer";
import { loraAffinityScorer } from "./plugins/lora-affinity-scorer";
import { maxScorePicker } from "./plugins/max-score-picker";
import { PrefixCacheScorer } from "./plugins/prefix-cache-scorer";
import { estimatedLoad, queueScorer } from "./plugins/queue-scorer";
import {
  Scheduler,
  SchedulingContext,
  SchedulingRequest,
  defaultSaturationConfig,
  isEndpointSaturated,
  isPoolSaturated,
} from "./scheduler";
import { defaultSchedulerConfig, defaultScoreWeights } from "./scheduler-config";
import { EndpointMetrics, EndpointView } from "./types";

const NOW = 10_000;

function ep(
  name: string,
  m: Partial<EndpointMetrics> | undefined,
  extra: Partial<EndpointView> = {},
): EndpointView {
  return {
    name,
    address: `10.0.0.${name.charCodeAt(name.length - 1) % 250}:8000`,
    podName: name,
    metrics: m && { waiting: 0, running: 0, kvCacheUsage: 0, scrapedAtMs: NOW - 10, ...m },
    dispatchedSinceScrape: 0,
    inflight: 0,
    ...extra,
  };
}

function ctx(seed = 1): SchedulingContext {
  return { nowMs: NOW, rng: seededRng(seed), saturation: defaultSaturationConfig };
}

const req = (over: Partial<SchedulingRequest> = {}): SchedulingRequest => ({
  model: "m",
  targetModel: "m",
  adapter: false,
  sheddable: false,
  prefixHashes: [],
  ...over,
});

function schedulerWith(index = new PrefixIndex(1000)) {
  return new Scheduler(defaultSchedulerConfig(defaultScoreWeights, index));
}

describe("saturation", () => {
  it("counts stale, missing, long-queue and full-cache endpoints as saturated", () => {
    const c = ctx();
    expect(isEndpointSaturated(ep("fresh", {}), c)).toBe(false);
    expect(isEndpointSaturated(ep("missing", undefined), c)).toBe(true);
    expect(isEndpointSaturated(ep("stale", { scrapedAtMs: NOW - 201 }), c)).toBe(true);
    expect(isEndpointSaturated(ep("edge", { scrapedAtMs: NOW - 200 }), c)).toBe(false);
    expect(isEndpointSaturated(ep("queue", { waiting: 6 }), c)).toBe(true);
    expect(isEndpointSaturated(ep("queue5", { waiting: 5 }), c)).toBe(false);
    expect(isEndpointSaturated(ep("kv", { kvCacheUsage: 0.81 }), c)).toBe(true);
  });

  it("a pool is saturated only when every endpoint is", () => {
    const c = ctx();
    expect(isPoolSaturated([ep("a", { waiting: 9 }), ep("b", {})], c)).toBe(false);
    expect(isPoolSaturated([ep("a", { waiting: 9 }), ep("b", { scrapedAtMs: 0 })], c)).toBe(true);
  });

  it("sheds sheddable requests with 429 on a saturated pool, serves critical ones", () => {
    const s = schedulerWith();
    const pool = [ep("a", { waiting: 50 }), ep("b", { kvCacheUsage: 0.99 })];
    const shed = s.schedule(req({ sheddable: true }), pool, ctx());
    expect(shed.ok).toBe(false);
    if (!shed.ok) {
      expect(shed.error.status).toBe(429);
      expect(shed.error.code).toBe("InferencePoolResourceExhausted");
    }
    expect(s.schedule(req(), pool, ctx()).ok).toBe(true);
  });

  it("stale metrics alone make the pool saturated for sheddable traffic", () => {
    const s = schedulerWith();
    const pool = [ep("a", { scrapedAtMs: NOW - 500 }), ep("b", { scrapedAtMs: NOW - 300 })];
    const r = s.schedule(req({ sheddable: true }), pool, ctx());
    expect(r.ok).toBe(false);
    expect(s.schedule(req({ sheddable: true }), [...pool, ep("c", {})], ctx()).ok).toBe(true);
  });

  it("answers 503 when no endpoint is ready", () => {
    const r = schedulerWith().schedule(req(), [], ctx());
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.status).toBe(503);
  });
});

describe("capacity filter", () => {
  it("keeps only endpoints with capacity, or everyone when none has any", () => {
    const c = ctx();
    const a = ep("a", { waiting: 10 });
    const b = ep("b", {});
    expect(capacityFilter.filter(req(), [a, b], c)).toEqual([b]);
    expect(capacityFilter.filter(req(), [a], c)).toEqual([a]);
  });
});

describe("queue scorer", () => {
  it("prefers the least loaded endpoint, min-max normalised", () => {
    const scores = queueScorer.score(
      req(),
      [
        ep("a", { waiting: 4, running: 4 }),
        ep("b", { running: 2 }),
        ep("c", { waiting: 1, running: 4 }),
      ],
      ctx(),
    );
    expect(scores).toEqual([0, 1, 0.5]);
  });

  it("counts requests sent since the last scrape and our own in-flight count", () => {
    expect(estimatedLoad(ep("a", { running: 2 }, { dispatchedSinceScrape: 3 }))).toBe(5);
    expect(estimatedLoad(ep("a", { running: 1 }, { inflight: 7 }))).toBe(7);
    expect(estimatedLoad(ep("a", undefined, { inflight: 2 }))).toBe(2);
  });

  it("gives equal scores to equal loads", () => {
    expect(queueScorer.score(req(), [ep("a", {}), ep("b", {})], ctx())).toEqual([1, 1]);
  });
});

describe("KV-cache scorer", () => {
  it("prefers free cache; unknown counts as full", () => {
    expect(
      kvCacheScorer.score(req(), [ep("a", { kvCacheUsage: 0.25 }), ep("b", undefined)], ctx()),
    ).toEqual([0.75, 0]);
  });
});

describe("LoRA affinity scorer", () => {
  const lora = (running: string[], waiting: string[], maxLora: number) => ({
    lora: { running, waiting, maxLora },
  });
  /** Requests sent to an endpoint per adapter, least recently sent first (0: all finished). */
  const sent = (entries: [string, number][]) => ({ sentAdapters: new Map(entries) });
  const score = (target: string, e: EndpointView) =>
    loraAffinityScorer.score(req({ targetModel: target, adapter: true }), [e], ctx())[0];
  const pods = [
    ep("active", lora(["v2"], [], 2)),
    ep("slot", lora(["v1"], [], 2)),
    ep("waiting", lora(["v1", "v3"], ["v2"], 2)),
    ep("full", lora(["v1", "v3"], [], 2)),
    ep("nolora", {}),
  ];

  it("ranks active > free slot > waiting > full", () => {
    const scores = loraAffinityScorer.score(req({ targetModel: "v2", adapter: true }), pods, ctx());
    expect(scores).toEqual([1, 0.8, 0.6, 0, 0]);
  });

  it("is neutral for requests that do not target an adapter", () => {
    expect(loraAffinityScorer.score(req({ targetModel: "base" }), pods, ctx())).toEqual([
      1, 1, 1, 1, 1,
    ]);
  });

  it("sends an adapter request to the pod that has the adapter active despite a little more load", () => {
    const s = schedulerWith();
    const a = ep("a", { running: 3, ...lora(["v2"], [], 1) });
    const b = ep("b", { running: 2, ...lora(["v1"], [], 1) });
    for (let seed = 0; seed < 20; seed++) {
      const r = s.schedule(req({ targetModel: "v2", adapter: true }), [a, b], ctx(seed));
      expect(r.ok && r.ranked[0].name).toBe("a");
    }
  });

  it("counts adapters of requests still in flight as active: the scrape lags", () => {
    // Idle at its last scrape, but we have since sent it v2 requests: it holds v2 by now.
    const justSent = ep("just-sent", lora([], [], 1), sent([["v2", 2]]));
    const idle = ep("idle", lora([], [], 1));
    const v1 = (e: EndpointView[]) =>
      loraAffinityScorer.score(req({ targetModel: "v1", adapter: true }), e, ctx());
    const v2 = (e: EndpointView[]) =>
      loraAffinityScorer.score(req({ targetModel: "v2", adapter: true }), e, ctx());
    expect(v2([justSent, idle])).toEqual([1, 0.8]);
    expect(v1([justSent, idle])).toEqual([0, 0.8]);
    // A request the scrape shows waiting is not active; two adapters in flight on a one-slot
    // pod mean one of them waits.
    expect(v2([ep("queued", lora(["v1"], ["v2"], 1), sent([["v2", 1]]))])).toEqual([0.6]);
    expect(
      v2([
        ep(
          "crowded",
          lora([], [], 1),
          sent([
            ["v1", 1],
            ["v2", 1],
          ]),
        ),
      ]),
    ).toEqual([0.6]);
    // A second slot is still free.
    expect(v1([ep("two-slots", lora([], [], 2), sent([["v2", 1]]))])).toEqual([0.8]);
  });

  it("takes the adapters with the most requests in flight as the ones holding a crowded pod's slots", () => {
    const mostlyV1 = ep(
      "mostly-v1",
      lora([], [], 1),
      sent([
        ["v1", 2],
        ["v2", 1],
      ]),
    );
    expect([score("v1", mostlyV1), score("v2", mostlyV1)]).toEqual([1, 0]);
    // Two slots, three adapters: the two with the most in flight hold them.
    const three = ep(
      "three",
      lora([], [], 2),
      sent([
        ["v1", 3],
        ["v2", 2],
        ["v3", 1],
      ]),
    );
    expect([score("v1", three), score("v2", three), score("v3", three)]).toEqual([1, 1, 0]);
    // A running adapter none of our requests hold: who has the slot is unknown.
    const foreign = ep("foreign", lora(["v1"], [], 1), sent([["v2", 3]]));
    expect(score("v2", foreign)).toBe(0.6);
  });

  it("reads a merged LoRA state (tied series) as unknown and goes by the requests in flight", () => {
    // Both pods' reads list both adapters running and waiting (several states tied within one
    // second): taken at face value every pod is active for every adapter.
    const merged = lora(["v1", "v2"], ["v1", "v2"], 1);
    const s = schedulerWith();
    const a = ep("a", { running: 3, ...merged }, { ...sent([["v1", 3]]), inflight: 3 });
    const b = ep("b", { running: 2, ...merged }, { ...sent([["v2", 2]]), inflight: 2 });
    for (let seed = 0; seed < 20; seed++) {
      const v1 = s.schedule(req({ targetModel: "v1", adapter: true }), [a, b], ctx(seed));
      expect(v1.ok && v1.ranked[0].name).toBe("a");
    }
    const scores = loraAffinityScorer.score(
      req({ targetModel: "v2", adapter: true }),
      [a, b],
      ctx(),
    );
    expect(scores).toEqual([0, 1]);
  });

  it("separates two one-slot pods that both got both adapters, even against the queue", () => {
    // Both pods run both adapters' requests (one of them waits on each); without a preference
    // the queue scorer decides and the pods stay mixed.
    const s = schedulerWith();
    const a = ep(
      "a",
      { running: 4, ...lora([], [], 1) },
      {
        ...sent([
          ["v2", 1],
          ["v1", 3],
        ]),
        inflight: 4,
      },
    );
    const b = ep(
      "b",
      { running: 3, ...lora([], [], 1) },
      {
        ...sent([
          ["v1", 1],
          ["v2", 2],
        ]),
        inflight: 3,
      },
    );
    for (let seed = 0; seed < 20; seed++) {
      const v1 = s.schedule(req({ targetModel: "v1", adapter: true }), [a, b], ctx(seed));
      const v2 = s.schedule(req({ targetModel: "v2", adapter: true }), [a, b], ctx(seed));
      expect(v1.ok && v1.ranked[0].name).toBe("a");
      expect(v2.ok && v2.ranked[0].name).toBe("b");
    }
  });

  it("treats the adapters sent last as still loaded: serving another one there swaps", () => {
    // Idle now, but v2 was its last adapter: v2 needs no swap, v1 evicts v2.
    const idleV2 = ep("idle-v2", lora([], [], 1), sent([["v2", 0]]));
    expect([score("v2", idleV2), score("v1", idleV2)]).toEqual([1, 0.2]);
    // Two slots: the two adapters sent last fill them (least recently sent first in the map).
    const two = ep(
      "two",
      lora([], [], 2),
      sent([
        ["v1", 0],
        ["v2", 0],
        ["v3", 0],
      ]),
    );
    expect([score("v3", two), score("v2", two), score("v1", two)]).toEqual([1, 1, 0.2]);
    // Running adapters take their slots first; nothing idle left to evict means full.
    const busy = ep("busy", lora(["v1"], [], 1), sent([["v2", 0]]));
    expect(score("v3", busy)).toBe(0);
  });
});

describe("prefix-cache affinity", () => {
  const cfg = { ...defaultPrefixConfig, blockSize: 4, maxBlocks: 8 };

  it("hashes chain over blocks: a shared prefix shares leading hashes only", () => {
    const a = hashPromptBlocks("m", "aaaabbbbcccc", cfg);
    const b = hashPromptBlocks("m", "aaaabbbbdddd", cfg);
    const other = hashPromptBlocks("other-model", "aaaabbbbcccc", cfg);
    expect(a).toHaveLength(3);
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(b[2]).not.toBe(a[2]);
    expect(other[0]).not.toBe(a[0]);
    expect(hashPromptBlocks("m", "aaa", cfg)).toEqual([]);
    expect(hashPromptBlocks("m", "x".repeat(100), cfg)).toHaveLength(8);
  });

  it("scores the share of leading blocks an endpoint was sent", () => {
    const index = new PrefixIndex(100);
    const scorer = new PrefixCacheScorer(index);
    const h = hashPromptBlocks("m", "aaaabbbbccccdddd", cfg);
    index.add(h.slice(0, 2), "a");
    index.add(h, "b");
    index.add(h.slice(2), "c"); // later blocks without the first ones do not count
    const scores = scorer.score(req({ prefixHashes: h }), [
      ep("a", {}),
      ep("b", {}),
      ep("c", {}),
      ep("d", {}),
    ]);
    expect(scores).toEqual([0.5, 1, 0, 0]);
  });

  it("the scheduler remembers where a prompt went and sends the next one there", () => {
    const index = new PrefixIndex(1000);
    const s = schedulerWith(index);
    const pool = [ep("a", {}), ep("b", {}), ep("c", {})];
    const h = hashPromptBlocks("m", "system prompt ".repeat(40), defaultPrefixConfig);
    const first = s.schedule(req({ prefixHashes: h }), pool, ctx(1));
    if (!first.ok) throw new Error("no pick");
    for (let seed = 2; seed < 12; seed++) {
      const next = s.schedule(req({ prefixHashes: h }), pool, ctx(seed));
      expect(next.ok && next.ranked[0].name).toBe(first.ranked[0].name);
    }
  });

  it("prefers the endpoints with the longest match, once it covers half the prompt", () => {
    const index = new PrefixIndex(100);
    const s = schedulerWith(index);
    const pool = [ep("a", {}), ep("b", {}), ep("c", {})];
    const h = hashPromptBlocks("m", "aaaabbbbccccdddd", cfg);
    index.add(h.slice(0, 1), "a");
    expect(s.preferred(req({ prefixHashes: h }), pool)).toEqual([]); // a quarter: no preference
    index.add(h.slice(0, 3), "b");
    index.add(h.slice(0, 3), "c");
    expect(s.preferred(req({ prefixHashes: h }), pool).map(e => e.name)).toEqual(["b", "c"]);
    index.add(h, "c");
    expect(s.preferred(req({ prefixHashes: h }), pool).map(e => e.name)).toEqual(["c"]);
    const withoutPrefixScorer = new Scheduler({ ...s.config, scorers: [] });
    expect(withoutPrefixScorer.preferred(req({ prefixHashes: h }), pool)).toEqual([]);
  });

  it("forgets least recently used blocks per endpoint and endpoints that left", () => {
    const index = new PrefixIndex(2);
    index.add([1, 2, 3], "a");
    expect(index.longestMatches([1]).get("a")).toBeUndefined();
    expect(index.longestMatches([2, 3]).get("a")).toBe(2); // block 1 was evicted, 2 and 3 kept
    index.add([2, 3], "b");
    expect(index.longestMatches([2, 3]).get("b")).toBe(2);
    index.retain(new Set(["a"]));
    expect(index.longestMatches([2, 3]).get("b")).toBeUndefined();
    expect(index.size).toBe(2);
  });
});

describe("picker and scheduler", () => {
  it("max-score picker ranks by score and breaks ties at random", () => {
    const a = ep("a", {});
    const b = ep("b", {});
    const c = ep("c", {});
    const firsts = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const ranked = maxScorePicker.rank([a, b, c], [1, 1, 0.5], ctx(seed));
      expect(ranked[2]).toBe(c);
      firsts.add(ranked[0].name);
    }
    expect(firsts).toEqual(new Set(["a", "b"]));
  });

  it("spreads equal endpoints evenly", () => {
    const s = schedulerWith();
    const pool = [ep("a", {}), ep("b", {}), ep("c", {}), ep("d", {})];
    const counts = new Map<string, number>();
    const rng = seededRng(99);
    for (let i = 0; i < 4000; i++) {
      const r = s.schedule(req(), pool, { nowMs: NOW, rng, saturation: defaultSaturationConfig });
      if (r.ok) counts.set(r.ranked[0].name, (counts.get(r.ranked[0].name) ?? 0) + 1);
    }
    for (const n of counts.values()) expect(Math.abs(n - 1000)).toBeLessThan(150);
  });

  it("moves load away from a busy endpoint and from a full KV cache", () => {
    const s = schedulerWith();
    const r1 = s.schedule(req(), [ep("busy", { running: 8 }), ep("idle", { running: 1 })], ctx());
    expect(r1.ok && r1.ranked[0].name).toBe("idle");
    const r2 = s.schedule(
      req(),
      [ep("full", { kvCacheUsage: 0.7 }), ep("free", { kvCacheUsage: 0.1 })],
      ctx(),
    );
    expect(r2.ok && r2.ranked[0].name).toBe("free");
  });

  it("returns every candidate ranked, for fallbacks and retries", () => {
    const r = schedulerWith().schedule(req(), [ep("a", {}), ep("b", { running: 3 })], ctx());
    expect(r.ok && r.ranked.map(e => e.name)).toEqual(["a", "b"]);
  });
});
