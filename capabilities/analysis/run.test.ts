import {
  applyMeasurements,
  concludeRun,
  dueMetrics,
  errorMeasurement,
  dueQueries,
  recordOutcomes,
  runDueQueries,
  measurementFrom,
  resolveMetric,
  startRun,
  summarize,
  validateAnalysis,
  type MeasureContext,
  type NamedMeasurement,
} from ".";
import type { QueryFunction } from ".";
import type {
  AnalysisRunStatus,
  AnalysisSpec,
  Measurement,
  MeasurementPhase,
  MetricSpec,
  ProviderSpec,
  QueryResult,
  SecretKeyRef,
} from "./types";

const T0 = new Date("2025-01-01T00:00:00.000Z");
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);
const provider: ProviderSpec = { address: "http://prometheus:9090" };

const vector = (...values: number[]): QueryResult => ({
  kind: "vector",
  series: values.map((value, i) => ({ labels: { i: String(i) }, value })),
});
const scalar = (value: number): QueryResult => ({ kind: "scalar", value });

function judge(
  conditions: { successCondition?: string; failureCondition?: string; multipleSeries?: boolean },
  outcome: QueryResult | Error,
): Measurement {
  return measurementFrom({ multipleSeries: false, ...conditions }, outcome, at(1), at(0));
}

function m(phase: MeasurementPhase, seconds = 0, value = "[1]"): Measurement {
  return {
    phase,
    value,
    message: `${phase} measurement`,
    startedAt: at(seconds).toISOString(),
    finishedAt: at(seconds).toISOString(),
  };
}

/** Apply a sequence of phases to one metric, one call per measurement (as the reconciler does). */
function feed(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  name: string,
  phases: MeasurementPhase[],
) {
  return phases.reduce(
    (current, phase, i) =>
      applyMeasurements(spec, current, [{ name, measurement: m(phase, i * 30) }]),
    run,
  );
}

const metric = (extra: Partial<MetricSpec> = {}): MetricSpec => ({
  name: "gate",
  query: "x",
  successCondition: "result[0] < 1",
  ...extra,
});
const stepRun = () => startRun(T0, 2);
const backgroundRun = () => startRun(T0);

