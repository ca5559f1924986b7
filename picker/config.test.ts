import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, parseConfig, parseWeights } from "./config";
import { PrefixIndex } from "./core/prefix";
import { defaultSaturationConfig } from "./core/scheduler";
import {
  buildSchedulerConfig,
  defaultScoreWeights,
  describeSchedulerConfig,
  weightsConfig,
} from "./core/scheduler-config";

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
      scheduling: weightsConfig({ queue: 2, kvCache: 2, prefix: 3, lora: 3 }),
      saturation: { staleAfterMs: 200, queueThreshold: 5, kvCacheThreshold: 0.8 },
      scrape: { intervalMs: 50 },
      flowControl: {
        enabled: true,
        maxRunning: 0,
        maxWaitMs: 10000,
        sheddableMaxWaitMs: 250,
        maxQueue: 1024,
        localityWaitMs: 200,
      },
      overload: { maxLoopDelayMs: 100, maxPending: 4096 },
    });
  });

  it("reads the overload flags (0 turns a bound off)", () => {
    const c = parseConfig(
      ["--pool", "p", "--overload-loop-delay-ms", "0", "--overload-max-pending", "64"],
      {},
    );
    expect(c !== "help" && c.overload).toEqual({ maxLoopDelayMs: 0, maxPending: 64 });
    expect(() => parseConfig(["--pool", "p", "--overload-max-pending", "-1"], {})).toThrow(
      ConfigError,
    );
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
        "--flow-sheddable-max-wait-ms",
        "100",
        "--flow-locality-wait-ms",
        "0",
      ],
      {},
    );
    expect(c !== "help" && c.flowControl).toEqual({
      enabled: false,
      maxRunning: 8,
      maxWaitMs: 500,
      sheddableMaxWaitMs: 100,
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
      scheduling: weightsConfig({ queue: 1, kvCache: 2, prefix: 0, lora: 3 }),
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

describe("--config", () => {
  const files: Record<string, string> = {};
  const read = (file: string) => {
    if (!(file in files)) throw new Error(`ENOENT: no such file, open '${file}'`);
    return files[file];
  };
  const withFile = (text: string) => {
    files["/etc/picker/config.yaml"] = text;
    return parseConfig(["--pool", "p", "--config", "/etc/picker/config.yaml"], {}, read);
  };
  const built = (c: ReturnType<typeof parseConfig>) => {
    if (c === "help") throw new Error("help");
    return buildSchedulerConfig(c.scheduling, {
      prefixIndex: new PrefixIndex(10),
      saturation: defaultSaturationConfig,
    });
  };

  it("the example in picker/README.md is what runs without --config", () => {
    const readme = fs.readFileSync(path.join(__dirname, "README.md"), "utf8");
    const example = /### Scheduler plugins[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)![1];
    const fromFile = withFile(example);
    expect(fromFile !== "help" && fromFile.scheduling).toEqual(weightsConfig(defaultScoreWeights));
    expect(describeSchedulerConfig(built(fromFile))).toBe(
      "capacity-filter → queue-scorer×2 + kv-cache-utilization-scorer×2 + prefix-cache-scorer×3 + " +
        "lora-affinity-scorer×3 → max-score-picker",
    );
  });

  it("reads YAML and JSON, with parameters and named instances", () => {
    const yaml = withFile(`
plugins:
  - type: capacity-filter
    parameters: {queueThreshold: 10}
  - type: queue-scorer
    name: load
  - type: prefix-cache-scorer
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: capacity-filter
      - pluginRef: load
        weight: 1.5
      - pluginRef: prefix-cache-scorer
`);
    expect(describeSchedulerConfig(built(yaml))).toBe(
      "capacity-filter → load×1.5 + prefix-cache-scorer×1 → max-score-picker",
    );
    const json = withFile(JSON.stringify({ plugins: [{ type: "kv-cache-utilization-scorer" }] }));
    expect(describeSchedulerConfig(built(json))).toBe(
      "kv-cache-utilization-scorer×1 → max-score-picker",
    );
  });

  it.each([
    ["plugins: []", "plugins must be a non-empty list"],
    ["plugins: [{type: speed-scorer}]", "unknown plugin type 'speed-scorer'"],
    ["plugins: [{type: queue-scorer, parameters: {x: 1}}]", "queue-scorer takes no parameters"],
    [
      "plugins: [{type: capacity-filter, parameters: {kvCacheThreshold: 2}}]",
      "kvCacheThreshold must be a number between 0 and 1",
    ],
    [
      "plugins: [{type: queue-scorer}]\nsaturationDetector: {}",
      "'saturationDetector' is not supported",
    ],
    ["kind: Pod\nplugins: [{type: queue-scorer}]", "kind must be EndpointPickerConfig"],
    [
      "plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: x}]}]",
      "no plugin is named 'x'",
    ],
    [
      "plugins: [{type: capacity-filter}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: capacity-filter, weight: 2}]}]",
      "'capacity-filter' is not a scorer and takes no weight",
    ],
    [
      "plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}, {name: b, plugins: [{pluginRef: queue-scorer}]}]",
      "exactly one profile",
    ],
    [
      "plugins: [{type: queue-scorer}, {type: queue-scorer}]",
      "two plugins are named 'queue-scorer'",
    ],
    ["plugins: [{type: queue-scorer", "--config /etc/picker/config.yaml:"],
  ])("refuses %j", (text, says) => {
    expect(() => withFile(text)).toThrow(ConfigError);
    expect(() => withFile(text)).toThrow(says);
  });

  it("names a file it cannot read, and refuses --weights beside it", () => {
    expect(() => parseConfig(["--pool", "p", "--config", "/nope.yaml"], {}, read)).toThrow(
      /--config \/nope.yaml: ENOENT/,
    );
    files["/etc/picker/config.yaml"] = "plugins: [{type: queue-scorer}]";
    expect(() =>
      parseConfig(
        ["--pool", "p", "--config", "/etc/picker/config.yaml", "--weights", "queue=1"],
        {},
        read,
      ),
    ).toThrow(/--weights is a shorthand/);
  });
});
