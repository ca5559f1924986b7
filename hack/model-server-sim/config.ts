// Configuration of the model-server simulator: the subset of llm-d-inference-sim's flags we
// implement, under the same names and defaults (upstream docs/configuration.md,
// pkg/common/config.go), plus `--host`. Pure: parsing and validation only.

export const FAILURE_TYPES = [
  "rate_limit",
  "invalid_api_key",
  "context_length",
  "server_error",
  "invalid_request",
  "model_not_found",
] as const;
export type FailureType = (typeof FAILURE_TYPES)[number];

export interface LoraModule {
  name: string;
  path?: string;
  base_model_name?: string;
}

/** Latencies are milliseconds. */
export interface SimConfig {
  host: string;
  port: number;
  model: string;
  servedModelName: string[];
  loraModules: LoraModule[];
  maxLoras: number;
  maxNumSeqs: number;
  maxWaitingQueueLength: number;
  maxModelLen: number;
  mode: "echo" | "random";
  timeToFirstToken: number;
  timeToFirstTokenStdDev: number;
  interTokenLatency: number;
  interTokenLatencyStdDev: number;
  prefillOverhead: number;
  prefillTimePerToken: number;
  prefillTimeStdDev: number;
  timeFactorUnderLoad: number;
  seed: number;
  failureInjectionRate: number;
  failureTypes: FailureType[];
  kvCacheSize: number;
  blockSize: number;
  /** Simulate the prefix cache: cached prompt blocks skip prefill-time-per-token. */
  enableKvcache: boolean;
  enableRequestIdHeaders: boolean;
}

export function defaultConfig(model: string): SimConfig {
  return {
    host: "0.0.0.0",
    port: 8000, // upstream default
    model,
    servedModelName: [], // empty = [model], as upstream
    loraModules: [],
    maxLoras: 1,
    maxNumSeqs: 5,
    maxWaitingQueueLength: 1000,
    maxModelLen: 1024,
    mode: "random",
    timeToFirstToken: 0,
    timeToFirstTokenStdDev: 0,
    interTokenLatency: 0,
    interTokenLatencyStdDev: 0,
    prefillOverhead: 0,
    prefillTimePerToken: 0,
    prefillTimeStdDev: 0,
    timeFactorUnderLoad: 1,
    seed: Date.now(),
    failureInjectionRate: 0,
    failureTypes: [],
    kvCacheSize: 1024, // blocks, upstream default
    blockSize: 16,
    enableKvcache: false,
    enableRequestIdHeaders: false,
  };
}

type Kind = "int" | "float" | "string" | "duration" | "bool" | "list";
type Key = keyof SimConfig;
// flag name -> config key and value kind
const FLAGS: Record<string, [Key, Kind]> = {
  host: ["host", "string"],
  port: ["port", "int"],
  model: ["model", "string"],
  "served-model-name": ["servedModelName", "list"],
  "lora-modules": ["loraModules", "list"],
  "max-loras": ["maxLoras", "int"],
  "max-num-seqs": ["maxNumSeqs", "int"],
  "max-waiting-queue-length": ["maxWaitingQueueLength", "int"],
  "max-model-len": ["maxModelLen", "int"],
  mode: ["mode", "string"],
  "time-to-first-token": ["timeToFirstToken", "duration"],
  "time-to-first-token-std-dev": ["timeToFirstTokenStdDev", "duration"],
  "inter-token-latency": ["interTokenLatency", "duration"],
  "inter-token-latency-std-dev": ["interTokenLatencyStdDev", "duration"],
  "prefill-overhead": ["prefillOverhead", "duration"],
  "prefill-time-per-token": ["prefillTimePerToken", "duration"],
  "prefill-time-std-dev": ["prefillTimeStdDev", "duration"],
  "time-factor-under-load": ["timeFactorUnderLoad", "float"],
  seed: ["seed", "int"],
  "failure-injection-rate": ["failureInjectionRate", "int"],
  "failure-types": ["failureTypes", "list"],
  "kv-cache-size": ["kvCacheSize", "int"],
  "block-size": ["blockSize", "int"],
  "enable-kvcache": ["enableKvcache", "bool"],
  "enable-request-id-headers": ["enableRequestIdHeaders", "bool"],
};
// Upstream flags accepted for drop-in compatibility but without effect here.
const IGNORED_FLAGS = new Set(["max-cpu-loras", "tensor-parallel-size", "v"]);