describe("measurementFrom", () => {
  it.each([
    // Argo Rollouts' table: success only / failure only / both / none
    [
      { successCondition: "result[0] < 1" },
      [0.5],
      "Successful",
      'successCondition "result[0] < 1" is true',
    ],
    [
      { successCondition: "result[0] < 1" },
      [2],
      "Failed",
      'successCondition "result[0] < 1" is false',
    ],
    [
      { failureCondition: "result[0] > 1" },
      [2],
      "Failed",
      'failureCondition "result[0] > 1" is true',
    ],
    [
      { failureCondition: "result[0] > 1" },
      [0.5],
      "Successful",
      'failureCondition "result[0] > 1" is false',
    ],
    [
      { successCondition: "result[0] < 1", failureCondition: "result[0] > 2" },
      [0.5],
      "Successful",
      "is true",
    ],
    [
      { successCondition: "result[0] < 1", failureCondition: "result[0] > 2" },
      [3],
      "Failed",
      "is true",
    ],
    [
      { successCondition: "result[0] < 1", failureCondition: "result[0] > 2" },
      [1.5],
      "Inconclusive",
      'neither successCondition "result[0] < 1" nor failureCondition "result[0] > 2" is true',
    ],
    [
      { successCondition: "result[0] > 0", failureCondition: "result[0] > 0" },
      [1],
      "Failed",
      "failureCondition",
    ],
    [{}, [1], "Successful", "no conditions: recorded only"],
  ])("%j on %j is %s", (conditions, values, phase, message) => {
    const measurement = judge(conditions, vector(...values));
    expect(measurement.phase).toBe(phase);
    expect(measurement.message).toContain(message);
  });

  describe("an empty result or NaN is never Successful", () => {
    const conditionSets = [
      { successCondition: "result[0] < 1" },
      { successCondition: "all(result, x < 1)" }, // vacuously true on an empty vector
      { successCondition: "len(result) == 0 or result[0] < 1" },
      { successCondition: "not (result[0] > 1)" }, // true for NaN
      { failureCondition: "result[0] > 1" },
      { failureCondition: "any(result, x > 1)" },
      { successCondition: "result[0] < 1", failureCondition: "result[0] >= 1" },
      {},
    ];
    it.each(conditionSets)("%j: empty, NaN vector and NaN scalar are Inconclusive", conditions => {
      expect(judge(conditions, vector()).phase).toBe("Inconclusive");
      expect(judge(conditions, vector(NaN)).phase).toBe("Inconclusive");
      expect(judge(conditions, { kind: "scalar", value: NaN }).phase).not.toBe("Successful");
      expect(judge(conditions, vector()).message).toBe("no data (empty result): never a success");
      expect(judge(conditions, vector(NaN)).message).toBe(
        "no data (NaN in the result): never a success",
      );
    });

    it("a failureCondition that holds on missing data still fails", () => {
      expect(judge({ failureCondition: "len(result) == 0" }, vector()).phase).toBe("Failed");
      expect(judge({ failureCondition: "isNaN(result)" }, scalar(NaN)).phase).toBe("Failed");
      expect(
        judge({ successCondition: "result < 1", failureCondition: "isNaN(result)" }, scalar(NaN))
          .phase,
      ).toBe("Failed");
    });
  });

  it("several series without multipleSeries are an Error naming the count", () => {
    const result: QueryResult = {
      kind: "vector",
      series: [
        { labels: { pool: "b" }, value: 2 },
        { labels: { pool: "a" }, value: 1 },
        { labels: { pool: "c" }, value: 3 },
        { labels: { pool: "d" }, value: 4 },
      ],
    };
    const measurement = judge({ successCondition: "result[0] < 10" }, result);
    expect(measurement.phase).toBe("Error");
    expect(measurement.message).toBe(
      'query returned 4 series where at most 1 was expected (aggregate it, e.g. sum(...), or set multipleSeries: true): {pool="a"}, {pool="b"}, {pool="c"}, … 1 more',
    );
    expect(measurement.value).toBe("[1, 2, 3, 4]");
    const allowed = judge(
      { successCondition: "all(result, x < 10) and result[0] == 1", multipleSeries: true },
      result,
    );
    expect(allowed.phase).toBe("Successful");
  });

  it.each([
    [
      { successCondition: "result[3] < 1" },
      vector(1),
      'successCondition "result[3] < 1": index 3 is out of range',
    ],
    [{ successCondition: "result[0] < 1" }, scalar(1), "cannot index a number"],
    [
      { failureCondition: "result > 1" },
      vector(1),
      'failureCondition "result > 1": ">" needs a number, got a vector',
    ],
    [{ successCondition: "result" }, scalar(1), "must yield true or false"],
    [{ successCondition: "result[0] <" }, vector(1), "unexpected end of expression"],
  ])("%j on %j is an Error", (conditions, outcome, message) => {
    const measurement = judge(conditions, outcome);
    expect(measurement.phase).toBe("Error");
    expect(measurement.message).toContain(message);
  });

  it("a query error is an Error measurement with the query's message", () => {
    const measurement = judge({ successCondition: "result < 1" }, new Error("Prometheus down"));
    expect(measurement).toEqual({
      phase: "Error",
      message: "Prometheus down",
      startedAt: "2025-01-01T00:00:00.000Z",
      finishedAt: "2025-01-01T00:00:01.000Z",
    });
  });

  it("formats values readably", () => {
    expect(judge({ successCondition: "result < 1" }, scalar(0.5)).value).toBe("0.5");
    expect(judge({ successCondition: "result > 1" }, scalar(Infinity)).value).toBe("+Inf");
    expect(judge({ successCondition: "result[0] > 1" }, vector(-Infinity)).value).toBe("[-Inf]");
    expect(judge({ successCondition: "result[0] > 1" }, vector(NaN)).value).toBe("[NaN]");
    expect(judge({ successCondition: "result[0] > 1" }, vector()).value).toBe("[]");
    expect(judge({}, scalar(3)).startedAt).toBe("2025-01-01T00:00:00.000Z");
  });

  it("shows at most 10 values of a long vector", () => {
    const values = Array.from({ length: 12 }, (_, i) => i);
    const measurement = judge(
      { successCondition: "all(result, x < 100)", multipleSeries: true },
      {
        kind: "vector",
        series: values.map(v => ({ labels: { i: String(v).padStart(2, "0") }, value: v })),
      },
    );
    expect(measurement.phase).toBe("Successful");
    expect(measurement.value).toBe("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … 2 more]");
  });

  it("errorMeasurement builds an Error", () => {
    expect(errorMeasurement("boom", at(5), at(4))).toEqual({
      phase: "Error",
      message: "boom",
      startedAt: at(4).toISOString(),
      finishedAt: at(5).toISOString(),
    });
  });
});

