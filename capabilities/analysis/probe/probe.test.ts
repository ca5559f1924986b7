// The probe gate's pure parts: rendering requests per side, judging answers, the measurement with
// the stable as control, validation of the spec, and the address policy before anything is sent.
import { describe, expect, it } from "@jest/globals";
import { parseAddressPolicy } from "../address-policy";
import { validateAnalysis } from "../validate";
import { checkProbes, judgeProbeChecks } from "../probe-check";
import type { TemplateContext } from "../types";
import { failedCheck, probeMeasurement } from "./judge";
import { ProbeTemplateError, resolveProbe } from "./render";
import { runProbe } from "./client";
import { ProbeRefusedError } from "./errors";
import { probeProblems } from "./validate";
import type { ProbeAnswer, ProbeSpec } from "./types";

const NOW = new Date("2025-01-01T00:00:10.000Z");
const ADAPTERS: TemplateContext = {
  scope: "adapters",
  namespace: "ns",
  rollout: "r",
  canary: "travel-v2",
  stable: "travel-v1",
  pool: "lora-pool",
};
const POOLS: TemplateContext = {
  scope: "pools",
  namespace: "ns",
  rollout: "r",
  canary: "pool-v2",
  stable: "pool-v1",
  modelName: "mymodel",
};
const PROBE: ProbeSpec = { url: "http://gw.{{namespace}}/v1/chat/completions", prompts: ["hi"] };

const ok = (model: string, content = "Paris is the capital", extra: Partial<ProbeAnswer> = {}) => ({
  prompt: 0,
  status: 200,
  model,
  content,
  latencyMs: 20,
  ...extra,
});

describe("resolveProbe", () => {
  it("pins each side: adapters by the model sent, pools by {{pool}}", () => {
    const adapters = resolveProbe({ ...PROBE, requests: 3, prompts: ["a", "b"] }, ADAPTERS);
    expect(adapters.sides.map(s => [s.side, s.model, s.url])).toEqual([
      ["canary", "travel-v2", "http://gw.ns/v1/chat/completions"],
      ["stable", "travel-v1", "http://gw.ns/v1/chat/completions"],
    ]);
    expect(adapters.sides[0].bodies.map(b => JSON.parse(b).messages[0].content)).toEqual([
      "a",
      "b",
      "a",
    ]);
    const pools = resolveProbe(
      {
        ...PROBE,
        url: "http://{{pool}}-epp.{{namespace}}:8081/v1/completions",
        api: "completions",
        compareStable: false,
        headers: { "x-side": "{{side}}" },
      },
      POOLS,
    );
    expect(pools.sides).toHaveLength(1);
    expect(pools.sides[0]).toMatchObject({
      url: "http://pool-v2-epp.ns:8081/v1/completions",
      model: "mymodel",
      headers: { "x-side": "canary" },
    });
    expect(JSON.parse(pools.sides[0].bodies[0])).toEqual({
      model: "mymodel",
      max_tokens: 32,
      prompt: "hi",
    });
  });

  it("escapes names in the URL and never lets one split a header", () => {
    const ctx = { ...ADAPTERS, canary: "a/b?c#d" };
    expect(resolveProbe({ ...PROBE, url: "http://gw/{{model}}" }, ctx).sides[0].url).toBe(
      "http://gw/a%2Fb%3Fc%23d",
    );
    expect(() =>
      resolveProbe(
        { ...PROBE, headers: { x: "{{canary}}" } },
        { ...ADAPTERS, canary: "a\r\nHost: evil" },
      ),
    ).toThrow(ProbeTemplateError);
  });

  it("needs the model name in spec.pools when the operator does not know it", () => {
    expect(() => resolveProbe(PROBE, { ...POOLS, modelName: undefined })).toThrow(
      /set probe.model/,
    );
    expect(
      resolveProbe({ ...PROBE, model: "m-{{side}}" }, { ...POOLS, modelName: undefined }).sides[1]
        .model,
    ).toBe("m-stable");
  });
});