// Keys POST /admin/config may change (upstream docs/api.md, minus what we do not simulate).
export const ADMIN_FLAGS = [
  "failure-injection-rate",
  "failure-types",
  "time-to-first-token",
  "time-to-first-token-std-dev",
  "inter-token-latency",
  "inter-token-latency-std-dev",
  "prefill-overhead",
  "prefill-time-per-token",
  "prefill-time-std-dev",
  "time-factor-under-load",
];

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go duration ("250ms", "1m30s") or, as older upstream int flags, a bare number of ms. */
export function parseDurationMs(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let match: RegExpExecArray | null;
  while (re.lastIndex < s.length && (match = re.exec(s)))
    total += Number(match[1]) * UNIT_MS[match[2]];
  if (s === "" || re.lastIndex !== s.length) throw new Error(`invalid duration "${text}"`);
  return total;
}

/** Roughly Go's time.Duration.String(), as GET /admin/config returns durations. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1) return `${+(ms * 1000).toFixed(3)}µs`;
  if (ms < 1000) return `${+ms.toFixed(6)}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(9)}s`;
  return `${Math.floor(ms / 60_000)}m${+((ms % 60_000) / 1000).toFixed(9)}s`;
}

function convert(flag: string, kind: Kind, values: string[]): unknown {
  if (kind === "list") {
    if (flag === "lora-modules") return values.map(v => JSON.parse(v) as LoraModule);
    return values;
  }
  if (kind === "bool") return values.length === 0 || values[0] === "true";
  if (values.length !== 1) throw new Error(`flag --${flag} needs exactly one value`);
  const v = values[0];
  if (kind === "string") return v;
  if (kind === "duration") return parseDurationMs(v);
  const n = Number(v);
  if (!Number.isFinite(n) || (kind === "int" && !Number.isInteger(n))) {
    throw new Error(`invalid value "${v}" for flag --${flag}`);
  }
  return n;
}

/**
 * Parses upstream-style arguments: `--flag value`, `--flag=value`, and space-separated lists
 * for served-model-name / lora-modules / failure-types (upstream getParamValueFromArgs).
 */
export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = {}): SimConfig {
  const raw: Partial<Record<Key, unknown>> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("-")) throw new Error(`unexpected argument "${arg}"`);
    const [name, inline] = arg.replace(/^--?/, "").split(/=(.*)/s, 2);
    const values: string[] = inline !== undefined ? [inline] : [];
    while (inline === undefined && i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
      values.push(argv[++i]);
    }
    if (IGNORED_FLAGS.has(name)) continue;
    const spec = FLAGS[name];
    if (!spec) throw new Error(`unknown flag: --${name}`);
    raw[spec[0]] = convert(name, spec[1], values);
  }
  const model = (raw.model as string | undefined) || env.SIM_MODEL || ""; // upstream: SIM_MODEL
  return validateConfig({ ...defaultConfig(model), ...raw } as SimConfig);
}