describe("applyMeasurements", () => {
  it("creates a Pending status for every metric", () => {
    const spec: AnalysisSpec = { metrics: [metric({ name: "a" }), metric({ name: "b" })] };
    const run = applyMeasurements(spec, stepRun(), []);
    expect(run.phase).toBe("Running");
    expect(run.metrics).toEqual([
      {
        name: "a",
        phase: "Pending",
        count: 0,
        successful: 0,
        failed: 0,
        inconclusive: 0,
        error: 0,
        consecutiveErrors: 0,
        measurements: [],
      },
      {
        name: "b",
        phase: "Pending",
        count: 0,
        successful: 0,
        failed: 0,
        inconclusive: 0,
        error: 0,
        consecutiveErrors: 0,
        measurements: [],
      },
    ]);
  });

  it("counts every phase and records lastMeasuredAt", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ failureLimit: 9, inconclusiveLimit: 9, count: 99 })],
    };
    const run = feed(spec, backgroundRun(), "gate", [
      "Successful",
      "Failed",
      "Inconclusive",
      "Error",
      "Error",
    ]);
    expect(run.metrics[0]).toMatchObject({
      phase: "Running",
      count: 3,
      successful: 1,
      failed: 1,
      inconclusive: 1,
      error: 2,
      consecutiveErrors: 2,
      lastMeasuredAt: at(120).toISOString(),
    });
  });

  it("does not mutate its input", () => {
    const spec: AnalysisSpec = { metrics: [metric()] };
    const run = applyMeasurements(spec, stepRun(), []);
    const frozen = JSON.stringify(run);
    applyMeasurements(spec, run, [{ name: "gate", measurement: m("Failed") }]);
    expect(JSON.stringify(run)).toBe(frozen);
  });

  describe("failureLimit", () => {
    it.each([
      [0, ["Failed"], "Failed"],
      [1, ["Failed"], "Running"],
      [1, ["Failed", "Successful", "Failed"], "Failed"],
      [2, ["Failed", "Failed"], "Running"],
      [2, ["Failed", "Failed", "Failed"], "Failed"],
    ] as const)("limit %d after %j: run %s", (failureLimit, phases, expected) => {
      const spec: AnalysisSpec = { metrics: [metric({ failureLimit })] };
      const run = feed(spec, backgroundRun(), "gate", [...phases]);
      expect(run.phase).toBe(expected);
      if (expected === "Failed") {
        expect(run.message).toContain(`failed ${failureLimit + 1} > failureLimit ${failureLimit}`);
      }
    });
  });

  describe("inconclusiveLimit", () => {
    it.each([
      [0, ["Inconclusive"], "Inconclusive"],
      [1, ["Inconclusive"], "Running"],
      [1, ["Inconclusive", "Successful", "Inconclusive"], "Inconclusive"],
    ] as const)("limit %d after %j: run %s", (inconclusiveLimit, phases, expected) => {
      const spec: AnalysisSpec = { metrics: [metric({ inconclusiveLimit })] };
      const run = feed(spec, backgroundRun(), "gate", [...phases]);
      expect(run.phase).toBe(expected);
    });
  });

  describe("consecutiveErrorLimit", () => {
    it("fails the run on the 5th consecutive error by default (Argo: errors > 4)", () => {
      const spec: AnalysisSpec = { metrics: [metric()] };
      const four = feed(spec, stepRun(), "gate", ["Error", "Error", "Error", "Error"]);
      expect(four.phase).toBe("Running");
      expect(four.metrics[0].phase).toBe("Running");
      const five = feed(spec, four, "gate", ["Error"]);
      expect(five.phase).toBe("Error");
      expect(five.metrics[0].phase).toBe("Error");
      expect(five.message).toContain("5 consecutive errors > consecutiveErrorLimit 4");
    });

    it("a non-error measurement resets the streak", () => {
      const spec: AnalysisSpec = { metrics: [metric({ count: 10 })] };
      const run = feed(spec, stepRun(), "gate", [
        "Error",
        "Error",
        "Error",
        "Error",
        "Successful",
        "Error",
        "Error",
        "Error",
        "Error",
      ]);
      expect(run.phase).toBe("Running");
      expect(run.metrics[0]).toMatchObject({ error: 8, consecutiveErrors: 4, count: 1 });
    });

    it("limit 0 fails on the first error", () => {
      const spec: AnalysisSpec = { metrics: [metric({ consecutiveErrorLimit: 0 })] };
      expect(feed(spec, stepRun(), "gate", ["Error"]).phase).toBe("Error");
    });

    it("a streak crossed inside one batch is not hidden by a later success", () => {
      const spec: AnalysisSpec = { metrics: [metric({ consecutiveErrorLimit: 1, count: 5 })] };
      const batch: NamedMeasurement[] = (["Error", "Error", "Successful"] as const).map(
        (phase, i) => ({
          name: "gate",
          measurement: m(phase, i),
        }),
      );
      expect(applyMeasurements(spec, stepRun(), batch).phase).toBe("Error");
    });
  });

  describe("count", () => {
    it("a step gate without count needs one measurement; errors do not count", () => {
      const spec: AnalysisSpec = { metrics: [metric()] };
      const errored = feed(spec, stepRun(), "gate", ["Error"]);
      expect(errored.phase).toBe("Running");
      const done = feed(spec, errored, "gate", ["Successful"]);
      expect(done.phase).toBe("Successful");
      expect(done.message).toBe("all metrics successful: gate");
    });

    it("an explicit count with tolerated failures succeeds (Argo semantics)", () => {
      const spec: AnalysisSpec = { metrics: [metric({ count: 3, failureLimit: 1 })] };
      const two = feed(spec, stepRun(), "gate", ["Successful", "Failed"]);
      expect(two.phase).toBe("Running");
      expect(feed(spec, two, "gate", ["Successful"]).phase).toBe("Successful");
    });

    it("a count reached without any success is never Successful", () => {
      const failed = { metrics: [metric({ count: 2, failureLimit: 5 })] };
      const run = feed(failed, stepRun(), "gate", ["Failed", "Failed"]);
      expect(run.phase).toBe("Failed");
      expect(run.message).toContain("count 2 reached without a successful measurement");
      const inconclusive = { metrics: [metric({ count: 2, inconclusiveLimit: 5 })] };
      expect(feed(inconclusive, stepRun(), "gate", ["Inconclusive", "Inconclusive"]).phase).toBe(
        "Inconclusive",
      );
    });

    it("a background metric without count runs until the run ends", () => {
      const spec: AnalysisSpec = { metrics: [metric()] };
      const run = feed(spec, backgroundRun(), "gate", Array(50).fill("Successful"));
      expect(run.phase).toBe("Running");
      expect(run.metrics[0].count).toBe(50);
    });

    it("a background metric with count completes", () => {
      const spec: AnalysisSpec = { metrics: [metric({ count: 2 })] };
      expect(feed(spec, backgroundRun(), "gate", ["Successful", "Successful"]).phase).toBe(
        "Successful",
      );
    });
  });

  describe("several metrics", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "a" }), metric({ name: "b", count: 2 })],
    };

    it("the run passes only when every metric passed", () => {
      const one = applyMeasurements(spec, stepRun(), [
        { name: "a", measurement: m("Successful") },
        { name: "b", measurement: m("Successful") },
      ]);
      expect(one.metrics.map(s => s.phase)).toEqual(["Successful", "Running"]);
      expect(one.phase).toBe("Running");
      const two = applyMeasurements(spec, one, [{ name: "b", measurement: m("Successful", 30) }]);
      expect(two.phase).toBe("Successful");
    });

    it("one failing metric ends the run at once", () => {
      const run = applyMeasurements(spec, stepRun(), [{ name: "b", measurement: m("Failed") }]);
      expect(run.phase).toBe("Failed");
      expect(run.metrics.map(s => s.phase)).toEqual(["Pending", "Failed"]);
    });

    it("the worst metric wins: Failed > Error > Inconclusive", () => {
      const three: AnalysisSpec = {
        metrics: [
          metric({ name: "i" }),
          metric({ name: "e", consecutiveErrorLimit: 0 }),
          metric({ name: "f" }),
        ],
      };
      const all = (phases: Record<string, MeasurementPhase>) =>
        applyMeasurements(
          three,
          stepRun(),
          Object.entries(phases).map(([name, phase]) => ({ name, measurement: m(phase) })),
        ).phase;
      expect(all({ i: "Inconclusive", e: "Error", f: "Failed" })).toBe("Failed");
      expect(all({ i: "Inconclusive", e: "Error", f: "Successful" })).toBe("Error");
      expect(all({ i: "Inconclusive", e: "Successful", f: "Successful" })).toBe("Inconclusive");
    });
  });

  describe("dryRun never decides", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "real" }), metric({ name: "shadow", dryRun: true })],
    };

    it("a failing dryRun metric is recorded but does not fail the run", () => {
      const run = applyMeasurements(spec, stepRun(), [
        { name: "shadow", measurement: m("Failed") },
        { name: "real", measurement: m("Successful") },
      ]);
      expect(run.metrics.find(s => s.name === "shadow")).toMatchObject({
        phase: "Failed",
        failed: 1,
      });
      expect(run.phase).toBe("Successful");
    });

    it("a passing dryRun metric does not pass the run", () => {
      const run = applyMeasurements(spec, stepRun(), [
        { name: "shadow", measurement: m("Successful") },
      ]);
      expect(run.phase).toBe("Running");
      const failed = applyMeasurements(spec, run, [{ name: "real", measurement: m("Failed") }]);
      expect(failed.phase).toBe("Failed");
    });

    it.each(["Failed", "Error", "Inconclusive"] as const)(
      "a dryRun metric ending %s does not end the run",
      phase => {
        const strict: AnalysisSpec = {
          metrics: [
            metric({ name: "real", count: 3 }),
            metric({ name: "shadow", dryRun: true, consecutiveErrorLimit: 0 }),
          ],
        };
        const run = applyMeasurements(strict, stepRun(), [
          { name: "shadow", measurement: m(phase) },
        ]);
        expect(run.metrics[1].phase).toBe(phase);
        expect(run.phase).toBe("Running");
      },
    );

    it("a run of only dryRun metrics succeeds once they finished, whatever they measured", () => {
      const shadowOnly: AnalysisSpec = { metrics: [metric({ name: "shadow", dryRun: true })] };
      const run = applyMeasurements(shadowOnly, stepRun(), [
        { name: "shadow", measurement: m("Failed") },
      ]);
      expect(run.phase).toBe("Successful");
      expect(run.message).toContain("all metrics are dryRun");
    });
  });

  it("a verdict never flips", () => {
    const spec: AnalysisSpec = { metrics: [metric({ count: 2 })] };
    const failed = feed(spec, stepRun(), "gate", ["Failed"]);
    expect(failed.phase).toBe("Failed");
    const later = feed(spec, failed, "gate", ["Successful", "Successful"]);
    expect(later).toBe(failed);
  });

  it("ignores measurements for unknown or finished metrics", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "a" }), metric({ name: "b", count: 3 })],
    };
    const run = applyMeasurements(spec, stepRun(), [
      { name: "a", measurement: m("Successful") },
      { name: "ghost", measurement: m("Failed") },
    ]);
    const again = applyMeasurements(spec, run, [{ name: "a", measurement: m("Failed") }]);
    expect(again.metrics[0]).toMatchObject({ phase: "Successful", count: 1, failed: 0 });
    expect(again.phase).toBe("Running");
  });

  it("keeps only the last measurementsToKeep measurements", () => {
    const spec: AnalysisSpec = { metrics: [metric({ count: 10 })], measurementsToKeep: 2 };
    const run = feed(spec, stepRun(), "gate", ["Successful", "Error", "Successful", "Successful"]);
    expect(run.metrics[0].measurements.map(x => x.startedAt)).toEqual([
      at(60).toISOString(),
      at(90).toISOString(),
    ]);
    const defaults = feed(
      { metrics: [metric({ count: 10 })] },
      stepRun(),
      "gate",
      Array(8).fill("Successful"),
    );
    expect(defaults.metrics[0].measurements).toHaveLength(5);
  });

  it("survives a restart: the same decisions from a JSON round trip", () => {
    const spec: AnalysisSpec = { metrics: [metric({ count: 3, failureLimit: 1 })] };
    const half = feed(spec, stepRun(), "gate", ["Failed", "Error"]);
    const restored = JSON.parse(JSON.stringify(half)) as AnalysisRunStatus;
    expect(feed(spec, restored, "gate", ["Failed"]).phase).toBe("Failed");
    expect(dueMetrics(spec, restored, at(200))).toEqual(dueMetrics(spec, half, at(200)));
  });

  it("names metric, value and condition in the run message", () => {
    const spec: AnalysisSpec = { metrics: [metric({ name: "canary-error-rate" })] };
    const measurement = judge({ successCondition: "result[0] < 0.05" }, vector(0.12));
    const run = applyMeasurements(spec, stepRun(), [{ name: "canary-error-rate", measurement }]);
    expect(run.message).toBe(
      'metric canary-error-rate Failed (failed 1 > failureLimit 0); last value [0.12]: successCondition "result[0] < 0.05" is false',
    );
  });
});