describe("failedCheck", () => {
  it("names the first check an answer fails", () => {
    expect(failedCheck(ok("m"), {}, "m")).toBeUndefined();
    expect(
      failedCheck({ prompt: 0, content: "", latencyMs: 5, error: "ECONNREFUSED" }, {}, "m"),
    ).toBe("no answer: ECONNREFUSED");
    expect(failedCheck(ok("m", "", { status: 404 }), {}, "m")).toBe("status 404 (expected 200)");
    expect(failedCheck(ok("other"), {}, "m")).toBe('model "other" (expected "m")');
    expect(failedCheck(ok("other"), {}, undefined)).toBeUndefined();
    expect(failedCheck(ok("m"), { contains: ["Paris", "France"] }, "m")).toBe(
      'content lacks "France"',
    );
    expect(failedCheck(ok("m"), { notContains: ["capital"] }, "m")).toBe(
      'content contains "capital"',
    );
    expect(failedCheck(ok("m"), { regex: "^Paris\\b" }, "m")).toBeUndefined();
    expect(failedCheck(ok("m"), { regex: "^Rome" }, "m")).toBe(
      'content does not match regex "^Rome"',
    );
    expect(failedCheck(ok("m", "x", { latencyMs: 1500 }), { maxLatency: "1s" }, "m")).toBe(
      "latency 1500 ms (maxLatency 1s)",
    );
    expect(failedCheck(ok("m", "x", { ttftMs: 300 }), { maxTTFT: "200ms" }, "m")).toBe(
      "TTFT 300 ms (maxTTFT 200ms)",
    );
    expect(failedCheck(ok("m", "x"), { maxTTFT: "200ms" }, "m")).toBe(
      "no streamed content (maxTTFT)",
    );
  });

  it("checks JSON content against a JSON Schema", () => {
    const schema = JSON.stringify({
      type: "object",
      required: ["city"],
      properties: { city: { type: "string" } },
    });
    expect(failedCheck(ok("m", '{"city":"Paris"}'), { jsonSchema: schema }, "m")).toBeUndefined();
    expect(failedCheck(ok("m", '{"city":1}'), { jsonSchema: schema }, "m")).toBe(
      "content fails jsonSchema: /city must be string",
    );
    expect(failedCheck(ok("m", "Paris"), { jsonSchema: schema }, "m")).toBe(
      "content is not JSON (jsonSchema)",
    );
  });

  it("runs a catastrophic pattern in linear time on the bounded content", () => {
    const started = performance.now();
    expect(failedCheck(ok("m", "a".repeat(4000) + "b"), { regex: "^(a+)+$" }, "m")).toMatch(
      /does not match/,
    );
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("probeMeasurement", () => {
  const metric = (expect: ProbeSpec["expect"] = {}, extra = {}) => ({
    probe: { ...PROBE, expect },
    ...extra,
  });
  const answers = (n: number, a: ProbeAnswer) => Array.from({ length: n }, () => a);

  it("is Successful when every canary answer passes", () => {
    const m = probeMeasurement(
      metric(),
      { canary: answers(3, ok("travel-v2")), stable: answers(3, ok("travel-v1")) },
      ADAPTERS,
      NOW,
    );
    expect(m).toMatchObject({ phase: "Successful", value: "1 (canary 3/3, stable 3/3 passed)" });
  });

  it("fails a canary the stable outperforms, recording what it saw (bounded)", () => {
    const long = "x".repeat(5000);
    const m = probeMeasurement(
      metric({ contains: ["Paris"] }),
      { canary: [ok("travel-v2"), ok("travel-v2", long)], stable: answers(2, ok("travel-v1")) },
      ADAPTERS,
      NOW,
    );
    expect(m.phase).toBe("Failed");
    expect(m.value).toBe("0.5 (canary 1/2, stable 2/2 passed)");
    expect(m.message).toMatch(
      /canary answer 2\/2 \(prompt 1\) failed content lacks "Paris" \[HTTP 200, model "travel-v2", 20 ms\]/,
    );
    expect(m.message!.length).toBeLessThanOrEqual(1024);
    expect(m.message).not.toContain("x".repeat(201));
  });

  it("is Inconclusive when the stable fails the same checks: the environment is at fault", () => {
    const m = probeMeasurement(
      metric({ contains: ["Rome"] }),
      { canary: answers(2, ok("travel-v2")), stable: answers(2, ok("travel-v1")) },
      ADAPTERS,
      NOW,
    );
    expect(m.phase).toBe("Inconclusive");
    expect(m.message).toMatch(/stable fails the same checks \(canary 0\/2, stable 0\/2 passed\)/);
  });

  it("without compareStable a failing canary fails; no answers are never a success", () => {
    expect(
      probeMeasurement(metric({ contains: ["Rome"] }), { canary: [ok("travel-v2")] }, ADAPTERS, NOW)
        .phase,
    ).toBe("Failed");
    expect(probeMeasurement(metric(), { canary: [] }, ADAPTERS, NOW).phase).toBe("Inconclusive");
  });

  it("uses the metric's own conditions on the pass ratio", () => {
    const half = { canary: [ok("travel-v2"), ok("wrong")], stable: answers(2, ok("travel-v1")) };
    expect(
      probeMeasurement(metric({}, { successCondition: "result >= 0.5" }), half, ADAPTERS, NOW)
        .phase,
    ).toBe("Successful");
  });
});

describe("probe validation", () => {
  it("accepts a probe metric without Prometheus", () => {
    expect(validateAnalysis({ metrics: [{ name: "answers", probe: PROBE }] })).toEqual([]);
    expect(validateAnalysis({ metrics: [{ name: "answers", probe: PROBE, query: "up" }] })).toEqual(
      ["metrics[0] (answers): set exactly one of query, template and probe"],
    );
  });

  it("names the field of every problem the CRD cannot check", () => {
    const problems = probeProblems({
      url: "http://{{host}}/v1",
      prompts: ["p"],
      headers: { "bad name": "x" },
      expect: { regex: "(a)\\1", jsonSchema: '{"type": 3}', maxTTFT: "1s" },
    });
    expect(problems).toEqual([
      expect.stringMatching(/^probe.url: unknown placeholder \{\{host\}\}/),
      'probe.headers: "bad name" is not a header name',
      expect.stringMatching(/^probe.expect.regex "\(a\)\\\\1" cannot be used/),
      expect.stringMatching(/^probe.expect.jsonSchema is not a valid JSON Schema/),
      expect.stringMatching(/^probe.expect.maxTTFT needs probe.stream: true/),
    ]);
    expect(probeProblems({ url: "http://x", prompts: [], requests: 51, rate: 0 })).toEqual([
      "probe.prompts needs 1 to 8 prompts",
      "probe.requests must be a whole number from 1 to 50",
      "probe.rate must be a whole number of requests per second from 1 to 20",
    ]);
  });
});

describe("runProbe address policy", () => {
  it("refuses a metadata or link-local URL before sending anything", async () => {
    const policy = parseAddressPolicy({});
    for (const url of ["http://169.254.169.254/latest", "http://[fe80::1]/v1"]) {
      const probe = resolveProbe({ ...PROBE, url }, ADAPTERS);
      await expect(runProbe(probe, { addressPolicy: policy })).rejects.toThrow(ProbeRefusedError);
      await expect(runProbe(probe, { addressPolicy: policy })).rejects.toThrow(
        /refused by default/,
      );
    }
  });
});

describe("checkProbes (before the first weight)", () => {
  it("sends each deciding probe once, naming where it is; judges them into failed / pending / invalid", async () => {
    const gates = [
      {
        where: "analysis",
        spec: {
          metrics: [
            { name: "q", query: "up" },
            { name: "dry", probe: PROBE, dryRun: true },
            { name: "answers", probe: { ...PROBE, expect: { contains: ["Paris"] } } },
          ],
        },
      },
      { where: "steps[1].analysis", spec: { metrics: [{ name: "far", probe: PROBE }] } },
    ];
    const sent: string[] = [];
    const checks = await checkProbes(
      gates,
      ADAPTERS,
      async probe => {
        sent.push(probe.sides[0].url);
        if (probe.sides[0].url.includes("169.254")) throw new ProbeRefusedError("refused");
        return { canary: [ok("travel-v2", "Rome")], stable: [ok("travel-v1", "Paris")] };
      },
      NOW,
    );
    expect(checks.map(c => c.where)).toEqual([
      "analysis.metrics[2] (answers)",
      "steps[1].analysis.metrics[0] (far)",
    ]);
    expect(sent).toHaveLength(2);
    const verdicts = judgeProbeChecks(checks, ADAPTERS);
    expect(verdicts.failed).toEqual([
      expect.stringMatching(
        /^analysis.metrics\[2\] \(answers\) Failed, 0 \(canary 0\/1, stable 1\/1 passed\)/,
      ),
    ]);
    expect(verdicts.pending).toEqual([]);
    const refused = await checkProbes(
      [
        {
          where: "analysis",
          spec: { metrics: [{ name: "x", probe: { ...PROBE, url: "http://169.254.169.254/" } }] },
        },
      ],
      ADAPTERS,
      async () => {
        throw new ProbeRefusedError("refused by policy");
      },
      NOW,
    );
    expect(judgeProbeChecks(refused, ADAPTERS).invalid).toEqual([
      "analysis.metrics[0] (x): refused by policy",
    ]);
  });
});
