// Instant queries against Prometheus' HTTP API (POST /api/v1/query, form-encoded) on undici.
// Every failure — address, network, timeout, HTTP status, Prometheus `status: "error"`, a body
// that is not a scalar or instant vector — is a PrometheusError naming the address, the query and
// the cause, which the gate records as an Error measurement.

import { Agent, request, type Dispatcher } from "undici";
import { durationMs } from "../duration";
import type { ProviderSpec, QueryResult, Series } from "./types";

export const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface PrometheusClientOptions {
  /** Base URL, e.g. http://prometheus.monitoring:9090 (a path prefix is kept). */
  address: string;
  /** Whole-request timeout in milliseconds (default 10 s); also sent as the query timeout. */
  timeoutMs?: number;
  /** Sent as `Authorization: Bearer <token>` (surrounding whitespace is trimmed). */
  bearerToken?: string;
  /** PEM bundle of CAs trusted for an https address (replaces the system CAs). */
  caPem?: string;
}

export type PrometheusErrorKind =
  | "invalid-address"
  | "network"
  | "timeout"
  | "http"
  | "prometheus"
  | "bad-response";

export class PrometheusError extends Error {
  readonly kind: PrometheusErrorKind;
  readonly address: string;
  readonly query: string;
  /** HTTP status, when a response arrived. */
  readonly status?: number;
  /** Prometheus' errorType (bad_data, execution, timeout, ...), when it sent one. */
  readonly errorType?: string;
  constructor(
    kind: PrometheusErrorKind,
    detail: string,
    ctx: { address: string; query: string; status?: number; errorType?: string; cause?: unknown },
  ) {
    const query = ctx.query.length > 300 ? ctx.query.slice(0, 300) + "…" : ctx.query;
    super(`Prometheus ${ctx.address}: ${detail} (query: ${query})`, { cause: ctx.cause });
    this.name = "PrometheusError";
    this.kind = kind;
    this.address = ctx.address;
    this.query = ctx.query;
    this.status = ctx.status;
    this.errorType = ctx.errorType;
  }
}

/** Client options from a provider spec and the Secret values the reconciler read. */
export function clientOptionsFor(
  provider: ProviderSpec,
  secrets: { bearerToken?: string; caPem?: string } = {},
): PrometheusClientOptions {
  return {
    address: provider.address,
    timeoutMs: provider.timeout ? durationMs(provider.timeout) : DEFAULT_TIMEOUT_MS,
    bearerToken: secrets.bearerToken,
    caPem: secrets.caPem,
  };
}

/** Sample values are strings: "1.5", "NaN", "+Inf", "-Inf". */
export function parseSampleValue(text: unknown): number {
  if (typeof text !== "string")
    throw new Error(`sample value ${JSON.stringify(text)} is not a string`);
  switch (text) {
    case "NaN":
      return NaN;
    case "+Inf":
    case "Inf":
      return Infinity;
    case "-Inf":
      return -Infinity;
  }
  if (!/^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)) {
    throw new Error(`sample value ${JSON.stringify(text)} is not a number`);
  }
  return Number(text);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
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
    default:
      throw new Error(`unsupported result type ${JSON.stringify(resultType)}`);
  }
}

// One Agent per CA bundle: TLS settings live on the dispatcher, and connections are reused.
const agents = new Map<string, Agent>();
function dispatcherFor(caPem: string | undefined): Dispatcher | undefined {
  if (!caPem) return undefined;
  let agent = agents.get(caPem);
  if (!agent) {
    if (agents.size >= 16) {
      const [oldestKey, oldest] = agents.entries().next().value as [string, Agent];
      agents.delete(oldestKey);
      void oldest.close().catch(() => undefined);
    }
    agent = new Agent({ connect: { ca: caPem } });
    agents.set(caPem, agent);
  }
  return agent;
}

/** Close the cached TLS agents (tests, shutdown). */
export async function closePrometheusAgents(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map(a => a.close()));
}

function queryUrl(address: string): URL {
  const url = new URL(address);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`address must be http:// or https://, got ${url.protocol}`);
  }
  url.pathname = url.pathname.replace(/\/+$/, "") + "/api/v1/query";
  url.search = "";
  url.hash = "";
  return url;
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "DNS lookup failed",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  UND_ERR_SOCKET: "socket error",
};

function describeCause(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code;
  const message = e?.message ?? String(err);
  return code && NETWORK_CODES[code] ? `${NETWORK_CODES[code]} (${code}): ${message}` : message;
}

async function readBody(body: Dispatcher.ResponseData["body"]): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      body.destroy();
      throw new Error(`response larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Run an instant query. Throws PrometheusError on any failure. */
export async function queryPrometheus(
  options: PrometheusClientOptions,
  query: string,
  at?: Date,
): Promise<QueryResult> {
  const address = options.address;
  const fail = (
    kind: PrometheusErrorKind,
    detail: string,
    extra: { status?: number; errorType?: string; cause?: unknown } = {},
  ) => new PrometheusError(kind, detail, { address, query, ...extra });

  let url: URL;
  try {
    url = queryUrl(address);
  } catch (err) {
    throw fail("invalid-address", `invalid address: ${describeCause(err)}`, { cause: err });
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const form = new URLSearchParams({ query, timeout: `${timeoutMs}ms` });
  if (at) form.set("time", (at.getTime() / 1000).toFixed(3));
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
    accept: "application/json",
  };
  if (options.bearerToken) headers.authorization = `Bearer ${options.bearerToken.trim()}`;

  const signal = AbortSignal.timeout(timeoutMs);
  let status: number;
  let text: string;
  try {
    const response = await request(url, {
      method: "POST",
      headers,
      body: form.toString(),
      signal,
      dispatcher: dispatcherFor(options.caPem),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    status = response.statusCode;
    text = await readBody(response.body);
  } catch (err) {
    const code = (err as { code?: string })?.code ?? "";
    if (signal.aborted || code.endsWith("_TIMEOUT")) {
      throw fail("timeout", `no answer within ${timeoutMs} ms`, { cause: err });
    }
    throw fail("network", describeCause(err), { cause: err });
  }

  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (isRecord(body) && body.status === "error") {
    const errorType = typeof body.errorType === "string" ? body.errorType : undefined;
    throw fail(
      "prometheus",
      `query rejected (HTTP ${status}${errorType ? `, ${errorType}` : ""}): ${String(body.error ?? "no error message")}`,
      { status, errorType },
    );
  }
  if (status < 200 || status >= 300) {
    const snippet = text.trim().slice(0, 200);
    throw fail("http", `HTTP ${status}${snippet ? `: ${snippet}` : ""}`, { status });
  }
  if (!isRecord(body) || body.status !== "success") {
    throw fail("bad-response", `not a Prometheus API response: ${text.trim().slice(0, 200)}`, {
      status,
    });
  }
  try {
    return decodeQueryResponse(body);
  } catch (err) {
    throw fail("bad-response", (err as Error).message, { status, cause: err });
  }
}