describe("dueMetrics", () => {
  it("measures at once, or after initialDelay", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "now" }), metric({ name: "later", initialDelay: "1m" })],
    };
    const run = stepRun();
    expect(dueMetrics(spec, run, T0)).toEqual({ due: ["now"], nextDueAt: at(60).toISOString() });
    expect(dueMetrics(spec, run, at(59.999))).toEqual({
      due: ["now"],
      nextDueAt: at(60).toISOString(),
    });
    expect(dueMetrics(spec, run, at(60))).toEqual({ due: ["now", "later"] });
  });

  it("waits interval (default 30s) after the last measurement finished", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "a", count: 3 }), metric({ name: "b", count: 3, interval: "1m" })],
    };
    const run = applyMeasurements(spec, backgroundRun(), [
      { name: "a", measurement: m("Successful", 10) },
      { name: "b", measurement: m("Successful", 10) },
    ]);
    expect(dueMetrics(spec, run, at(20))).toEqual({ due: [], nextDueAt: at(40).toISOString() });
    expect(dueMetrics(spec, run, at(40))).toEqual({ due: ["a"], nextDueAt: at(70).toISOString() });
    expect(dueMetrics(spec, run, at(70)).due).toEqual(["a", "b"]);
  });

  it("retries an error after 10s without an interval, after the interval with one", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "a" }), metric({ name: "b", interval: "1m" })],
    };
    const run = applyMeasurements(spec, stepRun(), [
      { name: "a", measurement: m("Error", 0) },
      { name: "b", measurement: m("Error", 0) },
    ]);
    expect(dueMetrics(spec, run, at(10))).toEqual({ due: ["a"], nextDueAt: at(60).toISOString() });
  });

  it("stops when the count is reached, the metric or the run has a verdict", () => {
    const spec: AnalysisSpec = {
      metrics: [
        metric({ name: "one" }),
        metric({ name: "bg" }),
        metric({ name: "shadow", dryRun: true }),
      ],
    };
    const step = applyMeasurements(spec, stepRun(), [
      { name: "one", measurement: m("Successful") },
      { name: "shadow", measurement: m("Failed") },
    ]);
    expect(dueMetrics(spec, step, at(100))).toEqual({ due: ["bg"] });
    const failed = applyMeasurements(spec, step, [{ name: "bg", measurement: m("Failed") }]);
    expect(failed.phase).toBe("Failed");
    expect(dueMetrics(spec, failed, at(1000))).toEqual({ due: [] });
    const background = applyMeasurements(spec, backgroundRun(), [
      { name: "one", measurement: m("Successful") },
    ]);
    expect(dueMetrics(spec, background, at(30)).due).toContain("one");
  });
});

