import { capacityFilter, newCapacityFilter } from "./plugins/capacity-filter";
import { kvCacheScorer } from "./plugins/kv-cache-utilization-scorer";
import { loraAffinityScorer } from "./plugins/lora-affinity-scorer";
import { maxScorePicker } from "./plugins/max-score-picker";
import { PluginConfigError } from "./plugins/parameters";
import { PrefixCacheScorer } from "./plugins/prefix-cache-scorer";
import { queueScorer } from "./plugins/queue-scorer";
import { PluginFactory, builtinPlugins } from "./plugins/registry";
import { PrefixIndex, defaultPrefixConfig, hashPromptBlocks } from "./prefix";
import { seededRng } from "./rng";
import {
  Scheduler,
  SchedulerConfig,
  SchedulingContext,
  SchedulingRequest,
  defaultSaturationConfig,
} from "./scheduler";
import {
  EndpointPickerConfig,
  buildSchedulerConfig,
  defaultSchedulerConfig,
  defaultScoreWeights,
  describeSchedulerConfig,
  weightsConfig,
} from "./scheduler-config";
import { EndpointView } from "./types";

const NOW = 10_000;
const deps = (prefixIndex = new PrefixIndex(100)) => ({
  prefixIndex,
  saturation: defaultSaturationConfig,
});
const ctx = (rng = seededRng(1)): SchedulingContext => ({
  nowMs: NOW,
  rng,
  saturation: defaultSaturationConfig,
});
const req = (over: Partial<SchedulingRequest> = {}): SchedulingRequest => ({
  model: "m",
  targetModel: "m",
  adapter: false,
  sheddable: false,
  prefixHashes: [],
  ...over,
});
const ep = (name: string, waiting = 0, kvCacheUsage = 0, scrapedAtMs = NOW): EndpointView => ({
  name,
  podName: name,
  address: `${name}:8000`,
  metrics: { waiting, running: 0, kvCacheUsage, scrapedAtMs },
  dispatchedSinceScrape: 0,
  inflight: 0,
});

describe("the default plugins (--weights)", () => {
  it("are the capacity filter, the four scorers in order, the max-score picker, prefix post-pick", () => {
    const index = new PrefixIndex(100);
    const c = defaultSchedulerConfig(defaultScoreWeights, index);
    expect(c.filters.map(f => f.name)).toEqual(["capacity-filter"]);
    expect(c.scorers.map(s => [s.scorer.name, s.weight])).toEqual([
      ["queue-scorer", 2],
      ["kv-cache-utilization-scorer", 2],
      ["prefix-cache-scorer", 3],
      ["lora-affinity-scorer", 3],
    ]);
    expect(c.picker.name).toBe("max-score-picker");
    expect(c.postPick).toHaveLength(1);
    expect(c.postPick[0]).toBe(c.scorers[2].scorer);
    expect((c.postPick[0] as PrefixCacheScorer).index).toBe(index);
  });

  it("decide as the scheduler built by hand from the plugins did before they had a registry", () => {
    // The former defaultSchedulerConfig, literally.
    const byHand = (index: PrefixIndex): SchedulerConfig => {
      const prefix = new PrefixCacheScorer(index);
      return {
        filters: [capacityFilter],
        scorers: [
          { scorer: queueScorer, weight: 2 },
          { scorer: kvCacheScorer, weight: 2 },
          { scorer: prefix, weight: 3 },
          { scorer: loraAffinityScorer, weight: 3 },
        ],
        picker: maxScorePicker,
        postPick: [prefix],
      };
    };
    const [a, b] = [new PrefixIndex(50), new PrefixIndex(50)];
    const registered = new Scheduler(defaultSchedulerConfig(defaultScoreWeights, a));
    const manual = new Scheduler(byHand(b));
    const [rngA, rngB, draw] = [seededRng(7), seededRng(7), seededRng(8)];
    const prompts = Array.from({ length: 6 }, (_, i) =>
      hashPromptBlocks("m", `prompt ${i} `.repeat(30), defaultPrefixConfig),
    );
    for (let i = 0; i < 500; i++) {
      const pool = ["a", "b", "c", "d"].map(n =>
        ep(n, Math.floor(draw() * 8), draw(), NOW - Math.floor(draw() * 300)),
      );
      const r = req({
        sheddable: draw() < 0.2,
        prefixHashes: prompts[Math.floor(draw() * prompts.length)],
      });
      const x = registered.schedule(r, pool, ctx(rngA));
      const y = manual.schedule(r, pool, ctx(rngB));
      expect(x.ok && x.ranked.map(e => e.name)).toEqual(y.ok && y.ranked.map(e => e.name));
      expect(x.ok && [...x.scores]).toEqual(y.ok && [...y.scores]);
      expect(registered.preferred(r, pool)).toEqual(manual.preferred(r, pool));
    }
  });

  it("weight 0 leaves a scorer out of the scoring; the prefix scorer still learns post-pick", () => {
    const index = new PrefixIndex(100);
    const c = defaultSchedulerConfig({ ...defaultScoreWeights, prefix: 0 }, index);
    expect(c.scorers.map(s => s.scorer.name)).not.toContain("prefix-cache-scorer");
    expect(c.postPick.map(p => p.name)).toEqual(["prefix-cache-scorer"]);
    const s = new Scheduler(c);
    const h = hashPromptBlocks("m", "system prompt ".repeat(20), defaultPrefixConfig);
    const r = s.schedule(req({ prefixHashes: h }), [ep("a"), ep("b")], ctx());
    expect(r.ok && index.longestMatches(h).get(r.ranked[0].name)).toBe(h.length);
    expect(s.preferred(req({ prefixHashes: h }), [ep("a"), ep("b")])).toEqual([]);
  });
});

