import {
  BenchResult,
  classifyWrites,
  deltaCounts,
  goals,
  LagTracker,
  meanServerMs,
  parseRequestCounts,
  parseServerTimes,
  percentile,
  planSteps,
  readsByResource,
  RequestCount,
  TABLE_HEADER,
  tableRow,
} from "./stats";

const plan = { weights: [10, 50, 100], pauseMs: 5000 };
const iso = (ms: number) => new Date(ms).toISOString();

describe("planSteps", () => {
  it("puts a timed pause between consecutive weights", () => {
    expect(planSteps(plan)).toEqual([
      { setWeight: 10 },
      { pause: { duration: "5s" } },
      { setWeight: 50 },
      { pause: { duration: "5s" } },
      { setWeight: 100 },
    ]);
  });

  it.each([
    [{ weights: [10], pauseMs: 5000 }, /two weights/],
    [{ weights: [50, 10], pauseMs: 5000 }, /increase/],
    [{ weights: [10, 101], pauseMs: 5000 }, /1..100/],
    [{ weights: [10, 20], pauseMs: 1500 }, /whole number/],
  ])("rejects %j", (bad, message) => {
    expect(() => planSteps(bad)).toThrow(message);
  });
});

describe("LagTracker", () => {
  it("measures pause due (stepStartedAt + duration) → weight seen, and the start latency", () => {
    const t = new LagTracker(plan);
    const k = "ns/a";
    t.weight(k, 0, 900); // the InferenceModel as created
    t.created(k, 1000);
    t.weight(k, 10, 1100);
    t.status(k, { phase: "Paused", currentStep: 1, stepStartedAt: iso(1050) });
    t.weight(k, 50, 6300); // due 6050 → 250 ms
    t.status(k, { phase: "Paused", currentStep: 3, stepStartedAt: iso(6200) });
    t.weight(k, 100, 11_700); // due 11200 → 500 ms
    t.status(k, { phase: "Succeeded", currentStep: 5 });
    const s = t.summary();
    expect(s.startLatenciesMs).toEqual([100]);
    expect(s.stepLagsMs).toEqual([250, 500]);
    expect(s).toMatchObject({
      finished: 1,
      stepsStarted: 5,
      weightChanges: 3,
      missingTransitions: 0,
      unexpectedWeightChanges: 0,
    });
    expect(t.isFinished(k)).toBe(true);
  });

  it("counts skipped or repeated weights and transitions it never saw", () => {
    const t = new LagTracker(plan);
    t.created("ns/b", 0);
    t.weight("ns/b", 10, 10);
    t.weight("ns/b", 100, 20); // skipped 50
    t.weight("ns/b", 10, 30); // backwards
    const s = t.summary();
    expect(s.unexpectedWeightChanges).toBe(2);
    expect(s.missingTransitions).toBe(2);
    expect(s.finished).toBe(0);
    expect(s.weightChanges).toBe(1);
  });

  it("ignores repeated watch events of the same weight and notices a restarted pause", () => {
    const t = new LagTracker(plan);
    t.weight("ns/c", 10, 10);
    t.weight("ns/c", 10, 20);
    t.status("ns/c", { currentStep: 1, stepStartedAt: iso(100) });
    t.status("ns/c", { currentStep: 1, stepStartedAt: iso(100) });
    t.status("ns/c", { currentStep: 1, stepStartedAt: iso(900) });
    t.weight("ns/c", 50, 6000);
    const s = t.summary();
    expect(s.unexpectedWeightChanges).toBe(0);
    expect(s.restartedPauses).toBe(1);
    expect(s.stepLagsMs).toEqual([100]);
    expect(s.stepsStarted).toBe(2); // setWeight 10 done, pause in progress
    expect(t.perRollout()).toEqual({ "ns/c": { stepsStarted: 2, weights: 2, finished: false } });
  });
});

