import { PrefixCache, promptBlockKeys } from "./kv-cache";

const words = (n: number, tag = "w") => Array.from({ length: n }, (_, i) => ` ${tag}${i}`);

describe("promptBlockKeys", () => {
  it("keys complete blocks only, chained: equal keys mean equal prefixes", () => {
    const a = promptBlockKeys("m", words(35), 16);
    expect(a).toHaveLength(2); // 35 tokens: two complete blocks of 16
    const b = promptBlockKeys("m", [...words(16), ...words(16, "x")], 16);
    expect(b[0]).toBe(a[0]);
    expect(b[1]).not.toBe(a[1]);
    // A different second block... and a different first block changes every later key.
    const c = promptBlockKeys("m", [...words(16, "y"), ...words(16).slice(0, 16)], 16);
    expect(c[1]).not.toBe(a[1]);
  });

  it("keys depend on the model (an adapter never shares the base model's cache)", () => {
    expect(promptBlockKeys("base", words(16), 16)).not.toEqual(
      promptBlockKeys("adapter", words(16), 16),
    );
  });
});

describe("PrefixCache", () => {
  it("counts blocks cached before, shares running blocks, and reports usage of running ones", () => {
    const cache = new PrefixCache(10);
    const first = {};
    expect(cache.start(first, ["a", "b", "c"])).toBe(0);
    expect(cache.usage).toBeCloseTo(0.3);
    const second = {};
    expect(cache.start(second, ["a", "b", "d"])).toBe(2); // a, b in use by the first
    expect(cache.usage).toBeCloseTo(0.4);
    cache.finish(first);
    expect(cache.usage).toBeCloseTo(0.3); // c is unused now, still cached
    cache.finish(second);
    expect(cache.usage).toBe(0);
    expect(cache.cachedBlocks).toBe(4);
    expect(cache.start({}, ["a", "b", "c", "d", "e"])).toBe(4);
  });

  it("evicts the least recently released unused block for a new one", () => {
    const cache = new PrefixCache(3);
    const r1 = {};
    const r2 = {};
    cache.start(r1, ["a", "b"]);
    cache.finish(r1); // a, b released first
    cache.start(r2, ["c"]);
    cache.finish(r2); // c released last
    expect(cache.start({}, ["d"])).toBe(0); // evicts a
    expect(cache.cachedBlocks).toBe(3);
    expect(cache.start({}, ["b", "c"])).toBe(2);
    expect(cache.start({}, ["a"])).toBeUndefined(); // b, c, d all in use: no room
  });

  it("refuses a request whose blocks do not fit beside the running ones, changing nothing", () => {
    const cache = new PrefixCache(4);
    cache.start({}, ["a", "b", "c"]);
    expect(cache.start({}, ["x", "y"])).toBeUndefined();
    expect(cache.usage).toBe(0.75);
    expect(cache.cachedBlocks).toBe(3);
  });
});
