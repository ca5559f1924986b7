import {
  BUILTIN_TEMPLATES,
  BuiltinError,
  PICKER_METRICS,
  describeBuiltins,
  expandBuiltin,
  validateBuiltin,
} from "./builtins";
import { parse } from "./expr";
import { placeholdersOf, renderQuery } from "./promql";
import { measurementFrom } from "./run";
import type { QueryResult } from "./types";

const vector = (...values: number[]): QueryResult => ({
  kind: "vector",
  series: values.map(value => ({ labels: {}, value })),
});

function phaseOf(
  template: string,
  args: Record<string, string>,
  result: QueryResult,
  weight?: number,
): string {
  const expansion = expandBuiltin(template, args, { scope: "pools", weight });
  return measurementFrom({ ...expansion, multipleSeries: false }, result, new Date(0)).phase;
}

describe("built-in gates", () => {
  it("lists the five LLM gates", () => {
    expect(BUILTIN_TEMPLATES).toEqual([
      "error-rate",
      "latency-p95-ratio",
      "ttft-p95-ratio",
      "min-request-count",
      "traffic-split",
    ]);
    expect(describeBuiltins().map(b => b.name)).toEqual(BUILTIN_TEMPLATES);
    expect(describeBuiltins()[0].args.maxRatio).toEqual({
      default: "0.05",
      help: "highest tolerated error ratio",
    });
  });

  it.each(BUILTIN_TEMPLATES)("%s parses, renders and uses only canary/stable", template => {
    for (const scope of ["pools", "adapters"] as const) {
      const e = expandBuiltin(template, {}, { scope, weight: 25 });
      expect(() => parse(e.successCondition)).not.toThrow();
      expect(() => parse(e.failureCondition)).not.toThrow();
      for (const name of placeholdersOf(e.query)) expect(["canary", "stable"]).toContain(name);
      const label = scope === "pools" ? "pool" : "target_model_name";
      const other = scope === "pools" ? "target_model_name" : "pool=";
      const query = renderQuery(e.query, { canary: "c", stable: "s" });
      expect(query).toContain(`{${label}="c"}`);
      expect(query).not.toContain(other);
      // Every sub-query is filtered to nothing below the minimum (low traffic guard), except
      // min-request-count whose condition carries the threshold.
      if (template !== "min-request-count") expect(query).toMatch(/>= \d+\)/);
    }
  });

  it("error-rate: errors over requests of the canary, guarded by minRequests", () => {
    const e = expandBuiltin(
      "error-rate",
      { maxRatio: "0.10", window: "5m" },
      { scope: "adapters" },
    );
    expect(e.query).toBe(
      `(sum(increase(${PICKER_METRICS.errors}{target_model_name="{{canary}}"}[5m])) or on() vector(0))` +
        ` / (sum(increase(${PICKER_METRICS.requests}{target_model_name="{{canary}}"}[5m])) >= 20)`,
    );
    expect(e.successCondition).toBe("len(result) == 1 and result[0] < 0.1");
    expect(e.failureCondition).toBe("len(result) == 1 and result[0] >= 0.1");
    expect(phaseOf("error-rate", {}, vector(0.01))).toBe("Successful");
    expect(phaseOf("error-rate", {}, vector(0))).toBe("Successful");
    expect(phaseOf("error-rate", {}, vector(0.05))).toBe("Failed");
    expect(phaseOf("error-rate", {}, vector())).toBe("Inconclusive");
    expect(phaseOf("error-rate", {}, vector(NaN))).toBe("Inconclusive");
  });

  it("latency and TTFT ratios: one query dividing canary p95 by stable p95", () => {
    const e = expandBuiltin(
      "ttft-p95-ratio",
      { maxRatio: "1.5", minRequests: "50" },
      {
        scope: "pools",
      },
    );
    expect(e.query).toBe(
      `(histogram_quantile(0.95, sum by (le) (rate(${PICKER_METRICS.ttft}_bucket{pool="{{canary}}"}[2m])))` +
        ` / histogram_quantile(0.95, sum by (le) (rate(${PICKER_METRICS.ttft}_bucket{pool="{{stable}}"}[2m]))))` +
        ` and on() (sum(increase(${PICKER_METRICS.ttft}_count{pool="{{canary}}"}[2m])) >= 50)` +
        ` and on() (sum(increase(${PICKER_METRICS.ttft}_count{pool="{{stable}}"}[2m])) >= 50)`,
    );
    expect(expandBuiltin("latency-p95-ratio", {}, { scope: "pools" }).query).toContain(
      `${PICKER_METRICS.duration}_bucket`,
    );
    expect(phaseOf("latency-p95-ratio", {}, vector(1.1))).toBe("Successful");
    expect(phaseOf("latency-p95-ratio", {}, vector(1.2))).toBe("Successful");
    expect(phaseOf("latency-p95-ratio", {}, vector(1.21))).toBe("Failed");
    expect(phaseOf("latency-p95-ratio", {}, vector(Infinity))).toBe("Failed");
    expect(phaseOf("ttft-p95-ratio", {}, vector())).toBe("Inconclusive");
    expect(phaseOf("ttft-p95-ratio", {}, vector(NaN))).toBe("Inconclusive");
  });

  it("min-request-count: too little traffic is Inconclusive, never Successful nor Failed", () => {
    const e = expandBuiltin("min-request-count", { minRequests: "100" }, { scope: "pools" });
    expect(e.query).toBe(`sum(increase(${PICKER_METRICS.requests}{pool="{{canary}}"}[2m]))`);
    expect(phaseOf("min-request-count", { minRequests: "100" }, vector(150))).toBe("Successful");
    expect(phaseOf("min-request-count", { minRequests: "100" }, vector(99))).toBe("Inconclusive");
    expect(phaseOf("min-request-count", { minRequests: "100" }, vector(0))).toBe("Inconclusive");
    expect(phaseOf("min-request-count", { minRequests: "100" }, vector())).toBe("Inconclusive");
  });

  it("traffic-split: observed canary share versus the configured weight", () => {
    const e = expandBuiltin("traffic-split", { tolerance: "5" }, { scope: "pools", weight: 10 });
    const canary = `(sum(increase(${PICKER_METRICS.requests}{pool="{{canary}}"}[1m])) or on() vector(0))`;
    const stable = `(sum(increase(${PICKER_METRICS.requests}{pool="{{stable}}"}[1m])) or on() vector(0))`;
    expect(e.query).toBe(`100 * ${canary} / ((${canary} + ${stable}) >= 200)`);
    expect(e.successCondition).toBe("len(result) == 1 and abs(result[0] - 10) <= 5");
    expect(phaseOf("traffic-split", {}, vector(12), 10)).toBe("Successful");
    // The gateway ignored the weights: no canary traffic, or an even split.
    expect(phaseOf("traffic-split", {}, vector(0), 10)).toBe("Failed");
    expect(phaseOf("traffic-split", {}, vector(50), 10)).toBe("Failed");
    expect(phaseOf("traffic-split", {}, vector(), 10)).toBe("Inconclusive");
    // An explicit weight arg wins over the current weight.
    expect(phaseOf("traffic-split", { weight: "50" }, vector(50), 10)).toBe("Successful");
  });

  it("traffic-split: default tolerance is 3 sigma of a random split of minRequests, >= 2", () => {
    const tolerance = (weight: number, minRequests = "200") =>
      expandBuiltin("traffic-split", { minRequests }, { scope: "pools", weight }).successCondition;
    expect(tolerance(10)).toContain("<= 6.4"); // 3 * 100 * sqrt(0.09 / 200) = 6.36
    expect(tolerance(50)).toContain("<= 10.7");
    expect(tolerance(0)).toContain("<= 2");
    expect(tolerance(100)).toContain("<= 2");
    expect(tolerance(50, "10000")).toContain("<= 2");
  });

  it("traffic-split needs a weight", () => {
    expect(() => expandBuiltin("traffic-split", {}, { scope: "pools" })).toThrow(
      /canary weight is not known/,
    );
  });

  it.each([
    ["nope", {}, /unknown template "nope" \(built-in templates: error-rate/],
    [
      "error-rate",
      { maxratio: "0.1" },
      /has no arg "maxratio" \(args: maxRatio, minRequests, window\)/,
    ],
    ["error-rate", { maxRatio: "1.5" }, /maxRatio must be a number in \(0, 1\]/],
    ["error-rate", { maxRatio: "0" }, /maxRatio must be a number in \(0, 1\]/],
    ["error-rate", { maxRatio: "5%" }, /maxRatio must be a number/],
    ["latency-p95-ratio", { maxRatio: "-1" }, /maxRatio must be a positive number/],
    ["latency-p95-ratio", { maxRatio: "Infinity" }, /maxRatio must be a positive number/],
    ["min-request-count", { minRequests: "2.5" }, /whole number >= 1/],
    ["min-request-count", { minRequests: "0" }, /whole number >= 1/],
    ["min-request-count", { window: "5 minutes" }, /window must be a positive duration/],
    ["min-request-count", { window: "1m]) or vector(1" }, /window must be a positive duration/],
    ["traffic-split", { weight: "101" }, /weight must be a number from 0 to 100/],
  ])("%s with %j is rejected", (template, args, message) => {
    const errors = validateBuiltin(template, args as Record<string, string>);
    expect(errors.join("\n")).toMatch(message);
    expect(() =>
      expandBuiltin(template, args as Record<string, string>, { scope: "pools", weight: 1 }),
    ).toThrow(BuiltinError);
  });

  it("accepts valid args", () => {
    expect(
      validateBuiltin("traffic-split", { tolerance: "3", minRequests: "50", window: "30s" }),
    ).toEqual([]);
    expect(validateBuiltin("error-rate", {})).toEqual([]);
  });
});