describe("concludeRun", () => {
  const spec: AnalysisSpec = {
    metrics: [
      metric({ name: "a" }),
      metric({ name: "b", inconclusiveLimit: 3 }),
      metric({ name: "shadow", dryRun: true }),
    ],
  };

  it("passes metrics that measured successfully", () => {
    const run = applyMeasurements(spec, backgroundRun(), [
      { name: "a", measurement: m("Successful") },
      { name: "b", measurement: m("Inconclusive") },
      { name: "b", measurement: m("Successful", 30) },
    ]);
    const done = concludeRun(spec, run, at(60));
    expect(done.phase).toBe("Successful");
    expect(done.metrics.map(s => s.phase)).toEqual(["Successful", "Successful", "Pending"]);
  });

  it("a metric that never succeeded makes the run Inconclusive: a missing analysis never passes", () => {
    const run = applyMeasurements(spec, backgroundRun(), [
      { name: "a", measurement: m("Successful") },
      { name: "b", measurement: m("Inconclusive") },
    ]);
    const done = concludeRun(spec, run, at(60));
    expect(done.phase).toBe("Inconclusive");
    expect(done.message).toContain(
      "metric b Inconclusive (no successful measurement before the analysis ended)",
    );
    expect(concludeRun(spec, backgroundRun(), at(1)).phase).toBe("Inconclusive");
  });

  it("leaves a run with a verdict alone", () => {
    const failed = applyMeasurements(spec, backgroundRun(), [
      { name: "a", measurement: m("Failed") },
    ]);
    expect(concludeRun(spec, failed, at(60))).toBe(failed);
  });
});

