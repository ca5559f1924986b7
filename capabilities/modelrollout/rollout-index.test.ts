import type { ModelRollout } from "./generated/modelrollout-v1alpha1";
import { compareResourceVersions, RolloutIndex } from "./rollout-index";

const mro = (namespace: string, name: string, resourceVersion?: string, uid?: string) =>
  ({ metadata: { namespace, name, resourceVersion, uid } }) as unknown as ModelRollout;

describe("compareResourceVersions", () => {
  it.each([
    ["9", "10", -1],
    ["10", "9", 1],
    ["123", "123", 0],
    ["200", "199", 1],
  ])("orders etcd integers numerically: %s vs %s", (a, b, sign) => {
    expect(Math.sign(compareResourceVersions(a, b)!)).toBe(sign);
  });

  it("cannot order opaque versions, but knows equal ones", () => {
    expect(compareResourceVersions("abc", "12")).toBeUndefined();
    expect(compareResourceVersions("abc", "abc")).toBe(0);
  });
});

describe("RolloutIndex", () => {
  it("never replaces a newer copy with an older one", () => {
    const index = new RolloutIndex();
    index.remember(mro("a", "r", "10"));
    index.remember(mro("a", "r", "9"));
    expect(index.get("a", "r")?.metadata?.resourceVersion).toBe("10");
    index.remember(mro("a", "r", "11"));
    expect(index.get("a", "r")?.metadata?.resourceVersion).toBe("11");
  });

  it("lists one namespace only and forgets dropped rollouts", () => {
    const index = new RolloutIndex();
    index.remember(mro("a", "r1", "1"));
    index.remember(mro("a", "r2", "2"));
    index.remember(mro("b", "r1", "3"));
    expect(index.inNamespace("a").map(r => r.metadata?.name)).toEqual(["r1", "r2"]);
    index.drop("a", "r1");
    expect(index.inNamespace("a").map(r => r.metadata?.name)).toEqual(["r2"]);
    expect(index.get("b", "r1")).toBeDefined();
    expect(index.size).toBe(2);
  });

  it("recognizes events up to the handled version (our own write's echo) and no newer one", () => {
    const index = new RolloutIndex();
    expect(index.isHandled(mro("a", "r", "5"))).toBe(false);
    index.markHandled("a", "r", "7");
    expect(index.isHandled(mro("a", "r", "5"))).toBe(true);
    expect(index.isHandled(mro("a", "r", "7"))).toBe(true);
    expect(index.isHandled(mro("a", "r", "8"))).toBe(false);
    expect(index.isHandled(mro("a", "other", "7"))).toBe(false);
    // An older mark does not move the handled version back.
    index.markHandled("a", "r", "6");
    expect(index.isHandled(mro("a", "r", "7"))).toBe(true);
  });

  it("treats unorderable versions as not handled unless equal", () => {
    const index = new RolloutIndex();
    index.markHandled("a", "r", "x1");
    expect(index.isHandled(mro("a", "r", "x1"))).toBe(true);
    expect(index.isHandled(mro("a", "r", "x2"))).toBe(false);
  });

  it("forgets the handled version with the rollout", () => {
    const index = new RolloutIndex();
    index.remember(mro("a", "r", "3"));
    index.markHandled("a", "r", "3");
    index.drop("a", "r");
    expect(index.isHandled(mro("a", "r", "3"))).toBe(false);
  });

  it("does not bring a deleted rollout back from a late event, but takes a new one of that name", () => {
    const index = new RolloutIndex();
    index.remember(mro("a", "r", "3", "uid-1"));
    index.drop("a", "r", "uid-1");
    index.remember(mro("a", "r", "4", "uid-1")); // an update that was still on its way
    expect(index.get("a", "r")).toBeUndefined();
    index.remember(mro("a", "r", "9", "uid-2")); // created again
    expect(index.get("a", "r")?.metadata?.uid).toBe("uid-2");
  });

  it("leaves a newer object of the same name alone when an older one's delete arrives late", () => {
    const index = new RolloutIndex();
    index.remember(mro("a", "r", "20", "uid-new"));
    index.markHandled("a", "r", "20");
    expect(index.drop("a", "r", "uid-old")).toBe(false);
    expect(index.get("a", "r")?.metadata?.uid).toBe("uid-new");
    expect(index.isHandled(mro("a", "r", "20", "uid-new"))).toBe(true);
    index.remember(mro("a", "r", "5", "uid-old")); // and the old one stays dead
    expect(index.get("a", "r")?.metadata?.uid).toBe("uid-new");
    expect(index.drop("a", "r", "uid-new")).toBe(true);
  });
});
