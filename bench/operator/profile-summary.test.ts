import { inclusiveTimes, packageOf, selfTimes } from "./profile-summary";

// root → a (node_modules/undici) → b (capabilities) ; root → idle
const profile = {
  nodes: [
    { id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: 0 }, children: [2, 4] },
    {
      id: 2,
      callFrame: {
        functionName: "fetch",
        url: "file:///x/node_modules/undici/index.js",
        lineNumber: 1,
      },
      children: [3],
    },
    {
      id: 3,
      callFrame: { functionName: "reconcile", url: "file:///x/capabilities/m/r.ts", lineNumber: 9 },
    },
    { id: 4, callFrame: { functionName: "(idle)", url: "", lineNumber: 0 } },
  ],
  samples: [2, 3, 3, 4],
  timeDeltas: [1000, 2000, 3000, 4000],
  startTime: 0,
  endTime: 10_000,
};

describe("profile summary", () => {
  it("names the package a frame belongs to", () => {
    expect(packageOf("file:///a/node_modules/@scope/pkg/x.js", "f")).toBe("@scope/pkg");
    expect(packageOf("file:///a/node_modules/undici/lib/x.js", "f")).toBe("undici");
    expect(packageOf("node:internal/tls/secure-context", "f")).toBe("node:internal");
    expect(packageOf("file:///work/capabilities/m/r.ts", "f")).toBe("project capabilities/");
    expect(packageOf("", "(garbage collector)")).toBe("(garbage collector)");
  });

  it("adds up self time per key (ms)", () => {
    expect(selfTimes(profile, n => n.callFrame.functionName)).toEqual([
      ["reconcile", 5],
      ["(idle)", 4],
      ["fetch", 1],
    ]);
  });

  it("counts a sample once for every function on its stack", () => {
    const named = inclusiveTimes(profile, n =>
      n.callFrame.url ? n.callFrame.functionName : undefined,
    );
    expect(named).toEqual([
      ["fetch", 6],
      ["reconcile", 5],
    ]);
  });
});