describe("summarize", () => {
  it("summarizes every metric with counters, last value and reason", () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "err", count: 3 }), metric({ name: "ttft" })],
    };
    const run = applyMeasurements(spec, stepRun(), [
      { name: "err", measurement: judge({ successCondition: "result[0] < 0.05" }, vector(0.01)) },
    ]);
    expect(summarize(run)).toBe(
      'analysis Running: err Running (1 ok, 0 failed, 0 inconclusive, 0 errors, last [0.01]: successCondition "result[0] < 0.05" is true); ttft Pending (0 ok, 0 failed, 0 inconclusive, 0 errors)',
    );
  });
});

describe("validateAnalysis", () => {
  const valid: AnalysisSpec = {
    metrics: [
      metric({
        name: "q",
        query: 'sum(rate(x{pool="{{canary}}"}[{{interval}}]))',
        interval: "1m",
        failureCondition: "result[0] > 1",
      }),
      { name: "t", template: "ttft-p95-ratio", args: { maxRatio: "1.2" } },
      {
        name: "split",
        template: "traffic-split",
        prometheus: {
          address: "https://prom:9090",
          timeout: "5s",
          caSecretRef: { name: "ca", key: "ca.crt" },
        },
      },
    ],
  };

  it("accepts a valid spec", () => {
    expect(validateAnalysis(valid, provider)).toEqual([]);
  });

  it.each([
    [{ metrics: [] }, "metrics: at least one metric is required"],
    [{}, "metrics: at least one metric is required"],
    [
      { metrics: [metric()], measurementsToKeep: 0 },
      "measurementsToKeep must be a whole number from 1 to 50",
    ],
    [{ metrics: [metric(), metric()] }, "metrics[1] (gate): duplicate metric name"],
    [{ metrics: [{ query: "x" }] }, "metrics[0]: name is required"],
    [{ metrics: [{ name: "a" }] }, "metrics[0] (a): set exactly one of query, template and probe"],
    [
      { metrics: [{ name: "a", query: "x", template: "error-rate" }] },
      "set exactly one of query, template and probe",
    ],
    [
      { metrics: [metric({ successCondition: "result[0] <" })] },
      'metrics[0] (gate): successCondition: unexpected end of expression at column 12 of "result[0] <"',
    ],
    [
      { metrics: [metric({ failureCondition: "reslt > 1" })] },
      'failureCondition: unknown name "reslt"',
    ],
    [{ metrics: [metric({ query: 'x{a="{{canry}}"}' })] }, "query: unknown placeholder {{canry}}"],
    [
      { metrics: [metric({ query: "x[{{args.w}}]", args: { w: "5 m" } })] },
      "query: {{args.w}} stands where PromQL expects a duration",
    ],
    [{ metrics: [metric({ query: "x{a={{args.w}}}" })] }, "args.w is not set"],
    [
      { metrics: [{ name: "t", template: "ttft-p95-ratio", successCondition: "true" }] },
      "successCondition cannot be combined with template",
    ],
    [{ metrics: [{ name: "t", template: "p99" }] }, 'unknown template "p99"'],
    [
      { metrics: [{ name: "t", template: "error-rate", args: { maxRatio: "2" } }] },
      "args.maxRatio must be a number in (0, 1]",
    ],
    [
      { metrics: [{ name: "t", template: "error-rate", args: { maxRatio: 0.1 } }] },
      'args.maxRatio must be a string (quote numbers: "1.2")',
    ],
    [{ metrics: [metric({ interval: "30" })] }, 'interval "30" is not a duration like 30s'],
    [{ metrics: [metric({ interval: "0s" })] }, 'interval "0s" must be longer than 0'],
    [{ metrics: [metric({ initialDelay: "soon" })] }, 'initialDelay "soon" is not a duration'],
    [{ metrics: [metric({ interval: "8761h" })] }, 'interval "8761h" is longer than 8760h'],
    [
      { metrics: [metric({ initialDelay: "9999999999999h" })] },
      'initialDelay "9999999999999h" is longer than 8760h',
    ],
    [{ metrics: [metric({ count: 0 })] }, "count must be a whole number >= 1"],
    [{ metrics: [metric({ failureLimit: -1 })] }, "failureLimit must be a whole number >= 0"],
    [
      { metrics: [metric({ inconclusiveLimit: 1.5 })] },
      "inconclusiveLimit must be a whole number >= 0",
    ],
    [
      { metrics: [metric({ consecutiveErrorLimit: -2 })] },
      "consecutiveErrorLimit must be a whole number >= 0",
    ],
    [
      { metrics: [metric({ dryRun: "yes" as unknown as boolean })] },
      "dryRun must be true or false",
    ],
    [
      { metrics: [metric({ prometheus: { address: "prom:9090" } })] },
      "prometheus.address must start with http:// or https://",
    ],
    [
      { metrics: [metric({ prometheus: { address: "http://p", timeout: "10" } })] },
      'prometheus.timeout "10" is not a duration',
    ],
    [
      { metrics: [metric({ prometheus: { address: "http://p", timeout: "11m" } })] },
      'prometheus.timeout "11m" is longer than 10m',
    ],
    [
      {
        metrics: [
          metric({
            prometheus: {
              address: "http://p",
              bearerTokenSecretRef: { name: "s" } as SecretKeyRef,
            },
          }),
        ],
      },
      "prometheus.bearerTokenSecretRef needs a name and a key",
    ],
  ])("%j: %s", (spec, message) => {
    const errors = validateAnalysis(spec as unknown as AnalysisSpec, provider);
    expect(errors.join("\n")).toContain(message);
  });

  it("requires a provider: the metric's own or the default", () => {
    expect(validateAnalysis({ metrics: [metric()] })).toEqual([
      "metrics[0] (gate): no Prometheus address: set spec.prometheus or this metric's prometheus",
    ]);
    expect(validateAnalysis({ metrics: [metric({ prometheus: provider })] })).toEqual([]);
    expect(validateAnalysis({ metrics: [metric()] }, { address: "nope" })).toEqual([
      'metrics[0] (gate): default prometheus.address "nope" is not a URL',
    ]);
  });

  it("reports every problem, not just the first", () => {
    const errors = validateAnalysis(
      { metrics: [metric({ interval: "x", count: -1, successCondition: "(" })] },
      provider,
    );
    expect(errors).toHaveLength(3);
  });
});

