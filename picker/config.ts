// Command-line configuration of the picker: argv, env and the --config file in, a checked config
// out.

import { load as loadYaml } from "js-yaml";
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { FlowControlConfig, defaultFlowControlConfig } from "./core/flow";
import { OverloadConfig, defaultOverloadConfig } from "./core/overload";
import { PluginConfigError } from "./core/plugins/parameters";
import { PrefixConfig, PrefixIndex, defaultPrefixConfig } from "./core/prefix";
import { SaturationConfig, defaultSaturationConfig } from "./core/scheduler";
import {
  EndpointPickerConfig,
  ScoreWeights,
  buildSchedulerConfig,
  checkEndpointPickerConfig,
  defaultScoreWeights,
  weightsConfig,
} from "./core/scheduler-config";
import { INFERENCE_POOL_GROUPS, InferenceGroup } from "../capabilities/api/constants";
import type { PoolGroupChoice } from "./discovery";
import type { BodyMode } from "./extproc/config";

export interface PickerConfig {
  pool: string;
  namespace: string;
  poolGroup: PoolGroupChoice;
  host: string;
  grpcPort: number | undefined;
  healthPort: number;
  metricsPort: number;
  proxyPort: number | undefined;
  bodyMode: BodyMode;
  strict: boolean;
  sessionHeader: string;
  stickySessions: number;
  fallbacks: number;
  maxBodyBytes: number;
  /** The scheduler's plugins: from --config, else the default ones with --weights. */
  scheduling: EndpointPickerConfig;
  saturation: SaturationConfig;
  prefix: PrefixConfig;
  scrape: { intervalMs: number; timeoutMs: number; concurrency: number; path: string };
  proxy: { retries: number; connectTimeoutMs: number; upstreamTimeoutMs: number };
  flowControl: FlowControlConfig;
  overload: OverloadConfig;
}

export const usage = `Usage: npm run picker -- --pool NAME [--namespace NS] [options]

Endpoint picker for one InferencePool (v1alpha2 or v1): ext_proc gRPC for Envoy-based gateways
and/or a standalone OpenAI-compatible HTTP proxy. Kubeconfig from $KUBECONFIG or in-cluster.

  --pool NAME                 InferencePool to serve (env PICKER_POOL)            [required]
  --namespace NS              namespace of the pool (env PICKER_NAMESPACE, POD_NAMESPACE) [default]
  --pool-group G              auto | inference.networking.k8s.io | inference.networking.x-k8s.io [auto]
  --host ADDR                 listen address for all servers                     [0.0.0.0]
  --grpc-port N               ext_proc gRPC port                                 [9002]
  --health-port N             grpc.health.v1 port                                [9003]
  --metrics-port N            /metrics, /healthz, /readyz                        [9090]
  --proxy-port N              OpenAI-compatible HTTP proxy port                  [8080]
  --disable-grpc              do not serve ext_proc
  --disable-proxy             do not serve the HTTP proxy
  --body-mode M               full-duplex | buffered: Envoy's request body mode when it does
                              not announce it in protocol_config                [full-duplex]
  --strict                    unknown model names get 404 (default: passed through unchanged)
  --session-header H          header whose value keeps a session on one target version [off]
  --sticky-sessions N         sessions remembered (LRU)                          [100000]
  --fallbacks N               extra endpoints in the destination header as a comma list [0]
  --max-body-bytes N          request body limit (413 above)                     [10485760]
  --config FILE               scheduler plugins and weights: an EndpointPickerConfig in
                              YAML or JSON (see picker/README.md)      [default plugins]
  --weights LIST              the default plugins with these scorer weights, e.g.
                              queue=2,kv=2,prefix=3,lora=3 (instead of --config)
  --stale-ms N                metrics older than this mark a pod saturated       [200]
  --queue-threshold N         waiting requests above which a pod is saturated    [5]
  --kv-threshold F            KV-cache use above which a pod is saturated        [0.8]
  --prefix-block-size N       characters per prefix block                        [64]
  --prefix-max-blocks N       blocks hashed per prompt                           [256]
  --prefix-lru-capacity N     blocks remembered per endpoint                     [31250]
  --scrape-interval-ms N      model-server metrics scrape interval               [50]
  --scrape-timeout-ms N       timeout of one scrape                              [1000]
  --scrape-concurrency N      scrapes in flight at once                          [16]
  --metrics-path P            model-server metrics path                          [/metrics]
  --proxy-retries N           other endpoints tried when connecting fails        [2]
  --connect-timeout-ms N      proxy connect timeout                              [2000]
  --upstream-timeout-ms N     proxy: time to response headers and between chunks [300000]
  --flow-control on|off       hold requests in the picker (both front doors) while every pod
                              runs all it can; each goes to the first pod that frees a slot [on]
  --max-running N             requests one pod runs at once (vLLM --max-num-seqs);
                              0 = learnt from scrapes                            [0]
  --flow-max-wait-ms N        a request held this long gets 429                  [10000]
  --flow-sheddable-max-wait-ms N  the same for a sheddable request               [250]
  --flow-max-queue N          requests held at most; more get 429 (a critical one first
                              displaces the newest held sheddable one)           [1024]
  --flow-locality-wait-ms N   a request whose prompt prefix a busy pod holds waits this long
                              for a slot there before it starts elsewhere; 0 = never [200]
  --overload-loop-delay-ms N  the picker's own CPU is past capacity when its event loop runs
                              this late (smoothed): new requests get 429 at once; 0 = off [100]
  --overload-max-pending N    requests taken in and not yet decided (held ones included) at
                              most; more get 429 at once; 0 = no limit           [4096]
  --help                      this text
`;

