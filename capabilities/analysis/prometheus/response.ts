// Prometheus' reply to an instant query → a QueryResult, or the PrometheusError that says why not
// (never quoting the reply).
import { STATUS_CODES } from "node:http";
import { parsePrometheusFloat } from "../../api/prometheus-float";
import type { QueryResult, Series } from "../types";
import { PROMETHEUS_ERROR_TYPES, type QueryFailure } from "./errors";
import { isRecord } from "../../api/objects";

/** Sample values are strings: "1.5", "NaN", "+Inf", "-Inf". Errors never quote the reply. */
export function parseSampleValue(text: unknown): number {
  if (typeof text !== "string") throw new Error(`sample value is a ${typeof text}, not a string`);
  const value = parsePrometheusFloat(text);
  if (value === undefined) {
    throw new Error(`sample value is not a number (expected e.g. "1.5", "NaN", "+Inf")`);
  }
  return value;
}

function sampleValue(pair: unknown, where: string): number {
  if (!Array.isArray(pair) || pair.length !== 2) {
    throw new Error(`${where}: expected [timestamp, "value"]`);
  }
  return parseSampleValue(pair[1]);
}

/**
 * The result of a successful API response body (`{status: "success", data: {...}}`). Throws a
 * plain Error with a readable message for anything that is not a scalar or an instant vector.
 */
export function decodeQueryResponse(body: unknown): QueryResult {
  if (!isRecord(body) || !isRecord(body.data)) throw new Error("response has no data object");
  const { resultType, result } = body.data;
  switch (resultType) {
    case "scalar":
      return { kind: "scalar", value: sampleValue(result, "scalar result") };
    case "vector": {
      if (!Array.isArray(result)) throw new Error("vector result is not a list");
      const series: Series[] = result.map((item: unknown, i) => {
        if (!isRecord(item)) throw new Error(`vector sample ${i} is not an object`);
        if (item.value === undefined && item.histogram !== undefined) {
          throw new Error("native histogram samples are not supported: use histogram_quantile()");
        }
        const labels: Record<string, string> = {};
        if (isRecord(item.metric)) {
          for (const [k, v] of Object.entries(item.metric)) labels[k] = String(v);
        }
        return { labels, value: sampleValue(item.value, `vector sample ${i}`) };
      });
      return { kind: "vector", series };
    }
    case "matrix":
      throw new Error(
        "the query returned a range vector (matrix); a gate needs an instant vector or a scalar, e.g. wrap it in rate() or avg_over_time()",
      );
    case "string":
      throw new Error(
        'unsupported result type "string"; a gate needs an instant vector or a scalar',
      );
    default:
      throw new Error("unsupported result type; a gate needs an instant vector or a scalar");
  }
}

/** An HTTP status with Node's name for it (not the reply's reason phrase). */
function describeStatus(status: number): string {
  const name = STATUS_CODES[status];
  return name ? `HTTP ${status} ${name}` : `HTTP ${status}`;
}

function httpAdvice(status: number, url: URL): string {
  if (status >= 300 && status < 400)
    return "redirects are not followed; use the address Prometheus answers on";
  if (status === 401 || status === 403)
    return "check the bearer token (bearerTokenSecretRef) and what it is allowed to read";
  if (status === 404 || status === 405)
    return `no Prometheus query API at ${url.pathname}; check the address and its path prefix`;
  if (status === 429) return "rate limited";
  if (status >= 500) return "server error (Prometheus or a proxy in front of it)";
  return "reply not shown";
}

/** The result of a reply with this HTTP status and body text; throws `fail(...)` otherwise. */
export function resultOfReply(
  status: number,
  text: string,
  url: URL,
  fail: QueryFailure,
): QueryResult {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  // Never the body's text: only the status and a documented errorType.
  if (isRecord(body) && body.status === "error") {
    const errorType =
      typeof body.errorType === "string" && PROMETHEUS_ERROR_TYPES.includes(body.errorType)
        ? body.errorType
        : undefined;
    throw fail(
      "prometheus",
      `query rejected (${describeStatus(status)}${errorType ? `, errorType ${errorType}` : ""}; Prometheus' message not shown)`,
      { status, errorType },
    );
  }
  if (status < 200 || status >= 300) {
    throw fail("http", `${describeStatus(status)}: ${httpAdvice(status, url)}`, { status });
  }
  if (!isRecord(body) || body.status !== "success") {
    throw fail(
      "bad-response",
      `${describeStatus(status)} but not a Prometheus API response (${body === undefined ? "not JSON" : "no status success"}); check the address`,
      { status },
    );
  }
  try {
    return decodeQueryResponse(body);
  } catch (err) {
    throw fail("bad-response", (err as Error).message, { status, cause: err });
  }
}
