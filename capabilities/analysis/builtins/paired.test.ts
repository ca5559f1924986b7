import { lex } from "../../../test/support/promql-lexer";
import { measurementFrom, resolveMetric } from "..";
import { renderQuery, variablesFor } from "../promql";
import type { QueryResult, Scope, TemplateContext } from "../types";
import { BuiltinError, expandBuiltin, validateBuiltin } from "./expand";
import { describeBuiltins } from "./gates";
import type { MetricsSourceName } from "./metric-sources";

const paired = (
  args: Record<string, string> = {},
  metricsSource: MetricsSourceName = "vllm",
  scope: Scope = "pools",
) => expandBuiltin("paired-comparison", args, { scope, metricsSource });

const vector = (...values: number[]): QueryResult => ({
  kind: "vector",
  series: values.map(value => ({ labels: {}, value })),
});
const phase = (result: QueryResult) =>
  measurementFrom({ ...paired(), multipleSeries: false }, result, new Date(0)).phase;

/** What a counter gained in the window (exact, no extrapolation; a young series counts whole). */
const gained = (series: string, window: string) =>
  `sum(clamp_min(${series} - ${series} offset ${window}, 0) or ${series})`;

/** The signals a query compares (its label_replace names). */
const signalsOf = (query: string) => [
  ...new Set([...query.matchAll(/"signal", "([a-z]+)"/g)].map(m => m[1])),
];

