// Spec and status shapes of the Prometheus gates, mirrored from the ModelRollout CRD
// (capabilities/modelrollout). Status timestamps are RFC3339 strings so a run survives an operator
// restart: every decision is recomputed from these fields alone.
import type { MetricsSourceName } from "./builtins";
import type { ProbeSpec } from "./probe/types";

/** A reference to one key of a Secret in the rollout's namespace. */
export interface SecretKeyRef {
  name: string;
  key: string;
}

/** Where and how to query Prometheus. The reconciler resolves the Secret refs. */
export interface ProviderSpec {
  address: string;
  /** Request timeout, a duration like "10s" (default 10s). */
  timeout?: string;
  bearerTokenSecretRef?: SecretKeyRef;
  caSecretRef?: SecretKeyRef;
}

export interface MetricSpec {
  name: string;
  /** PromQL with {{placeholders}}; exactly one of query / template / probe. */
  query?: string;
  /** Name of a built-in LLM gate (see builtins.ts); exactly one of query / template / probe. */
  template?: string;
  /** Requests to the canary and the stable, their answers judged (probe/); no Prometheus. */
  probe?: ProbeSpec;
  args?: Record<string, string>;
  /**
   * Whose metrics a built-in reads (builtins/metric-sources.ts METRIC_SOURCES); the CRD defaults
   * it to "auto".
   */
  metricsSource?: MetricsSourceName;
  /** Time between measurements, default "30s". */
  interval?: string;
  /** Wait after the run started before the first measurement. */
  initialDelay?: string;
  /** Number of measurements; step gates default to 1, background gates run until the run ends. */
  count?: number;
  successCondition?: string;
  failureCondition?: string;
  /** Failed measurements tolerated (default 0): failed > failureLimit fails the metric. */
  failureLimit?: number;
  /** Inconclusive measurements tolerated (default 0). */
  inconclusiveLimit?: number;
  /** Consecutive Error measurements tolerated (default 4). */
  consecutiveErrorLimit?: number;
  /** Measured and recorded, never decides the run. */
  dryRun?: boolean;
  /** Allow a vector result with more than one series. */
  multipleSeries?: boolean;
  prometheus?: ProviderSpec;
}

export interface AnalysisSpec {
  metrics: MetricSpec[];
  /** Measurements kept per metric in status (default 5). */
  measurementsToKeep?: number;
}

export type MeasurementPhase = "Successful" | "Failed" | "Inconclusive" | "Error";
/** Pending: no measurement finished yet; Running: measuring; the rest are final. */
export type MetricPhase = "Pending" | "Running" | MeasurementPhase;
export type RunPhase = "Running" | MeasurementPhase;

export interface Measurement {
  phase: MeasurementPhase;
  /** The query result as text: "0.03" for a scalar, "[0.03]" for a vector, "[]" when empty. */
  value?: string;
  /** Why this phase: the condition that decided, or the error. */
  message?: string;
  startedAt: string;
  finishedAt: string;
  /** An Error that retrying alone will not fix (the query or the gate's configuration): it ends the metric at once. */
  permanent?: boolean;
}

export interface MetricRunStatus {
  name: string;
  phase: MetricPhase;
  /** Completed measurements (Successful + Failed + Inconclusive); errors are not counted. */
  count: number;
  successful: number;
  failed: number;
  inconclusive: number;
  error: number;
  consecutiveErrors: number;
  /** finishedAt of the last measurement (also of an Error), drives the interval. */
  lastMeasuredAt?: string;
  /** The last measurementsToKeep measurements, oldest first. */
  measurements: Measurement[];
}

export interface AnalysisRunStatus {
  startedAt: string;
  /** Set for a step gate (index of the analysis step); absent for the background analysis. */
  stepIndex?: number;
  phase: RunPhase;
  message?: string;
  metrics: MetricRunStatus[];
}

/** One sample of an instant query. */
export interface Series {
  labels: Record<string, string>;
  value: number;
}

export type QueryResult = { kind: "scalar"; value: number } | { kind: "vector"; series: Series[] };

/** Which label tells canary and stable apart in the picker's metrics. */
export type Scope = "pools" | "adapters";

/** Values the reconciler knows about the rollout, substituted into query templates. */
export interface TemplateContext {
  scope: Scope;
  namespace: string;
  rollout: string;
  /** Canary / stable InferencePool (pools) or target model / adapter name (adapters). */
  canary: string;
  stable: string;
  modelName?: string;
  pool?: string;
  /** Current canary weight in percent (0-100). */
  weight?: number;
}

/** A metric ready to measure: final PromQL and the conditions that judge its result. */
export interface ResolvedMetric {
  name: string;
  query: string;
  successCondition?: string;
  failureCondition?: string;
  multipleSeries: boolean;
  dryRun: boolean;
  provider?: ProviderSpec;
}