describe("resolveMetric", () => {
  const ctx: MeasureContext = {
    scope: "adapters",
    namespace: "ns",
    rollout: "r",
    canary: 'v2"}',
    stable: "v1",
    weight: 20,
  };

  it("renders a query with escaped values and keeps its conditions", () => {
    const resolved = resolveMetric(
      metric({
        query: 'x{m="{{canary}}"}[{{interval}}]',
        interval: "15s",
        failureCondition: "result[0] > 2",
        multipleSeries: true,
      }),
      ctx,
      provider,
    );
    expect(resolved).toEqual({
      name: "gate",
      query: 'x{m="v2\\"}"}[15s]',
      successCondition: "result[0] < 1",
      failureCondition: "result[0] > 2",
      multipleSeries: true,
      dryRun: false,
      provider,
    });
  });

  it("expands a built-in with the scope and weight of the rollout; the metric's provider wins", () => {
    const own: ProviderSpec = { address: "http://own:9090" };
    const resolved = resolveMetric(
      { name: "split", template: "traffic-split", prometheus: own },
      ctx,
      provider,
    );
    expect(resolved.query).toContain('target_model_name="v2\\"}"');
    expect(resolved.successCondition).toContain("abs(result[0] - 20)");
    expect(resolved.provider).toBe(own);
  });
});

