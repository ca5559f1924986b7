// Whose metrics a built-in gate reads (a metric's `metricsSource`): our picker, the upstream
// endpoint picker, llm-d-router or the model servers' own vLLM metrics — each a set of metric
// names — and which source may be used where.

import type { Scope } from "../types";

/** The picker's metric names (agreed with the picker issue). */
export const PICKER_METRICS = {
  requests: "inference_objective_request_total",
  errors: "inference_objective_request_error_total",
  duration: "inference_objective_request_duration_seconds",
  ttft: "inference_objective_request_ttft_seconds",
  inputTokens: "inference_objective_input_tokens",
  outputTokens: "inference_objective_output_tokens",
} as const;

/**
 * vLLM's prefix cache counters, in tokens (hits: prompt tokens found in the cache; queries: prompt
 * tokens looked up). Only the model servers know them, whichever source the gate reads.
 */
export const VLLM_PREFIX_CACHE = {
  hits: "vllm:prefix_cache_hits_total",
  queries: "vllm:prefix_cache_queries_total",
} as const;

/** Metric names of one source; `errors` is a counter, or a filter on `requests` (vLLM). */
export interface SourceMetrics {
  requests: string;
  /** An error counter, or `requests` with `errorMatcher`. */
  errors: string;
  /** A matcher on `errors` that selects failed requests (vLLM: finished_reason="abort"). */
  errorMatcher?: string;
  duration: string;
  /** Absent: the source has no TTFT histogram (pre-v1 pickers). */
  ttft?: string;
  /** A histogram of prompt tokens per request; absent: not known. */
  promptTokens?: string;
  /** A histogram of generated tokens per request; with `ttft` and `duration` it gives the mean inter-token latency. */
  outputTokens?: string;
  /** An inter-token latency histogram of its own (vLLM); absent: derived from the above. */
  itl?: string;
}

export type MetricsSource = "picker" | "upstream-epp" | "llm-d" | "vllm";
export const METRICS_SOURCES = ["auto", "picker", "upstream-epp", "llm-d", "vllm"] as const;

/**
 * Whose metrics a built-in reads. upstream-epp is GIE v1.x (same names as ours; requests carry no
 * pool label) and, when no v1 series exist, the pre-v1 `inference_model_*` names.
 */
export const METRIC_SOURCES: Record<MetricsSource, SourceMetrics[]> = {
  picker: [
    {
      ...PICKER_METRICS,
      promptTokens: PICKER_METRICS.inputTokens,
      outputTokens: PICKER_METRICS.outputTokens,
    },
  ],
  "upstream-epp": [
    {
      ...PICKER_METRICS,
      promptTokens: PICKER_METRICS.inputTokens,
      outputTokens: PICKER_METRICS.outputTokens,
    },
    {
      requests: "inference_model_request_total",
      errors: "inference_model_request_error_total",
      duration: "inference_model_request_duration_seconds",
      promptTokens: "inference_model_input_tokens",
      outputTokens: "inference_model_output_tokens",
    },
  ],
  "llm-d": [
    {
      requests: "llm_d_epp_request_total",
      errors: "llm_d_epp_request_error_total",
      duration: "llm_d_epp_request_duration_seconds",
      ttft: "llm_d_epp_request_ttft_seconds",
    },
  ],
  vllm: [
    {
      // Every finished request, by finished_reason (stop, length, abort); aborts are the errors.
      requests: "vllm:request_success_total",
      errors: "vllm:request_success_total",
      errorMatcher: 'finished_reason="abort"',
      duration: "vllm:e2e_request_latency_seconds",
      ttft: "vllm:time_to_first_token_seconds",
      promptTokens: "vllm:request_prompt_tokens",
      outputTokens: "vllm:request_generation_tokens",
      // vLLM >= 0.11; older servers only have vllm:time_per_output_token_seconds.
      itl: "vllm:inter_token_latency_seconds",
    },
  ],
};

export type MetricsSourceName = (typeof METRICS_SOURCES)[number];

/** The sources "auto" tries, in order: the picker's names first (ours and GIE v1.x share them). */
export const AUTO_ORDER: MetricsSource[] = ["upstream-epp", "llm-d", "vllm"];

/**
 * What is wrong with a metric's metricsSource (undefined when fine): not one of METRICS_SOURCES,
 * set on a query (which names its metrics itself), or vllm where adapters must be told apart.
 */
export function metricsSourceProblem(
  source: unknown,
  opts: { template: boolean; scope?: Scope },
): string | undefined {
  if (source === undefined) return undefined;
  if (typeof source !== "string" || !(METRICS_SOURCES as readonly string[]).includes(source)) {
    return `metricsSource must be one of ${METRICS_SOURCES.join(", ")}, got ${JSON.stringify(source)}`;
  }
  if (!opts.template && source !== "auto") {
    return `metricsSource ${source} applies to built-in gates (template) only: a query names its metrics itself (remove metricsSource)`;
  }
  if (opts.template && source === "vllm" && opts.scope === "adapters") {
    return "metricsSource vllm cannot tell LoRA adapters apart (vLLM labels requests by the base model only): use auto, picker, upstream-epp or llm-d";
  }
  return undefined;
}