/** Upstream's start-up validation rules for the fields we implement; returns the config. */
export function validateConfig(c: SimConfig): SimConfig {
  const fail = (msg: string): never => {
    throw new Error(msg);
  };
  if (!c.model) fail("model parameter is empty");
  if (c.servedModelName.length === 0) c.servedModelName = [c.model];
  if (!["echo", "random"].includes(c.mode)) fail(`invalid mode '${c.mode}'`);
  if (c.maxNumSeqs < 1) fail("max num seqs cannot be less than 1");
  if (c.maxLoras < 1) fail("max LoRAs cannot be less than 1");
  if (c.maxWaitingQueueLength < 1) fail("max waiting queue size cannot be less than 1");
  if (c.maxModelLen < 1) fail("max model len cannot be less than 1");
  if (![8, 16, 32, 64, 128].includes(c.blockSize)) {
    fail("token block size should be one of the following: 8, 16, 32, 64, 128");
  }
  if (c.kvCacheSize < 1) fail("KV cache size cannot be less than 1");
  for (const lora of c.loraModules) if (!lora.name) fail("empty LoRA name");
  validateRuntime(c, fail);
  return c;
}

function validateRuntime(c: SimConfig, fail: (msg: string) => never): void {
  const pairs: [string, number, number][] = [
    ["time-to-first-token", c.timeToFirstToken, c.timeToFirstTokenStdDev],
    ["inter-token-latency", c.interTokenLatency, c.interTokenLatencyStdDev],
    ["prefill-overhead", c.prefillOverhead, c.prefillTimeStdDev],
  ];
  for (const [name, base, dev] of pairs) {
    if (base < 0 || dev < 0) fail(`${name} and its std dev cannot be negative`);
    if (name !== "prefill-overhead" && dev > 0.3 * base) {
      fail(`${name} standard deviation cannot be more than 30% of ${name}`);
    }
  }
  if (c.prefillTimePerToken < 0) fail("prefill-time-per-token cannot be negative");
  if (c.timeFactorUnderLoad < 1) fail("time factor under load cannot be less than 1.0");
  if (c.failureInjectionRate < 0 || c.failureInjectionRate > 100) {
    fail("failure injection rate should be between 0 and 100");
  }
  for (const t of c.failureTypes) {
    if (!FAILURE_TYPES.includes(t)) {
      fail(`invalid failure type '${t}', valid types are: ${FAILURE_TYPES.join(", ")}`);
    }
  }
}

/**
 * Applies a POST /admin/config body: only ADMIN_FLAGS keys; durations as Go duration strings
 * or integer nanoseconds (upstream docs/api.md). Returns a new config or throws (400).
 */
export function applyAdminUpdate(current: SimConfig, body: unknown): SimConfig {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new Error("body must be a JSON object");
  }
  const next: SimConfig = { ...current };
  const target = next as unknown as Record<string, unknown>;
  for (const [flag, value] of Object.entries(body)) {
    if (!ADMIN_FLAGS.includes(flag)) throw new Error(`field '${flag}' cannot be updated`);
    if (value === null) continue;
    const [key, kind] = FLAGS[flag];
    if (kind === "duration") {
      if (typeof value === "number" && Number.isInteger(value)) target[key] = value / 1e6;
      else if (typeof value === "string") target[key] = parseDurationMs(value);
      else throw new Error(`invalid value for '${flag}'`);
    } else if (kind === "list") {
      if (!Array.isArray(value)) throw new Error(`'${flag}' must be an array`);
      target[key] = value.map(String);
    } else {
      if (typeof value !== "number") throw new Error(`'${flag}' must be a number`);
      if (kind === "int" && !Number.isInteger(value)) throw new Error(`'${flag}' must be an int`);
      target[key] = value;
    }
  }
  validateRuntime(next, msg => {
    throw new Error(msg);
  });
  return next;
}

/** The config under flag names, durations as strings: the GET /admin/config shape. */
export function configToFlags(c: SimConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [flag, [key, kind]] of Object.entries(FLAGS)) {
    const value = c[key];
    out[flag] = kind === "duration" ? formatDuration(value as number) : value;
  }
  return out;
}

export function helpText(): string {
  const lines = Object.entries(FLAGS).map(([flag, [, kind]]) => `  --${flag} <${kind}>`);
  return `Usage: model-server-sim --model <name> [flags]\n${lines.join("\n")}\n`;
}