describe("buildSchedulerConfig", () => {
  it("without a profile runs every plugin, scorers with weight 1, and max-score-picker", () => {
    const c = buildSchedulerConfig(
      { plugins: [{ type: "queue-scorer" }, { type: "capacity-filter" }] },
      deps(),
    );
    expect(describeSchedulerConfig(c)).toBe("capacity-filter → queue-scorer×1 → max-score-picker");
  });

  it("builds plugin types registered beside the picker's own", () => {
    const firstPicker: PluginFactory = name => ({
      type: "first-picker",
      name,
      rank: endpoints => [...endpoints],
    });
    const config: EndpointPickerConfig = { plugins: [{ type: "first-picker", name: "first" }] };
    expect(() => buildSchedulerConfig(config, deps())).toThrow(/unknown plugin type/);
    const registry = new Map([...builtinPlugins, ["first-picker", firstPicker]]);
    const s = new Scheduler(buildSchedulerConfig(config, deps(), registry));
    const r = s.schedule(req(), [ep("a", 5), ep("b")], ctx());
    expect(r.ok && r.ranked.map(e => e.name)).toEqual(["a", "b"]);
  });

  it("refuses two pickers in one profile", () => {
    const plugins = [{ type: "max-score-picker" }, { type: "max-score-picker", name: "another" }];
    expect(() => buildSchedulerConfig({ plugins }, deps())).toThrow(PluginConfigError);
    expect(() => buildSchedulerConfig({ plugins }, deps())).toThrow(/two pickers/);
  });
});

describe("capacity-filter parameters", () => {
  it("replace the saturation detector's thresholds for the filter only, not its staleness", () => {
    const pool = [ep("queued", 6), ep("full", 0, 0.85), ep("stale", 0, 0, NOW - 500)];
    const c = ctx();
    expect(capacityFilter.filter(req(), [...pool, ep("idle")], c).map(e => e.name)).toEqual([
      "idle",
    ]);
    const lenient = newCapacityFilter("lenient", { queueThreshold: 10 }, deps());
    expect(lenient.filter(req(), pool, c).map(e => e.name)).toEqual(["queued"]);
    const both = newCapacityFilter("both", { queueThreshold: 10, kvCacheThreshold: 0.9 }, deps());
    expect(both.filter(req(), pool, c).map(e => e.name)).toEqual(["queued", "full"]);
    expect(newCapacityFilter("same", {}, deps()).filter(req(), pool, c)).toEqual(pool);
    expect(() => newCapacityFilter("x", { queueThreshold: -1 }, deps())).toThrow(PluginConfigError);
  });
});

describe("weightsConfig", () => {
  it("is the EndpointPickerConfig of the default plugins", () => {
    const c = weightsConfig(defaultScoreWeights);
    expect(c.plugins.map(p => p.type)).toEqual([
      "capacity-filter",
      "queue-scorer",
      "kv-cache-utilization-scorer",
      "prefix-cache-scorer",
      "lora-affinity-scorer",
      "max-score-picker",
    ]);
    expect(c.schedulingProfiles![0].plugins.filter(p => p.weight !== undefined)).toEqual([
      { pluginRef: "queue-scorer", weight: 2 },
      { pluginRef: "kv-cache-utilization-scorer", weight: 2 },
      { pluginRef: "prefix-cache-scorer", weight: 3 },
      { pluginRef: "lora-affinity-scorer", weight: 3 },
    ]);
  });
});
