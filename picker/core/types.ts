// Shared types of the picker core. Everything in core/ is pure: no sockets, no timers, no
// Kubernetes. The front doors (extproc.ts, proxy.ts) and the datastore feed it plain values.

/** A source of uniform numbers in [0, 1). Injected so tests can be deterministic. */
export type Rng = () => number;

/** LoRA adapter state reported by a model server (`vllm:lora_requests_info`). */
export interface LoraInfo {
  running: string[];
  waiting: string[];
  maxLora: number;
}

/** The model-server metrics the scheduler uses, from one scrape of one endpoint. */
export interface EndpointMetrics {
  waiting: number;
  running: number;
  /** KV-cache use as a fraction 0..1. */
  kvCacheUsage: number;
  lora?: LoraInfo;
  /** When the scrape finished (ms, same clock as the scheduler's `nowMs`). */
  scrapedAtMs: number;
}

/** One schedulable endpoint: a pod and one of the pool's target ports. */
export interface EndpointView {
  /** Pod name, or `<pod>-rank-<i>` when the pool has several target ports. */
  readonly name: string;
  /** `ip:port`, the value of the destination header. */
  readonly address: string;
  readonly podName: string;
  metrics?: EndpointMetrics;
  /** Requests we sent to this endpoint since its last successful scrape. */
  dispatchedSinceScrape: number;
  /** Requests we sent that have not finished yet. */
  inflight: number;
  /** Requests we sent that finished since the last successful scrape. */
  completedSinceScrape?: number;
  /**
   * The most requests the endpoint was seen running while others waited there: its running
   * capacity (vLLM --max-num-seqs), learnt from scrapes; undefined until it queued once.
   */
  learntMaxRunning?: number;
  /**
   * LoRA adapters of requests we sent, least recently sent first, each with how many of those
   * requests are still in flight. The scrape lags by up to one interval and lists only adapters
   * with running requests; this says which adapters the endpoint runs by now, and which idle ones
   * it probably still holds in its adapter slots.
   */
  sentAdapters?: Map<string, number>;
}

export type Criticality = "Critical" | "Standard" | "Sheddable";

export interface WeightedTarget {
  name: string;
  weight: number;
}

/** How a public model name maps to target models for one pool. */
export interface ModelResolution {
  source: "InferenceModelRewrite" | "InferenceModel" | "passthrough";
  /** `<group>/<name>` or `<name>` of the object that decided, for logs. */
  objectName?: string;
  targets: WeightedTarget[];
  criticality?: Criticality;
  /** True when targets are LoRA adapters chosen by a split (LoRA affinity applies). */
  adapters: boolean;
}

/** What the core needs to know about the pool; the datastore implements it. */
export interface PoolView {
  poolName(): string;
  readyEndpoints(): readonly EndpointView[];
  resolveModel(model: string): ModelResolution | undefined;
  /** Priority of the InferenceObjective with that name, if it exists for this pool. */
  objectivePriority(name: string): number | undefined;
  /** `adapter`: the LoRA adapter the request needs, if it targets one. */
  noteDispatched(address: string, adapter?: string): void;
  noteCompleted(address: string, adapter?: string): void;
}

/**
 * Error codes, named like the upstream EPP's (pkg/epp/util/error) so dashboards that group by
 * `error_code` keep working; PayloadTooLarge is ours.
 */
export type PickerErrorCode =
  | "BadRequest"
  | "PayloadTooLarge"
  | "BadConfiguration"
  | "InferencePoolResourceExhausted"
  | "ServiceUnavailable"
  | "Internal"
  | "ModelServerError"
  | "NotFound"
  | "MethodNotAllowed";

export const statusOfErrorCode: Record<PickerErrorCode, number> = {
  BadRequest: 400,
  PayloadTooLarge: 413,
  BadConfiguration: 404,
  InferencePoolResourceExhausted: 429,
  ServiceUnavailable: 503,
  Internal: 500,
  ModelServerError: 502,
  NotFound: 404,
  MethodNotAllowed: 405,
};

export interface PickerError {
  code: PickerErrorCode;
  status: number;
  message: string;
}

export function pickerError(code: PickerErrorCode, message: string): PickerError {
  return { code, status: statusOfErrorCode[code], message };
}

/** OpenAI-style error body, so clients see the same shape as a model server's errors. */
export function errorBody(err: PickerError): string {
  const type = err.status >= 500 ? "server_error" : "invalid_request_error";
  return JSON.stringify({ error: { message: err.message, type, code: err.code } });
}