export class ConfigError extends Error {}

function int(
  name: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`--${name} must be an integer between ${min} and ${max}, got '${value}'`);
  }
  return n;
}

function fraction(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw new ConfigError(`--${name} must be between 0 and 1, got '${value}'`);
  return n;
}

export function parseWeights(text: string | undefined): ScoreWeights {
  const weights = { ...defaultScoreWeights };
  if (!text) return weights;
  const keys: Record<string, keyof ScoreWeights> = {
    queue: "queue",
    kv: "kvCache",
    prefix: "prefix",
    lora: "lora",
  };
  for (const part of text.split(",")) {
    const [k, v] = part.split("=").map(s => s.trim());
    const key = keys[k];
    const n = Number(v);
    if (!key || v === undefined || !Number.isFinite(n) || n < 0) {
      throw new ConfigError(
        `--weights: '${part}' is not one of queue=N, kv=N, prefix=N, lora=N (N >= 0)`,
      );
    }
    weights[key] = n;
  }
  return weights;
}

const options = {
  pool: { type: "string" },
  namespace: { type: "string" },
  "pool-group": { type: "string" },
  host: { type: "string" },
  "grpc-port": { type: "string" },
  "health-port": { type: "string" },
  "metrics-port": { type: "string" },
  "proxy-port": { type: "string" },
  "disable-grpc": { type: "boolean" },
  "disable-proxy": { type: "boolean" },
  "body-mode": { type: "string" },
  strict: { type: "boolean" },
  "session-header": { type: "string" },
  "sticky-sessions": { type: "string" },
  fallbacks: { type: "string" },
  "max-body-bytes": { type: "string" },
  weights: { type: "string" },
  config: { type: "string" },
  "stale-ms": { type: "string" },
  "queue-threshold": { type: "string" },
  "kv-threshold": { type: "string" },
  "prefix-block-size": { type: "string" },
  "prefix-max-blocks": { type: "string" },
  "prefix-lru-capacity": { type: "string" },
  "scrape-interval-ms": { type: "string" },
  "scrape-timeout-ms": { type: "string" },
  "scrape-concurrency": { type: "string" },
  "metrics-path": { type: "string" },
  "proxy-retries": { type: "string" },
  "connect-timeout-ms": { type: "string" },
  "upstream-timeout-ms": { type: "string" },
  "flow-control": { type: "string" },
  "max-running": { type: "string" },
  "flow-max-wait-ms": { type: "string" },
  "flow-sheddable-max-wait-ms": { type: "string" },
  "flow-max-queue": { type: "string" },
  "flow-locality-wait-ms": { type: "string" },
  "overload-loop-delay-ms": { type: "string" },
  "overload-max-pending": { type: "string" },
  help: { type: "boolean" },
} as const;

