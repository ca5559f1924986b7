import {
  BUILTIN_TEMPLATES,
  BuiltinError,
  PICKER_METRICS,
  METRICS_SOURCES,
  describeBuiltins,
  expandBuiltin,
  metricsSourceProblem,
  validateBuiltin,
} from "./builtins";
import { parse } from "./expr/parser";
import { placeholdersOf, renderQuery, variablesFor } from "./promql";
import { lex } from "../../test/support/promql-lexer";
import { measurementFrom, resolveMetric } from ".";
import type { QueryResult, TemplateContext } from "./types";

const poolsCtx: TemplateContext = {
  scope: "pools",
  namespace: "ns",
  rollout: "r",
  canary: "v2",
  stable: "v1",
  weight: 10,
};

const vector = (...values: number[]): QueryResult => ({
  kind: "vector",
  series: values.map(value => ({ labels: {}, value })),
});

/** The matchers of every series selector in a rendered query: `metric{...}`. */
const selectorsOf = (query: string) =>
  [...query.matchAll(/inference_objective_[a-z_]+\{([^}]*)\}/g)].map(m => m[1]);

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
  it("lists the six LLM gates", () => {
    expect(BUILTIN_TEMPLATES).toEqual([
      "error-rate",
      "latency-p95-ratio",
      "ttft-p95-ratio",
      "min-request-count",
      "traffic-split",
      "paired-comparison",
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
      /has no arg "maxratio" \(args: maxRatio, minRequests, window, namespaceLabel, selector, poolLabel\)/,
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

  describe("scoping by namespace and extra label matchers", () => {
    it("no namespace matcher by default: the picker's series do not carry one", () => {
      for (const template of BUILTIN_TEMPLATES) {
        const e = expandBuiltin(template, {}, { scope: "pools", weight: 10, modelName: "m" });
        expect(e.query).not.toContain("namespace");
      }
    });

    it("namespaceLabel matches the rollout's namespace on that label", () => {
      const e = expandBuiltin(
        "error-rate",
        { namespaceLabel: "namespace", window: "5m" },
        { scope: "adapters" },
      );
      expect(e.query).toBe(
        `(sum(increase(${PICKER_METRICS.errors}{target_model_name="{{canary}}",namespace="{{namespace}}"}[5m])) or on() vector(0))` +
          ` / (sum(increase(${PICKER_METRICS.requests}{target_model_name="{{canary}}",namespace="{{namespace}}"}[5m])) >= 20)`,
      );
      expect(renderQuery(e.query, { canary: "c", namespace: "prod" })).toContain(
        `{target_model_name="c",namespace="prod"}`,
      );
      const other = expandBuiltin(
        "min-request-count",
        { namespaceLabel: "kubernetes_namespace" },
        { scope: "pools" },
      );
      expect(other.query).toBe(
        `sum(increase(${PICKER_METRICS.requests}{pool="{{canary}}",kubernetes_namespace="{{namespace}}"}[2m]))`,
      );
    });

    it.each(BUILTIN_TEMPLATES)(
      "%s puts namespace and selector matchers on every series",
      template => {
        for (const scope of ["pools", "adapters"] as const) {
          const e = expandBuiltin(
            template,
            { namespaceLabel: "namespace", selector: `{cluster="eu-1", job=~'picker.*'}` },
            { scope, weight: 10 },
          );
          const query = renderQuery(e.query, { canary: "c", stable: "s", namespace: "prod" });
          const found = selectorsOf(query);
          expect(found.length).toBeGreaterThanOrEqual(1);
          const label = scope === "pools" ? "pool" : "target_model_name";
          for (const sel of found) {
            expect(sel).toMatch(
              new RegExp(`^${label}="[cs]",namespace="prod",cluster="eu-1",job=~"picker\\.\\*"$`),
            );
          }
        }
      },
    );

    it("selector values may use the rollout's names, escaped like any other", () => {
      const e = expandBuiltin(
        "min-request-count",
        { selector: 'kubernetes_namespace="{{namespace}}",release=~"{{rollout}}-.*"' },
        { scope: "pools" },
      );
      expect(renderQuery(e.query, { canary: "c", namespace: 'a"b', rollout: "r" })).toBe(
        `sum(increase(${PICKER_METRICS.requests}{pool="c",kubernetes_namespace="a\\"b",release=~"r-.*"}[2m]))`,
      );
    });

    it.each([
      [{ namespaceLabel: "name space" }, /namespaceLabel: "name space" is not a label name/],
      [{ namespaceLabel: "" }, /namespaceLabel: "" is not a label name/],
      [{ namespaceLabel: "pool" }, /namespaceLabel cannot match pool/],
      [{ selector: 'pool="x"' }, /selector cannot match pool/],
      [{ selector: 'target_model_name=~".*"' }, /selector cannot match target_model_name/],
      [{ selector: 'le="+Inf"' }, /selector cannot match le/],
      [{ selector: '__name__=~".+"' }, /selector cannot match __name__/],
      [{ selector: 'namespace="a"} or vector(1) #' }, /args.selector: unexpected "}"/],
      [{ selector: "namespace=prod" }, /args.selector: expected a quoted value/],
      [{ selector: 'a="{{weight}}"' }, /\{\{weight\}\} cannot be used here/],
      [{ selector: 'a="{{args.x}}"' }, /\{\{args.x\}\} cannot be used here/],
      [{ selector: 'a="{{a b}}"' }, /args.selector: malformed placeholder/],
    ])("%j is rejected", (args, message) => {
      expect(validateBuiltin("error-rate", args).join("\n")).toMatch(message);
      expect(() => expandBuiltin("error-rate", args, { scope: "pools" })).toThrow(BuiltinError);
    });
  });

  describe("traffic-split in a pool serving several models", () => {
    const requests = (who: string, extra = "") =>
      `(sum(increase(${PICKER_METRICS.requests}{pool="{{${who}}}"${extra}}[1m])) or on() vector(0))`;

    it("counts only the rollout's model when its name is known (pools)", () => {
      const e = expandBuiltin(
        "traffic-split",
        {},
        { scope: "pools", weight: 10, modelName: "mymodel" },
      );
      const canary = requests("canary", `,model_name="{{modelName}}"`);
      const stable = requests("stable", `,model_name="{{modelName}}"`);
      expect(e.query).toBe(`100 * ${canary} / ((${canary} + ${stable}) >= 200)`);
      expect(renderQuery(e.query, { canary: "v2", stable: "v1", modelName: "mymodel" })).toContain(
        `{pool="v2",model_name="mymodel"}`,
      );
    });

    it("counts every model when no model name is known (the old behaviour)", () => {
      const e = expandBuiltin("traffic-split", {}, { scope: "pools", weight: 10 });
      expect(e.query).toBe(
        `100 * ${requests("canary")} / ((${requests("canary")} + ${requests("stable")}) >= 200)`,
      );
    });

    it("leaves the adapters scenario alone: target_model_name already singles out the adapters", () => {
      const e = expandBuiltin(
        "traffic-split",
        {},
        { scope: "adapters", weight: 10, modelName: "m" },
      );
      expect(e.query).not.toMatch(/[{,]model_name=/);
    });

    it("only traffic-split restricts by model; the other gates measure the whole pool", () => {
      for (const template of BUILTIN_TEMPLATES.filter(t => t !== "traffic-split")) {
        const e = expandBuiltin(template, {}, { scope: "pools", weight: 10, modelName: "m" });
        expect(e.query).not.toContain("model_name");
      }
    });

    it('args.modelName names the model (both scenarios); "*" counts every model', () => {
      for (const scope of ["pools", "adapters"] as const) {
        const e = expandBuiltin("traffic-split", { modelName: "other" }, { scope, weight: 10 });
        const query = renderQuery(e.query, {
          canary: "c",
          stable: "s",
          args: { modelName: 'ot"her' },
        });
        expect(selectorsOf(query)).toEqual(
          Array(3).fill(expect.stringContaining(`,model_name="ot\\"her"`)),
        );
      }
      const all = expandBuiltin(
        "traffic-split",
        { modelName: "*" },
        { scope: "pools", weight: 10, modelName: "m" },
      );
      expect(all.query).not.toContain("model_name");
    });

    it("a model_name matcher in the selector replaces the default", () => {
      const e = expandBuiltin(
        "traffic-split",
        { selector: 'model_name=~"m|m-chat"' },
        { scope: "pools", weight: 10, modelName: "m" },
      );
      expect(e.query).toContain(`{pool="{{canary}}",model_name=~"m|m-chat"}`);
      expect(e.query).not.toContain("{{modelName}}");
    });

    it("rejects an empty model name and modelName on the other gates", () => {
      expect(validateBuiltin("traffic-split", { modelName: "" }).join()).toMatch(
        /modelName must not be empty \(use "\*" to count every model\)/,
      );
      expect(validateBuiltin("error-rate", { modelName: "m" }).join()).toMatch(
        /has no arg "modelName"/,
      );
    });

    it("resolveMetric passes the rollout's model name from the template context", () => {
      const ctx: TemplateContext = {
        scope: "pools",
        namespace: "ns",
        rollout: "r",
        canary: "v2",
        stable: "v1",
        modelName: "mymodel",
        weight: 10,
      };
      const resolved = resolveMetric({ name: "split", template: "traffic-split" }, ctx);
      expect(resolved.query).toContain(`{pool="v2",model_name="mymodel"}`);
      expect(resolved.query).toContain(`{pool="v1",model_name="mymodel"}`);
      const unknown = resolveMetric(
        { name: "split", template: "traffic-split" },
        { ...ctx, modelName: undefined },
      );
      expect(unknown.query).not.toContain("model_name");
    });
  });

  describe("names and arg values cannot change a built-in's query", () => {
    const evil = [
      '"} or vector(1) #',
      "'} or vector(1) #",
      '\\"} or vector(1) #',
      "{{stable}}",
      "a\nb",
    ];
    const ctx = (name: string): TemplateContext => ({
      scope: "pools",
      namespace: name,
      rollout: name,
      canary: name,
      stable: name,
      modelName: name,
      weight: 10,
    });
    const args = (name: string) => ({
      namespaceLabel: "namespace",
      selector: `{team=${JSON.stringify(name)}, release="{{rollout}}"}`,
    });

    it.each(evil)("%j", name => {
      for (const template of BUILTIN_TEMPLATES) {
        const metric = (value: string) => ({
          name: "m",
          template,
          args: { ...args(value), ...(template === "traffic-split" ? { modelName: value } : {}) },
        });
        const benign = lex(resolveMetric(metric("SAFE"), ctx("SAFE")).query);
        const attacked = lex(resolveMetric(metric(name), ctx(name)).query);
        expect(attacked.map(t => t.kind)).toEqual(benign.map(t => t.kind));
        attacked.forEach((token, i) => {
          if (token.kind === "string") {
            expect(token.decoded).toBe(benign[i].decoded!.split("SAFE").join(name));
          } else {
            expect(token.text).toBe(benign[i].text);
          }
        });
      }
      // The context model name goes through the same escaping.
      const split = resolveMetric({ name: "s", template: "traffic-split" }, ctx(name)).query;
      expect(lex(split).map(t => t.kind)).toEqual(
        lex(resolveMetric({ name: "s", template: "traffic-split" }, ctx("SAFE")).query).map(
          t => t.kind,
        ),
      );
      expect(variablesFor(ctx(name), {}).modelName).toBe(name);
    });
  });
});

describe("metricsSource: whose metrics a built-in gate reads", () => {
  const names = (query: string) => [
    ...new Set(
      [...query.matchAll(/\b(inference_objective|inference_model|llm_d_epp|vllm:)[a-z_]*/g)].map(
        m => m[1],
      ),
    ),
  ];

  it("an explicit source reads only its own metric names", () => {
    const q = (metricsSource: (typeof METRICS_SOURCES)[number]) =>
      expandBuiltin("error-rate", {}, { scope: "pools", metricsSource }).query;
    expect(names(q("picker"))).toEqual(["inference_objective"]);
    expect(names(q("llm-d"))).toEqual(["llm_d_epp"]);
    expect(names(q("vllm"))).toEqual(["vllm:"]);
    // vLLM has no error counter: aborted requests are the errors.
    expect(q("vllm")).toContain(
      `vllm:request_success_total{pool="{{canary}}",finished_reason="abort"}`,
    );
    // GIE v1.x names first, pre-v1 names only while no v1 series exist.
    const epp = q("upstream-epp");
    expect(names(epp)).toEqual(["inference_objective", "inference_model"]);
    expect(epp).toContain("unless on() (count(inference_objective_request_total))");
  });

  it("auto tries upstream-epp (= the picker's names), llm-d, then vllm, each only while the earlier have no series", () => {
    const auto = expandBuiltin("latency-p95-ratio", {}, { scope: "pools", metricsSource: "auto" });
    expect(names(auto.query)).toEqual([
      "inference_objective",
      "inference_model",
      "llm_d_epp",
      "vllm:",
    ]);
    expect(auto.query).toContain(
      "unless on() (count(inference_objective_request_total) or count(inference_model_request_total) or count(llm_d_epp_request_total))",
    );
    expect(lex(renderQuery(auto.query, variablesFor(poolsCtx, {}))).length).toBeGreaterThan(0);
    // The same conditions whatever the source: one finite sample.
    expect(auto.successCondition).toBe("len(result) == 1 and result[0] <= 1.2");
  });

  it("auto in the adapters scope leaves vLLM out (it cannot tell adapters apart)", () => {
    const auto = expandBuiltin("error-rate", {}, { scope: "adapters", metricsSource: "auto" });
    expect(names(auto.query)).toEqual(["inference_objective", "inference_model", "llm_d_epp"]);
    expect(auto.query).toContain(`target_model_name="{{canary}}"`);
    expect(() =>
      expandBuiltin("error-rate", {}, { scope: "adapters", metricsSource: "vllm" }),
    ).toThrow(/vllm cannot tell adapters apart/);
  });

  it("a source without the metric is skipped (pre-v1 pickers have no TTFT histogram)", () => {
    const epp = expandBuiltin(
      "ttft-p95-ratio",
      {},
      { scope: "pools", metricsSource: "upstream-epp" },
    );
    expect(names(epp.query)).toEqual(["inference_objective"]);
  });

  it("poolLabel names the scrape's target label for the pool (the upstream pickers have none)", () => {
    const e = expandBuiltin(
      "min-request-count",
      { poolLabel: "inference_pool" },
      { scope: "pools", metricsSource: "upstream-epp" },
    );
    expect(e.query).toContain(`inference_objective_request_total{inference_pool="{{canary}}"}`);
    expect(e.query).not.toContain(`pool="`.replace(/^/, "{"));
  });

  it("resolveMetric passes the metric's metricsSource; absent means the picker's names", () => {
    const llmd = resolveMetric(
      { name: "errors", template: "error-rate", metricsSource: "llm-d" },
      poolsCtx,
    );
    expect(llmd.query).toContain(`llm_d_epp_request_error_total{pool="v2"}`);
    const none = resolveMetric({ name: "errors", template: "error-rate" }, poolsCtx);
    expect(names(none.query)).toEqual(["inference_objective"]);
  });

  it("metricsSourceProblem names what is wrong and the fix", () => {
    expect(metricsSourceProblem(undefined, { template: true })).toBeUndefined();
    for (const source of METRICS_SOURCES)
      expect(metricsSourceProblem(source, { template: true, scope: "pools" })).toBeUndefined();
    expect(metricsSourceProblem("prometheus", { template: true })).toBe(
      'metricsSource must be one of auto, picker, upstream-epp, llm-d, vllm, got "prometheus"',
    );
    // The CRD's default on a query metric is fine; anything else is a mistake.
    expect(metricsSourceProblem("auto", { template: false })).toBeUndefined();
    expect(metricsSourceProblem("llm-d", { template: false })).toMatch(
      /applies to built-in gates \(template\) only.*remove metricsSource/,
    );
    expect(metricsSourceProblem("vllm", { template: true, scope: "adapters" })).toMatch(
      /vllm cannot tell LoRA adapters apart.*use auto, picker, upstream-epp or llm-d/,
    );
  });
});
