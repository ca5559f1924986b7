import { describe, expect, it } from "@jest/globals";
import fc from "fast-check";
import { canonicalJson, fingerprint, jsonEqual } from "./fingerprint";

describe("fingerprint", () => {
  it("ignores key order and undefined members, but not values or array order", () => {
    expect(canonicalJson({ b: 1, a: [1, { d: 2, c: undefined }] })).toBe('{"a":[1,{"d":2}],"b":1}');
    expect(fingerprint({ a: 1, b: 2 })).toBe(fingerprint({ b: 2, a: 1 }));
    expect(fingerprint({ a: 1 })).not.toBe(fingerprint({ a: 2 }));
    expect(fingerprint([1, 2])).not.toBe(fingerprint([2, 1]));
    expect(fingerprint({ setWeight: 10 })).toMatch(/^[0-9a-f]{8}$/);
    expect(jsonEqual({ a: 1, b: undefined }, { a: 1 })).toBe(true);
  });

  // status.stepHash and status.analysisHash are stored: a different fingerprint for the same spec
  // after an upgrade would restart the running step or gate. These values were computed by the
  // hand-written canonical JSON that safe-stable-stringify replaced.
  const gate = {
    name: "observed-split",
    query:
      'abs(100 * sum(increase(inference_objective_request_total{namespace="{{namespace}}",model_name="mymodel",pool="{{canary}}"}[20s])) - {{weight}})',
    successCondition: "result[0] <= 6",
    failureCondition: "result[0] > 6",
    interval: "3s",
    count: 2,
    inconclusiveLimit: 1,
  };
  it.each<[string, unknown, string]>([
    ["setWeight", { setWeight: 10 }, "72179178"],
    ["pause with duration", { pause: { duration: "20s" } }, "4ac351f2"],
    ["pause without duration", { pause: {} }, "2c537c09"],
    [
      "step gate",
      {
        analysis: {
          metrics: [
            {
              inconclusiveLimit: 1,
              count: 2,
              interval: "3s",
              name: "canary-traffic",
              template: "min-request-count",
              args: { window: "20s", minRequests: "20" },
            },
            gate,
          ],
        },
      },
      "6374f3ff",
    ],
    [
      "background analysis",
      {
        metrics: [
          {
            name: "canary-error-rate",
            template: "error-rate",
            args: { maxRatio: "0.05", minRequests: "20", window: "20s" },
            interval: "5s",
            initialDelay: "10s",
            inconclusiveLimit: 6,
          },
        ],
      },
      "82d87b13",
    ],
    ["no analysis", undefined, "77074ba4"],
    [
      "non-ASCII and escapes",
      {
        query: 'up{job="caf\u00e9 \u2713"} \\ "x"\n',
        n: -0.5,
        ok: true,
        none: null,
        skip: undefined,
      },
      "1619dca7",
    ],
    [
      "canary pool name",
      "mymodel-pool-v2-canary-for-a-very-long-rollout-name-that-is-cut",
      "67b764b5",
    ],
  ])("keeps the stored fingerprint of %s", (_, value, expected) => {
    expect(fingerprint(value)).toBe(expected);
  });

  it("gives the same text as the hand-written canonical JSON it replaced, for any JSON value", () => {
    // The replaced implementation, kept here as the oracle.
    const handWritten = (value: unknown): string => {
      if (value === undefined) return "null";
      if (value === null || typeof value !== "object") return JSON.stringify(value);
      if (Array.isArray(value)) return `[${value.map(handWritten).join(",")}]`;
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${handWritten(v)}`).join(",")}}`;
    };
    const { value } = fc.letrec<{ value: unknown }>(tie => ({
      value: fc.oneof(
        { depthSize: "small" },
        fc.constant(undefined),
        fc.constant(null),
        fc.boolean(),
        fc.integer(),
        fc.double(),
        fc.string({ unit: "binary" }),
        fc.array(tie("value")),
        fc.dictionary(fc.string({ unit: "binary" }), tie("value")),
      ),
    }));
    fc.assert(
      fc.property(value, v => {
        expect(canonicalJson(v)).toBe(handWritten(v));
      }),
      { numRuns: 2000 },
    );
  });
});
