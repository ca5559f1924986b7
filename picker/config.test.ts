import { ConfigError, parseConfig, parseWeights } from "./config";

describe("parseConfig", () => {
  it("applies the documented defaults", () => {
    const c = parseConfig(["--pool", "p"], {});
    expect(c).toMatchObject({
      pool: "p",
      namespace: "default",
      poolGroup: "auto",
      grpcPort: 9002,
      healthPort: 9003,
      metricsPort: 9090,
      proxyPort: 8080,
      bodyMode: "full-duplex",
      strict: false,
      sessionHeader: "",
      fallbacks: 0,
      weights: { queue: 2, kvCache: 2, prefix: 3, lora: 3 },
      saturation: { staleAfterMs: 200, queueThreshold: 5, kvCacheThreshold: 0.8 },
      scrape: { intervalMs: 50 },
      flowControl: {
        enabled: true,
        maxRunning: 0,
        maxWaitMs: 10000,
        maxQueue: 1024,
        localityWaitMs: 200,
      },
    });
  });

  it("reads the flow-control flags", () => {
    const c = parseConfig(
      [
        "--pool",
        "p",
        "--flow-control",
        "off",
        "--max-running",
        "8",
        "--flow-max-wait-ms",
        "500",
        "--flow-locality-wait-ms",
        "0",
      ],
      {},
    );
    expect(c !== "help" && c.flowControl).toEqual({
      enabled: false,
      maxRunning: 8,
      maxWaitMs: 500,
      maxQueue: 1024,
      localityWaitMs: 0,
    });
    expect(() => parseConfig(["--pool", "p", "--flow-control", "maybe"], {})).toThrow(ConfigError);
    expect(() => parseConfig(["--pool", "p", "--max-running", "-1"], {})).toThrow(ConfigError);
  });

  it("reads flags and the environment", () => {
    const c = parseConfig(
      [
        "--namespace",
        "ns",
        "--strict",
        "--session-header",
        "X-Session-Id",
        "--disable-proxy",
        "--body-mode",
        "buffered",
        "--weights",
        "queue=1,prefix=0",
        "--fallbacks",
        "2",
      ],
      { PICKER_POOL: "from-env" },
    );
    expect(c).toMatchObject({
      pool: "from-env",
      namespace: "ns",
      strict: true,
      sessionHeader: "x-session-id",
      proxyPort: undefined,
      bodyMode: "buffered",
      weights: { queue: 1, kvCache: 2, prefix: 0, lora: 3 },
      fallbacks: 2,
    });
    expect(parseConfig(["--help"], {})).toBe("help");
  });

  it.each([
    [[], "--pool is required"],
    [["--pool", "p", "--grpc-port", "70000"], "--grpc-port"],
    [["--pool", "p", "--body-mode", "streamed"], "--body-mode"],
    [["--pool", "p", "--kv-threshold", "2"], "--kv-threshold"],
    [["--pool", "p", "--pool-group", "x"], "--pool-group"],
    [["--pool", "p", "--bogus"], "bogus"],
  ])("rejects %j", (argv, says) => {
    expect(() => parseConfig(argv, {})).toThrow(ConfigError);
    expect(() => parseConfig(argv, {})).toThrow(says);
  });

  it("rejects malformed weights", () => {
    expect(() => parseWeights("queue")).toThrow(ConfigError);
    expect(() => parseWeights("speed=1")).toThrow(ConfigError);
    expect(() => parseWeights("kv=-1")).toThrow(ConfigError);
  });
});