/** The reconciler's gate I/O, composed as it does: due queries, run, judged and recorded. */
async function measureDue(
  spec: AnalysisSpec,
  run: AnalysisRunStatus,
  ctx: MeasureContext,
  now: Date,
  query: QueryFunction,
): Promise<AnalysisRunStatus> {
  const outcomes = await runDueQueries(dueQueries(spec, run, ctx, now), query, now);
  return recordOutcomes(spec, run, ctx, outcomes);
}

describe("measureDue", () => {
  const ctx: MeasureContext = {
    scope: "pools",
    namespace: "ns",
    rollout: "r",
    canary: "v2",
    stable: "v1",
    defaultProvider: provider,
  };

  it("runs the due queries concurrently and records their measurements", async () => {
    const spec: AnalysisSpec = {
      metrics: [
        metric({ name: "a", query: 'a{pool="{{canary}}"}' }),
        metric({ name: "b", query: "b", initialDelay: "1m" }),
        metric({ name: "c", query: "c" }),
      ],
    };
    const started: string[] = [];
    const release: Array<() => void> = [];
    const query = jest.fn((promql: string, p: ProviderSpec) => {
      expect(p).toBe(provider);
      started.push(promql);
      return new Promise<QueryResult>(resolve => release.push(() => resolve(vector(0.5))));
    });
    const pending = measureDue(spec, stepRun(), ctx, T0, query);
    await new Promise(resolve => setImmediate(resolve));
    // Both queries are in flight before either answers.
    expect(started).toEqual(['a{pool="v2"}', "c"]);
    release.forEach(r => r());
    const run = await pending;
    expect(run.metrics.map(s => s.phase)).toEqual(["Successful", "Pending", "Successful"]);
    expect(run.metrics[0].measurements[0]).toMatchObject({
      phase: "Successful",
      value: "[0.5]",
      startedAt: T0.toISOString(),
    });
    expect(Date.parse(run.metrics[0].measurements[0].finishedAt)).toBeGreaterThanOrEqual(
      T0.getTime(),
    );
    expect(run.phase).toBe("Running");
  });

  it("turns a throwing query into an Error measurement, and fails after the error limit", async () => {
    const spec: AnalysisSpec = { metrics: [metric({ interval: "10s" })] };
    const query = jest.fn(async () => {
      throw new Error("Prometheus http://prometheus:9090: connection refused");
    });
    let run = stepRun();
    // 11 s apart: the next measurement is due 10 s after the previous one *finished*, and
    // finishedAt includes the real time the (failing) query took, a few ms on a loaded machine.
    for (let i = 0; i < 5; i++) run = await measureDue(spec, run, ctx, at(i * 11), query);
    expect(query).toHaveBeenCalledTimes(5);
    expect(run.phase).toBe("Error");
    expect(["Failed", "Error"]).toContain(run.phase);
    expect(run.metrics[0].measurements[4].message).toContain("connection refused");
    // No more queries once the run has a verdict.
    await measureDue(spec, run, ctx, at(100), query);
    expect(query).toHaveBeenCalledTimes(5);
  });

  it("does nothing when nothing is due", async () => {
    const spec: AnalysisSpec = { metrics: [metric({ initialDelay: "5m" })] };
    const query = jest.fn();
    const run = stepRun();
    expect(await measureDue(spec, run, ctx, at(10), query)).toBe(run);
    expect(query).not.toHaveBeenCalled();
  });

  it("an unbuildable query or a missing provider is an Error measurement, not a crash", async () => {
    const spec: AnalysisSpec = {
      metrics: [metric({ name: "tpl", query: 'x{m="{{modelName}}"}' }), metric({ name: "noprov" })],
    };
    const query = jest.fn(async () => vector(0));
    const run = await measureDue(
      spec,
      stepRun(),
      { ...ctx, defaultProvider: undefined },
      T0,
      query,
    );
    expect(run.metrics[0].measurements[0].message).toBe(
      "cannot build the query: {{modelName}} is not known for this rollout",
    );
    expect(run.metrics[1].measurements[0].message).toBe("no Prometheus provider configured");
    expect(query).not.toHaveBeenCalled();
  });

  describe("never promotes on a failed, erroring, empty or missing analysis", () => {
    const spec: AnalysisSpec = { metrics: [metric({ successCondition: "result[0] < 0.05" })] };
    it.each([
      ["failed", async () => vector(0.5), "Failed"],
      ["empty", async () => vector(), "Inconclusive"],
      ["NaN", async () => vector(NaN), "Inconclusive"],
      ["several series", async () => vector(0.01, 0.02), "Running"],
    ] as const)("%s result", async (_label, answer, decision) => {
      const run = await measureDue(spec, stepRun(), ctx, T0, answer);
      expect(run.phase).toBe(decision);
      expect(run.phase).not.toBe("Successful");
    });

    it("missing: a background analysis that never measured does not pass", () => {
      expect(concludeRun(spec, backgroundRun(), at(600)).phase).toBe("Inconclusive");
    });
  });
});