describe("paired-comparison", () => {
  it("is listed with its args and defaults", () => {
    const d = describeBuiltins().find(b => b.name === "paired-comparison");
    expect(Object.keys(d?.args ?? {})).toEqual([
      "signals",
      "maxTtftRatio",
      "maxItlRatio",
      "maxErrorRateDelta",
      "minRequests",
      "window",
      "namespaceLabel",
      "selector",
      "poolLabel",
    ]);
    expect(d?.args.signals.default).toBe("ttft,itl,errors");
    expect(d?.args.minRequests.help).toMatch(/EACH side/);
  });

  it("validates its args with messages naming the arg", () => {
    expect(validateBuiltin("paired-comparison", { signals: "ttft, errors" })).toEqual([]);
    expect(validateBuiltin("paired-comparison", { signals: "ttft,latency" })).toEqual([
      'args.signals: "latency" is not a signal (a comma list of ttft, itl, errors)',
    ]);
    expect(validateBuiltin("paired-comparison", { signals: "" })).toEqual([
      'args.signals: "" is not a signal (a comma list of ttft, itl, errors)',
    ]);
    expect(validateBuiltin("paired-comparison", { signals: "itl,itl" })).toEqual([
      'args.signals names a signal twice: "itl,itl"',
    ]);
    expect(
      validateBuiltin("paired-comparison", {
        maxTtftRatio: "0",
        maxItlRatio: "fast",
        maxErrorRateDelta: "2",
        minRequests: "0.5",
        window: "0s",
      }),
    ).toEqual([
      'args.maxTtftRatio must be a positive number, got "0"',
      'args.maxItlRatio must be a positive number, got "fast"',
      'args.maxErrorRateDelta must be a number in (0, 1], got "2"',
      'args.minRequests must be a whole number >= 1, got "0.5"',
      'args.window must be a positive duration like 30s or 2m, got "0s"',
    ]);
    expect(() => paired({ maxRatio: "1.2" })).toThrow(BuiltinError);
  });

  it("vllm: TTFT per uncached prompt token, vLLM's inter-token latency, aborted requests", () => {
    const q = paired({ window: "1m", minRequests: "30" }).query;
    expect(signalsOf(q)).toEqual(["ttft", "itl", "errors"]);
    const side = (who: string) => ({
      requests: `${gained(`vllm:request_success_total{pool="{{${who}}}"}`, "1m")}`,
      cached:
        `((${gained(`vllm:prefix_cache_hits_total{pool="{{${who}}}"}`, "1m")}` +
        ` / (${gained(`vllm:prefix_cache_queries_total{pool="{{${who}}}"}`, "1m")} > 0)) or on() vector(0))`,
    });
    for (const who of ["canary", "stable"]) {
      const s = side(who);
      const mean = (h: string) =>
        `(${gained(`${h}_sum{pool="{{${who}}}"}`, "1m")} / ${gained(`${h}_count{pool="{{${who}}}"}`, "1m")})`;
      // Mean TTFT over mean uncached prompt tokens (at least one) per request.
      expect(q).toContain(
        `(${mean("vllm:time_to_first_token_seconds")}` +
          ` / clamp_min(${mean("vllm:request_prompt_tokens")} * (1 - ${s.cached}), 1))`,
      );
      expect(q).toContain(
        `(${gained(`vllm:inter_token_latency_seconds_sum{pool="{{${who}}}"}`, "1m")}` +
          ` / ${gained(`vllm:inter_token_latency_seconds_count{pool="{{${who}}}"}`, "1m")})`,
      );
      expect(q).toContain(
        `${gained(`vllm:request_success_total{pool="{{${who}}}",finished_reason="abort"}`, "1m")}`,
      );
      // Thin evidence on either side: the whole query is empty.
      expect(q).toContain(` and on() (${s.requests} >= 30)`);
    }
    expect(q).toMatch(/^max\(/);
    expect(q).toContain(") == 3) and on() (");
  });

  it("signals chooses what is compared; each score is observed / allowed", () => {
    const q = paired({
      signals: "errors",
      maxErrorRateDelta: "0.020",
      window: "2m",
      minRequests: "5",
    }).query;
    const rate = (who: string) =>
      `((${gained(`vllm:request_success_total{pool="{{${who}}}",finished_reason="abort"}`, "2m")} or on() vector(0))` +
      ` / ${gained(`vllm:request_success_total{pool="{{${who}}}"}`, "2m")})`;
    const all = `label_replace(((${rate("canary")} - ${rate("stable")}) / 0.02) >= -Inf, "signal", "errors", "", "")`;
    expect(q).toBe(
      `max(${all}) and on() (count(${all}) == 1)` +
        ` and on() (${gained(`vllm:request_success_total{pool="{{canary}}"}`, "2m")} >= 5)` +
        ` and on() (${gained(`vllm:request_success_total{pool="{{stable}}"}`, "2m")} >= 5)`,
    );
    expect(signalsOf(paired({ signals: "itl, ttft" }).query)).toEqual(["ttft", "itl"]);
    expect(paired({ signals: "ttft", maxTtftRatio: "1.5" }).query).toContain(") / 1.5) >= -Inf");
  });

  it("picker: prompt tokens from its input-token histogram, inter-token latency derived", () => {
    const q = paired({}, "picker").query;
    const mean = (h: string) =>
      `(${gained(`inference_objective_${h}_sum{pool="{{canary}}"}`, "5m")}` +
      ` / ${gained(`inference_objective_${h}_count{pool="{{canary}}"}`, "5m")})`;
    expect(q).toContain(`clamp_min(${mean("input_tokens")} * (1 - `);
    // Mean (duration - TTFT) over the mean gaps between tokens: output tokens minus one.
    expect(q).toContain(
      `((${mean("request_duration_seconds")} - ${mean("request_ttft_seconds")})` +
        ` / ((${mean("output_tokens")} - 1) > 0))`,
    );
    // The cached share comes from the model servers' vLLM counters, whichever source.
    expect(q).toContain(`vllm:prefix_cache_hits_total{pool="{{canary}}"}`);
    expect(q).toContain(`inference_objective_request_error_total{pool="{{stable}}"}`);
  });

  it("sources: upstream-epp v1 only (pre-v1 has no TTFT), llm-d refused, auto falls back to vLLM", () => {
    const epp = paired({}, "upstream-epp").query;
    expect(epp).not.toContain("inference_model_");
    // Without TTFT the pre-v1 names can still compare errors.
    expect(paired({ signals: "errors" }, "upstream-epp").query).toContain(
      "inference_model_request_error_total",
    );
    expect(() => paired({}, "llm-d")).toThrow(/metricsSource llm-d has no such metric/);
    const auto = paired({}, "auto").query;
    expect(auto).toContain(") or (");
    expect(auto).toContain("unless on() (count(inference_objective_request_total))");
    expect(auto).toContain("vllm:inter_token_latency_seconds_sum");
  });

  it("adapters: matched on target_model_name; vllm cannot tell adapters apart", () => {
    const q = paired({}, "picker", "adapters").query;
    expect(q).toContain(
      `inference_objective_request_ttft_seconds_sum{target_model_name="{{canary}}"}`,
    );
    expect(() => paired({}, "vllm", "adapters")).toThrow(/vllm cannot tell adapters apart/);
  });

  it("scope args reach every series, the cache counters included", () => {
    const q = paired({ namespaceLabel: "namespace", selector: '{cluster="eu"}' }, "vllm").query;
    const selectors = [...q.matchAll(/(vllm:[a-z_]+)\{(.*?")\}/g)];
    expect(selectors.length).toBeGreaterThan(20);
    for (const [, metric, matchers] of selectors) {
      expect(`${metric} ${matchers}`).toMatch(
        /^vllm:\S+ pool="\{\{(canary|stable)\}\}",namespace="\{\{namespace\}\}",cluster="eu"/,
      );
    }
  });

  it("renders to PromQL that lexes, with names escaped", () => {
    const ctx: TemplateContext = {
      scope: "pools",
      namespace: "ns",
      rollout: "r",
      canary: 'v2"} or vector(1) #',
      stable: "v1",
    };
    const resolved = resolveMetric(
      { name: "p", template: "paired-comparison", metricsSource: "vllm" },
      ctx,
    );
    expect(resolved.query).toContain('pool="v2\\"} or vector(1) #"');
    expect(lex(renderQuery(paired().query, variablesFor(ctx, {}))).length).toBeGreaterThan(100);
  });

  it("thin evidence (empty) and NaN are Inconclusive; the worst score decides at 1", () => {
    expect(phase(vector())).toBe("Inconclusive");
    expect(phase(vector(NaN))).toBe("Inconclusive");
    expect(phase(vector(0.8))).toBe("Successful");
    expect(phase(vector(1))).toBe("Successful");
    expect(phase(vector(1.01))).toBe("Failed");
    expect(phase(vector(Infinity))).toBe("Failed");
  });
});
