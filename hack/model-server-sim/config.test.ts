import {
  applyAdminUpdate,
  configToFlags,
  formatDuration,
  parseArgs,
  parseDurationMs,
} from "./config";
import { generate, seededRandom, tokenize } from "./text";

describe("parseArgs", () => {
  it("reads upstream flag names, lists and bare-millisecond latencies", () => {
    const c = parseArgs([
      "--port",
      "8000",
      "--model",
      "Qwen/Qwen2.5-1.5B",
      "--served-model-name",
      "mymodel",
      "alias",
      "--lora-modules",
      '{"name":"travel-helper-v1","path":"/x"}',
      '{"name":"travel-helper-v2","path":"/y"}',
      "--max-loras=2",
      "--max-num-seqs",
      "5",
      "--time-to-first-token",
      "20",
      "--inter-token-latency",
      "5ms",
      "--failure-injection-rate",
      "10",
      "--failure-types",
      "rate_limit",
      "server_error",
      "--host",
      "127.0.0.7",
      "--enable-kvcache",
      "--max-cpu-loras",
      "4",
    ]);
    expect(c).toMatchObject({
      port: 8000,
      host: "127.0.0.7",
      model: "Qwen/Qwen2.5-1.5B",
      servedModelName: ["mymodel", "alias"],
      loraModules: [
        { name: "travel-helper-v1", path: "/x" },
        { name: "travel-helper-v2", path: "/y" },
      ],
      maxLoras: 2,
      maxNumSeqs: 5,
      timeToFirstToken: 20,
      interTokenLatency: 5,
      failureInjectionRate: 10,
      failureTypes: ["rate_limit", "server_error"],
      enableKvcache: true,
    });
  });

  it("applies upstream defaults; served name defaults to the model; SIM_MODEL fills --model", () => {
    const c = parseArgs([], { SIM_MODEL: "m" });
    expect(c).toMatchObject({
      model: "m",
      servedModelName: ["m"],
      port: 8000,
      host: "0.0.0.0",
      maxLoras: 1,
      maxNumSeqs: 5,
      maxWaitingQueueLength: 1000,
      maxModelLen: 1024,
      mode: "random",
      kvCacheSize: 1024,
      blockSize: 16,
    });
  });

  it("rejects what upstream rejects", () => {
    expect(() => parseArgs([])).toThrow("model parameter is empty");
    expect(() => parseArgs(["--model", "m", "--nope", "1"])).toThrow("unknown flag: --nope");
    expect(() => parseArgs(["--model", "m", "--failure-types", "boom"])).toThrow(
      "invalid failure type 'boom'",
    );
    expect(() => parseArgs(["--model", "m", "--failure-injection-rate", "101"])).toThrow();
    expect(() =>
      parseArgs([
        "--model",
        "m",
        "--time-to-first-token",
        "10",
        "--time-to-first-token-std-dev",
        "4",
      ]),
    ).toThrow("30%");
    expect(() => parseArgs(["--model", "m", "--block-size", "10"])).toThrow("block size");
    expect(() => parseArgs(["--model", "m", "--mode", "loud"])).toThrow("invalid mode");
  });
});

describe("durations", () => {
  it("parses Go durations and bare milliseconds, and formats them back", () => {
    expect(parseDurationMs("250ms")).toBe(250);
    expect(parseDurationMs("1.5s")).toBe(1500);
    expect(parseDurationMs("1m30s")).toBe(90_000);
    expect(parseDurationMs("500us")).toBeCloseTo(0.5);
    expect(parseDurationMs("20")).toBe(20);
    expect(() => parseDurationMs("20 parsecs")).toThrow("invalid duration");
    expect(() => parseDurationMs("")).toThrow("invalid duration");
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(20)).toBe("20ms");
    expect(formatDuration(1500)).toBe("1.5s");
    expect(formatDuration(90_000)).toBe("1m30s");
  });
});

describe("applyAdminUpdate", () => {
  const base = parseArgs(["--model", "m"]);

  it("updates latency (string or integer ns) and failure fields; GET shape uses flag names", () => {
    const next = applyAdminUpdate(base, {
      "time-to-first-token": "500ms",
      "inter-token-latency": 20_000_000,
      "failure-injection-rate": 100,
      "failure-types": ["rate_limit"],
    });
    expect(next).toMatchObject({
      timeToFirstToken: 500,
      interTokenLatency: 20,
      failureInjectionRate: 100,
      failureTypes: ["rate_limit"],
    });
    expect(base.timeToFirstToken).toBe(0); // not mutated
    expect(configToFlags(next)).toMatchObject({
      "time-to-first-token": "500ms",
      "inter-token-latency": "20ms",
      "failure-injection-rate": 100,
    });
  });

  it("rejects other fields and invalid values, leaving nothing half-applied", () => {
    expect(() => applyAdminUpdate(base, { model: "x" })).toThrow("cannot be updated");
    expect(() => applyAdminUpdate(base, { "failure-injection-rate": 150 })).toThrow();
    expect(() => applyAdminUpdate(base, { "time-factor-under-load": 0.5 })).toThrow();
    expect(() => applyAdminUpdate(base, [])).toThrow("JSON object");
  });
});

describe("generate", () => {
  const random = seededRandom(1);

  it("echoes, truncating at max_tokens with finish_reason length", () => {
    expect(generate("echo", "a b c", undefined, false, random)).toEqual({
      tokens: ["a", " b", " c"],
      finishReason: "stop",
    });
    expect(generate("echo", "a b c", 2, false, random)).toEqual({
      tokens: ["a", " b"],
      finishReason: "length",
    });
  });

  it("with ignore_eos returns exactly max_tokens random tokens", () => {
    const g = generate("random", "", 57, true, random);
    expect(g.tokens).toHaveLength(57);
    expect(g.finishReason).toBe("length");
    expect(tokenize(g.tokens.join(""))).toHaveLength(57);
  });
});