/** Reads a --config file (a parameter, so that tests need no files). */
export type ReadFile = (path: string) => string;

const readFileUtf8: ReadFile = path => fs.readFileSync(path, "utf8");

/**
 * The scheduler's plugins from --config (checked as far as building them with the picker's own
 * plugins goes) or --weights, not both.
 */
function schedulingConfig(
  file: string | undefined,
  weights: string | undefined,
  saturation: SaturationConfig,
  readFile: ReadFile,
): EndpointPickerConfig {
  if (file === undefined) return weightsConfig(parseWeights(weights));
  if (weights !== undefined) {
    throw new ConfigError(
      "--weights is a shorthand for the default plugins: give weights in --config",
    );
  }
  let text: string;
  try {
    text = readFile(file);
  } catch (err) {
    throw new ConfigError(`--config ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const config = checkEndpointPickerConfig(loadYaml(text));
    buildSchedulerConfig(config, { prefixIndex: new PrefixIndex(1), saturation });
    return config;
  } catch (err) {
    if (
      err instanceof PluginConfigError ||
      (err instanceof Error && err.name === "YAMLException")
    ) {
      throw new ConfigError(`--config ${file}: ${err.message}`);
    }
    throw err;
  }
}

type Flags = ReturnType<typeof parseArgs<{ options: typeof options; args: string[] }>>["values"];

/** Returns the config, or "help" when --help was given. Throws ConfigError on bad input. */
export function parseConfig(
  argv: string[],
  env: NodeJS.ProcessEnv,
  readFile: ReadFile = readFileUtf8,
): PickerConfig | "help" {
  let values: Flags;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  if (values.help) return "help";
  // Flags are checked in this order (the first bad one is reported).
  const { pool, namespace, poolGroup } = poolFrom(values, env);
  const bodyMode = (values["body-mode"] ?? "full-duplex") as BodyMode;
  if (bodyMode !== "full-duplex" && bodyMode !== "buffered") {
    throw new ConfigError("--body-mode must be full-duplex or buffered");
  }
  const upstreamTimeoutMs = int("upstream-timeout-ms", values["upstream-timeout-ms"], 300_000, 1);
  const flowControl = values["flow-control"] ?? "on";
  if (flowControl !== "on" && flowControl !== "off") {
    throw new ConfigError("--flow-control must be on or off");
  }
  const saturation = saturationFrom(values);
  const prefixBlockSize = int(
    "prefix-block-size",
    values["prefix-block-size"],
    defaultPrefixConfig.blockSize,
    1,
  );
  return {
    pool,
    namespace,
    poolGroup,
    ...serversFrom(values),
    bodyMode,
    strict: values.strict ?? false,
    sessionHeader: (values["session-header"] ?? "").toLowerCase(),
    stickySessions: int("sticky-sessions", values["sticky-sessions"], 100_000, 1),
    fallbacks: int("fallbacks", values.fallbacks, 0, 0, 16),
    maxBodyBytes: int("max-body-bytes", values["max-body-bytes"], 10 << 20, 1),
    scheduling: schedulingConfig(values.config, values.weights, saturation, readFile),
    saturation,
    prefix: prefixFrom(values, prefixBlockSize),
    scrape: {
      intervalMs: int("scrape-interval-ms", values["scrape-interval-ms"], 50, 1),
      timeoutMs: int("scrape-timeout-ms", values["scrape-timeout-ms"], 1000, 1),
      concurrency: int("scrape-concurrency", values["scrape-concurrency"], 16, 1),
      path: values["metrics-path"] ?? "/metrics",
    },
    proxy: {
      retries: int("proxy-retries", values["proxy-retries"], 2, 0, 16),
      connectTimeoutMs: int("connect-timeout-ms", values["connect-timeout-ms"], 2000, 1),
      upstreamTimeoutMs,
    },
    flowControl: flowControlFrom(values, flowControl === "on"),
    overload: overloadFrom(values),
  };
}

function poolFrom(
  values: Flags,
  env: NodeJS.ProcessEnv,
): Pick<PickerConfig, "pool" | "namespace" | "poolGroup"> {
  const pool = values.pool ?? env.PICKER_POOL;
  if (!pool) throw new ConfigError("--pool is required (or set PICKER_POOL)");
  const namespace = values.namespace ?? env.PICKER_NAMESPACE ?? env.POD_NAMESPACE ?? "default";
  const poolGroup = (values["pool-group"] ?? "auto") as PoolGroupChoice;
  if (!["auto", ...INFERENCE_POOL_GROUPS].includes(poolGroup)) {
    throw new ConfigError(
      `--pool-group must be auto, ${InferenceGroup.k8s} or ${InferenceGroup.xK8s}`,
    );
  }
  return { pool, namespace, poolGroup };
}

/** The listen address and the ports; a disabled front door has none. */
function serversFrom(
  values: Flags,
): Pick<PickerConfig, "host" | "grpcPort" | "healthPort" | "metricsPort" | "proxyPort"> {
  const port = (name: keyof typeof options, fallback: number) =>
    int(name, values[name] as string | undefined, fallback, 0, 65535);
  return {
    host: values.host ?? "0.0.0.0",
    grpcPort: values["disable-grpc"] ? undefined : port("grpc-port", 9002),
    healthPort: port("health-port", 9003),
    metricsPort: port("metrics-port", 9090),
    proxyPort: values["disable-proxy"] ? undefined : port("proxy-port", 8080),
  };
}

function saturationFrom(values: Flags): SaturationConfig {
  return {
    staleAfterMs: int("stale-ms", values["stale-ms"], defaultSaturationConfig.staleAfterMs, 1),
    queueThreshold: int(
      "queue-threshold",
      values["queue-threshold"],
      defaultSaturationConfig.queueThreshold,
      0,
    ),
    kvCacheThreshold: fraction(
      "kv-threshold",
      values["kv-threshold"],
      defaultSaturationConfig.kvCacheThreshold,
    ),
  };
}

function prefixFrom(values: Flags, blockSize: number): PrefixConfig {
  return {
    blockSize,
    maxBlocks: int(
      "prefix-max-blocks",
      values["prefix-max-blocks"],
      defaultPrefixConfig.maxBlocks,
      1,
    ),
    capacityPerEndpoint: int(
      "prefix-lru-capacity",
      values["prefix-lru-capacity"],
      defaultPrefixConfig.capacityPerEndpoint,
      1,
    ),
  };
}

function flowControlFrom(values: Flags, enabled: boolean): FlowControlConfig {
  const d = defaultFlowControlConfig;
  const n = (name: keyof typeof options, fallback: number) =>
    int(name, values[name] as string | undefined, fallback, 0);
  return {
    enabled,
    maxRunning: n("max-running", d.maxRunning),
    maxWaitMs: n("flow-max-wait-ms", d.maxWaitMs),
    sheddableMaxWaitMs: n("flow-sheddable-max-wait-ms", d.sheddableMaxWaitMs),
    maxQueue: n("flow-max-queue", d.maxQueue),
    localityWaitMs: n("flow-locality-wait-ms", d.localityWaitMs),
  };
}

function overloadFrom(values: Flags): OverloadConfig {
  const n = (name: keyof typeof options, fallback: number) =>
    int(name, values[name] as string | undefined, fallback, 0);
  return {
    maxLoopDelayMs: n("overload-loop-delay-ms", defaultOverloadConfig.maxLoopDelayMs),
    maxPending: n("overload-max-pending", defaultOverloadConfig.maxPending),
  };
}
