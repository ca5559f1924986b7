// Built-in LLM gates, usable by name: `template: ttft-p95-ratio, args: {maxRatio: "1.2"}`.
// Each expands to a PromQL template (canary/stable stay {{placeholders}}, escaped by promql.ts)
// and a success and a failure condition. They query the picker's metrics; canary and stable are
// told apart by the `pool` label (scope "pools") or `target_model_name` (scope "adapters").
//
// `metricsSource` says whose metrics (see METRIC_SOURCES): our picker, the upstream endpoint
// picker (GIE v1.x `inference_objective_*`, pre-v1 `inference_model_*`), llm-d-router
// (`llm_d_epp_*`) or, where no picker metrics exist, the model servers' own vLLM metrics
// (`vllm:*`). The upstream pickers label requests by model_name / target_model_name only: a pool
// is one picker deployment, so in the pools scope the pool's name must come from the scrape (a
// target label, `poolLabel`, default `pool`). vLLM labels requests by the base model only, so it
// cannot tell adapters apart: not offered in the adapters scope. "auto" (the CRD's default) is one
// query trying the sources in that order: a source counts only while the ones before it have no
// series at all (`unless on() count(...)`), so a gate never mixes two sources.
//
// The picker's series carry no namespace: a `namespace` label, if any, comes from the scrape
// config (ServiceMonitor / PodMonitor add it, a hand-written scrape job may not). So scoping by
// namespace is opt-in (`namespaceLabel`), never assumed: a matcher on a missing label would make
// every gate empty, i.e. Inconclusive forever. `selector` adds any other matchers.
//
// The parts: builtins/metric-sources.ts (METRIC_SOURCES, whose metric names), builtins/args.ts (arg
// kinds, shared args, the check of one value), builtins/gates.ts (each gate's query and conditions;
// low traffic is never a success), builtins/paired.ts (paired-comparison: canary against stable,
// TTFT per uncached prompt token), builtins/expand.ts (validateBuiltin, expandBuiltin and the
// "auto" chain of sources).

export {
  METRIC_SOURCES,
  METRICS_SOURCES,
  type MetricsSource,
  type MetricsSourceName,
  metricsSourceProblem,
  PICKER_METRICS,
} from "./builtins/metric-sources";
export { BUILTIN_TEMPLATES, describeBuiltins } from "./builtins/gates";
export {
  BuiltinError,
  type BuiltinContext,
  type BuiltinExpansion,
  expandBuiltin,
  validateBuiltin,
} from "./builtins/expand";
