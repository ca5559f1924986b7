import {
  eppViewLine,
  figuresOf,
  schedulingReport,
  SchedulingRun,
} from "./side-by-side-scheduling-report";
import { PickerKind } from "./side-by-side-report";
import { requestsOf, schedulingWorkloads } from "./side-by-side-workloads";

const run = (
  kind: PickerKind,
  round: number,
  latenciesMs: number[],
  extra: Partial<SchedulingRun> = {},
): SchedulingRun => ({
  kind,
  round,
  latenciesMs,
  ttftsMs: latenciesMs.map(l => l / 2),
  measured: latenciesMs.length,
  failed: 0,
  perPod: [latenciesMs.length, 0],
  prefixHits: 1,
  prefixQueries: 4,
  ...extra,
});

describe("scheduling side by side: figures", () => {
  it("pools the rounds' latencies, sums pods, hits and failures, and keeps p95 round by round", () => {
    const f = figuresOf(
      [
        run("picker", 1, [30, 40], { failed: 1, measured: 3, prefixHits: 3 }),
        run("picker", 0, [10, 20]),
        run("lwepp", 0, [1000]),
      ],
      "picker",
    );
    expect(f.latency.count).toBe(4);
    expect(f.latency.p50).toBe(20);
    expect(f.p95ByRound).toEqual([20, 40]); // ordered by round, not by arrival in the list
    expect(f.hitShare).toBeCloseTo(4 / 8);
    expect(f.perPod).toEqual([4, 0]);
    expect([f.failed, f.measured]).toEqual([1, 5]);
  });

  it("gives p95 as a ratio to round-robin's (lwepp) in the table, and no ratio without lwepp", () => {
    const runs = [run("picker", 0, [50, 50, 50]), run("lwepp", 0, [100, 100, 100])];
    const w = { name: "w", what: "x", capacity: 10, rate: 9, seconds: 10, requests: 90 };
    const table = schedulingReport([{ ...w, runs }], "header");
    expect(table).toMatch(/\*\*picker\*\*.*\| 0\.50 × \| 0\.50 × \|/);
    expect(table).toMatch(/lwepp v1\.6\.2 \(round-robin\).*\| 1\.00 × \| 1\.00 × \|/);
    const alone = schedulingReport([{ ...w, runs: [runs[0]] }], "header");
    expect(alone).toMatch(/\| – × \| – × \|/);
  });

  it("says what the EPP saw of the pods only when it ran", () => {
    expect(eppViewLine([run("picker", 0, [1])])).toBe("");
    const epp = (lookups: number, mean: number) =>
      run("epp", 0, [1], {
        epp: {
          queueMax: 2,
          runningMax: 1.5,
          kvMax: 0.4,
          prefixLookups: lookups,
          prefixMatchMean: mean,
        },
      });
    const line = eppViewLine([epp(100, 0.5), epp(300, 0.9)]);
    expect(line).toContain("queue up to 2.00");
    expect(line).toContain("KV-cache use up to 40 %");
    expect(line).toContain("400 lookups, on average 80 %");
  });
});

describe("scheduling side by side: workloads", () => {
  const [queued, shared] = schedulingWorkloads;

  it("sends the same arrivals and bodies every time, as completions with a prompt", () => {
    const a = requestsOf(shared, 20, 5);
    const b = requestsOf(shared, 20, 5);
    expect(a.arrivalsMs).toEqual(b.arrivalsMs);
    expect(a.bodies.map(String)).toEqual(b.bodies.map(String));
    const body = JSON.parse(a.bodies[0].toString());
    expect(body).toMatchObject({ model: "mymodel", stream: true, ignore_eos: true });
    expect(typeof body.prompt).toBe("string");
  });

  it("shares long prefixes only in the shared-prefix workload", () => {
    const prefix = (w: typeof queued) =>
      new Set(requestsOf(w, 20, 10).bodies.map(x => JSON.parse(x.toString()).prompt.slice(0, 640)));
    const { bodies } = requestsOf(shared, 20, 10);
    expect(prefix(shared).size).toBeLessThanOrEqual(shared.shared!.groups);
    expect(prefix(shared).size).toBeLessThan(bodies.length);
    expect(prefix(queued).size).toBe(requestsOf(queued, 20, 10).bodies.length);
  });
});
