// Prometheus gates for ModelRollout: spec types, condition language, query templates, built-in
// LLM gates, the Prometheus client and the verdict logic.
export * from "./types";
export * from "../duration";
export * from "./expr/ast";
export * from "./expr/parser";
export * from "./expr/evaluate";
export * from "./promql";
export * from "./builtins";
export * from "./address-policy";
export * from "./credentials";
export {
  PROMETHEUS_ERROR_TYPES,
  PrometheusError,
  isPermanentGateError,
  isPermanentPrometheusError,
  type PrometheusErrorKind,
} from "./prometheus/errors";
export * from "./prometheus/client";
export { closePrometheusAgents, prometheusAddressProblem } from "./prometheus/connection";
export { decodeQueryResponse, parseSampleValue } from "./prometheus/response";
export * from "./run";
export * from "./validate";
export * from "./measure";
export * from "./queries";
export * from "./probe";
export * from "./probe-check";