describe("percentile", () => {
  it("uses the nearest rank", () => {
    const v = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    expect(percentile(v, 50)).toBe(50);
    expect(percentile(v, 99)).toBe(99);
    expect(percentile(v, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });
});

const metrics = (lines: string[]) => lines.join("\n") + "\n";
const req = (labels: string, n: number) =>
  `apiserver_request_total{code="${labels.split(",")[0]}",component="apiserver",dry_run="",group="${labels.split(",")[1]}",resource="${labels.split(",")[2]}",scope="resource",subresource="${labels.split(",")[3]}",verb="${labels.split(",")[4]}",version="v1"} ${n}`;

describe("apiserver request counters", () => {
  const before = parseRequestCounts(
    metrics([
      "# HELP apiserver_request_total Counter of apiserver requests",
      req("200,inference.networking.x-k8s.io,inferencemodels,,PATCH", 5),
      req("201,,events,,POST", 10),
      req("200,coordination.k8s.io,leases,,PUT", 3),
    ]),
  );
  const after = parseRequestCounts(
    metrics([
      req("200,inference.networking.x-k8s.io,inferencemodels,,PATCH", 9),
      req("422,inference.networking.x-k8s.io,inferencemodels,,PATCH", 1),
      req("201,,events,,POST", 18),
      req("200,rollouts.inference.dev,modelrollouts,status,PATCH", 4),
      req("201,rollouts.inference.dev,modelrollouts,,POST", 3),
      req("200,rollouts.inference.dev,modelrollouts,,GET", 12),
      req("200,rollouts.inference.dev,modelrollouts,,LIST", 4),
      req("200,coordination.k8s.io,leases,,PUT", 5),
      req("422,,endpoints,,POST", 2),
    ]),
  );

  it("parses labels and values", () => {
    expect(before[0]).toEqual<RequestCount>({
      verb: "PATCH",
      group: "inference.networking.x-k8s.io",
      resource: "inferencemodels",
      subresource: "",
      code: "200",
      count: 5,
    });
    expect(before).toHaveLength(3);
  });

  it("classifies the operator's writes, leaving out our own creates and the apiserver's housekeeping", () => {
    const delta = deltaCounts(before, after);
    const b = classifyWrites(delta, [{ verb: "POST", resource: "modelrollouts", count: 3 }]);
    expect(b).toEqual({
      target: 5,
      status: 4,
      events: 8,
      rollout: 0,
      other: 0,
      failed: 1,
      total: 17,
      background: 4,
    });
    expect(readsByResource(delta)).toEqual({ "modelrollouts GET": 12, "modelrollouts LIST": 4 });
  });

  it("reports zero writes when nothing but housekeeping happened", () => {
    const idle = parseRequestCounts(
      metrics([
        req("200,inference.networking.x-k8s.io,inferencemodels,,PATCH", 5),
        req("201,,events,,POST", 10),
        req("200,coordination.k8s.io,leases,,PUT", 9),
      ]),
    );
    expect(classifyWrites(deltaCounts(before, idle)).total).toBe(0);
  });

  it("computes the mean apiserver time per request kind", () => {
    const times = (sum: number, count: number) =>
      parseServerTimes(
        metrics([
          `apiserver_request_duration_seconds_sum{component="apiserver",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} ${sum}`,
          `apiserver_request_duration_seconds_count{component="apiserver",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} ${count}`,
          `apiserver_request_duration_seconds_sum{component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 999`,
          `apiserver_request_duration_seconds_count{component="apiserver",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 1`,
        ]),
      );
    expect(meanServerMs(times(1, 10), times(3, 20))).toEqual({ "events POST": 200 });
  });
});

describe("results table", () => {
  const result = (over: Partial<BenchResult> = {}): BenchResult => ({
    rollouts: 2,
    namespaces: 1,
    weights: [10, 50, 100],
    pauseSeconds: 5,
    stepsPerRollout: 5,
    lag: {
      rollouts: 2,
      finished: 2,
      startLatenciesMs: [100, 200],
      stepLagsMs: [100, 200, 300, 400],
      stepsStarted: 10,
      weightChanges: 6,
      missingTransitions: 0,
      unexpectedWeightChanges: 0,
      restartedPauses: 0,
    },
    writes: {
      target: 6,
      status: 6,
      events: 12,
      rollout: 0,
      other: 0,
      failed: 0,
      total: 24,
      background: 0,
    },
    reads: {},
    operator: {
      rssPeakMiB: 300,
      rssIdleMiB: 250,
      cpuActivePercent: 40,
      cpuPeakPercent: 90,
      cpuIdlePercent: 0.2,
      socketsPeak: 10,
      socketsIdle: 10,
    },
    activeSeconds: 20,
    serverMs: {},
    controlPlaneCpuPercent: { apiserver: 30, etcd: 2 },
    otherCpuPercent: 10,
    cores: 2,
    idle: {
      seconds: 60,
      writes: {
        target: 0,
        status: 0,
        events: 0,
        rollout: 0,
        other: 0,
        failed: 0,
        total: 0,
        background: 6,
      },
      reads: 0,
      valid: true,
    },
    ...over,
  });

  it("renders one row per run with the goals checked", () => {
    const row = tableRow(result());
    expect(row.split(" | ")).toHaveLength(TABLE_HEADER[0].split(" | ").length);
    expect(row).toContain("| 2 (1) |");
    expect(row).toContain("200 ms / 400 ms / 400 ms");
    expect(row).toContain("2.40 (4.00)");
    expect(row).toContain("12.0: 3.0 + 3.0 + 6.0 + 0.0");
    expect(row).toContain("✅ ✅ ✅");
    expect(row).toContain("| 30 % / 10 % |");
    expect(goals(result())).toEqual({ lag: true, writes: true, idle: true });
  });

  it("fails the goals on a slow step, too many writes, missing steps or idle writes", () => {
    const slow = result({ lag: { ...result().lag, stepLagsMs: [100, 1500] } });
    expect(goals(slow).lag).toBe(false);
    const missing = result({ lag: { ...result().lag, missingTransitions: 1 } });
    expect(goals(missing).lag).toBe(false);
    expect(tableRow(missing)).toContain("(1 missing)");
    const chatty = result({ writes: { ...result().writes, total: 31 } });
    expect(goals(chatty).writes).toBe(false);
    const busyIdle = result({
      idle: { ...result().idle, writes: { ...result().idle.writes, status: 1, total: 1 } },
    });
    expect(goals(busyIdle).idle).toBe(false);
    expect(tableRow(busyIdle)).toContain("❌");
    const unfinished = result({
      lag: { ...result().lag, finished: 1 },
      idle: { ...result().idle, valid: false },
    });
    expect(goals(unfinished).idle).toBe(false);
    expect(tableRow(unfinished)).toContain("not idle (1/2 finished)");
  });
});
