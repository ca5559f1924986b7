import { LruMap } from "./lru";

describe("LruMap", () => {
  it("evicts the least recently used key, where reads count as use", () => {
    const lru = new LruMap<string, number>(2);
    expect(lru.set("a", 1)).toBeUndefined();
    lru.set("b", 2);
    expect(lru.get("a")).toBe(1); // a is now newer than b
    expect(lru.set("c", 3)).toBe("b");
    expect([...lru.keys()]).toEqual(["a", "c"]);
    expect(lru.has("b")).toBe(false);
    expect(lru.size).toBe(2);
  });

  it("rejects a capacity below one", () => {
    expect(() => new LruMap(0)).toThrow("positive integer");
  });
});
