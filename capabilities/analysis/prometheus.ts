// Instant queries against Prometheus' HTTP API (POST /api/v1/query, form-encoded) on undici.
// Every failure — address, network, timeout, HTTP status, Prometheus `status: "error"`, a body
// that is not a scalar or instant vector — is a PrometheusError naming the address, the query and
// the cause, which the gate records as an Error measurement.
//
// Nothing of a reply's body ever goes into an error message (they end up in status and Events,
// readable by whoever may read the ModelRollout): only the HTTP status, Prometheus' errorType when
// it is one of the documented ones, and our own description. The address must pass the operator's
// address policy (address-policy.ts) before anything is sent, and every address a host name
// resolves to is checked again when connecting (the checked address is the one connected to, so
// DNS rebinding cannot slip past the check). Redirects are never followed (undici's default).

import * as dns from "node:dns";
import { STATUS_CODES } from "node:http";
import type { LookupFunction } from "node:net";
import { Agent, request, type Dispatcher } from "undici";
import { parsePrometheusFloat } from "../api/prometheus-float";
import { durationMs } from "../duration";
import {
  ALLOWED_HOSTS_ENV,
  AddressPolicyConfigError,
  addressPolicyFromEnv,
  checkResolvedAddresses,
  checkUrl,
  DENIED_ENV,
  type AddressPolicy,
  type AddressRefusal,
} from "./address-policy";
import { GateCredentialsError } from "./credentials";
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
  /**
   * Which addresses may be called; default: the operator's, from MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS
   * and MODELROLLOUT_PROMETHEUS_DENIED (read again when they change).
   */
  addressPolicy?: AddressPolicy;
}

export type PrometheusErrorKind =
  /** Not an http(s) URL. */
  | "invalid-address"
  /** Refused by the address policy (or the policy's variables are invalid); nothing was sent. */
  | "forbidden-address"
  | "network"
  | "timeout"
  /** An HTTP status other than 2xx without a Prometheus API error body. */
  | "http"
  /** Prometheus answered `status: "error"`. */
  | "prometheus"
  /** 2xx, but not a scalar or instant vector Prometheus API response. */
  | "bad-response";

/** Prometheus' documented errorType values (the only reply text kept in an error). */
export const PROMETHEUS_ERROR_TYPES: readonly string[] = [
  "bad_data",
  "execution",
  "timeout",
  "canceled",
  "internal",
  "unavailable",
  "not_found",
];

/**
 * Whether retrying alone cannot fix a failure (a person must change the spec, a Secret or the
 * operator's policy). Permanent: the address (invalid, refused by policy), errorType bad_data /
 * not_found, HTTP 3xx (redirects are not followed), 4xx other than 408 and 429 (400 bad request,
 * 401/403 credentials, 404 wrong path, ...), a 2xx that is not a usable Prometheus answer (wrong
 * address, or a range vector / histogram query). Transient: network errors, timeouts, 408, 429,
 * 5xx and errorType execution / timeout / canceled / internal / unavailable.
 */
function isPermanent(kind: PrometheusErrorKind, status?: number, errorType?: string): boolean {
  switch (kind) {
    case "invalid-address":
    case "forbidden-address":
    case "bad-response":
      return true;
    case "network":
    case "timeout":
      return false;
    case "prometheus":
      if (errorType === "bad_data" || errorType === "not_found") return true;
      if (errorType !== undefined) return false;
  }
  if (status === undefined) return false;
  if (status >= 300 && status < 400) return true;
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function shownAddress(address: string): string {
  let shown = address;
  try {
    const url = new URL(address);
    if (url.username || url.password) {
      url.username = "";
      url.password = "";
      shown = url.href.replace("://", "://***@");
    }
  } catch {
    // not a URL: shown as given
  }
  return shown.length > 200 ? shown.slice(0, 200) + "…" : shown;
}

export class PrometheusError extends Error {
  readonly kind: PrometheusErrorKind;
  /** The address as shown in messages (credentials in it replaced by ***). */
  readonly address: string;
  readonly query: string;
  /** HTTP status, when a response arrived. */
  readonly status?: number;
  /** Prometheus' errorType, when it sent one of PROMETHEUS_ERROR_TYPES. */
  readonly errorType?: string;
  /** Retrying alone will not fix it (see isPermanentPrometheusError). */
  readonly permanent: boolean;
  constructor(
    kind: PrometheusErrorKind,
    detail: string,
    ctx: { address: string; query: string; status?: number; errorType?: string; cause?: unknown },
  ) {
    const address = shownAddress(ctx.address);
    const query = ctx.query.length > 300 ? ctx.query.slice(0, 300) + "…" : ctx.query;
    super(`Prometheus ${address}: ${detail}${query ? ` (query: ${query})` : ""}`, {
      cause: ctx.cause,
    });
    this.name = "PrometheusError";
    this.kind = kind;
    this.address = address;
    this.query = ctx.query;
    this.status = ctx.status;
    this.errorType = ctx.errorType;
    this.permanent = isPermanent(kind, ctx.status, ctx.errorType);
  }
}

/** A PrometheusError that retrying alone will not fix (config: address, query, credentials). */
export function isPermanentPrometheusError(err: unknown): err is PrometheusError {
  return err instanceof PrometheusError && err.permanent;
}

/**
 * A gate query failure that retrying alone will not fix: a permanent PrometheusError, or a
 * GateCredentialsError (the referenced Secret is not labelled for gates, or lacks the key).
 */
export function isPermanentGateError(err: unknown): err is PrometheusError | GateCredentialsError {
  return isPermanentPrometheusError(err) || err instanceof GateCredentialsError;
}

/** Client options from a provider spec and the Secret values the reconciler read. */
export function clientOptionsFor(
  provider: ProviderSpec,
  secrets: { bearerToken?: string; caPem?: string } = {},
  addressPolicy?: AddressPolicy,
): PrometheusClientOptions {
  return {
    address: provider.address,
    timeoutMs: provider.timeout ? durationMs(provider.timeout) : DEFAULT_TIMEOUT_MS,
    bearerToken: secrets.bearerToken,
    caPem: secrets.caPem,
    ...(addressPolicy ? { addressPolicy } : {}),
  };
}

/** Sample values are strings: "1.5", "NaN", "+Inf", "-Inf". Errors never quote the reply. */
export function parseSampleValue(text: unknown): number {
  if (typeof text !== "string") throw new Error(`sample value is a ${typeof text}, not a string`);
  const value = parsePrometheusFloat(text);
  if (value === undefined) {
    throw new Error(`sample value is not a number (expected e.g. "1.5", "NaN", "+Inf")`);
  }
  return value;
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
    case "string":
      throw new Error(
        'unsupported result type "string"; a gate needs an instant vector or a scalar',
      );
    default:
      throw new Error("unsupported result type; a gate needs an instant vector or a scalar");
  }
}

/** Thrown by the connect-time lookup when no address a host name resolves to may be used. */
class AddressRefusedError extends Error {
  readonly verdict: AddressRefusal;
  constructor(verdict: AddressRefusal) {
    super(verdict.reason);
    this.name = "AddressRefusedError";
    this.verdict = verdict;
  }
}

/** dns.lookup that hands the socket only addresses the policy allows (checked = connected to). */
function policyLookup(policy: AddressPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, "");
      const { allowed, refused } = checkResolvedAddresses(
        hostname,
        addresses.map(a => a.address),
        policy,
      );
      const kept = addresses.filter(a => allowed.includes(a.address));
      if (!kept.length) return callback(new AddressRefusedError(refused!), "");
      if (options.all) callback(null, kept);
      else callback(null, kept[0].address, kept[0].family);
    });
  };
}

// One Agent per (policy, CA bundle): TLS settings and the connect-time address check live on the
// dispatcher, and connections are reused.
const agents = new Map<string, Agent>();
function dispatcherFor(policy: AddressPolicy, caPem: string | undefined): Dispatcher {
  const key = `${policy.key}\n${caPem ?? ""}`;
  let agent = agents.get(key);
  if (!agent) {
    if (agents.size >= 16) {
      const [oldestKey, oldest] = agents.entries().next().value as [string, Agent];
      agents.delete(oldestKey);
      void oldest.close().catch(() => undefined);
    }
    agent = new Agent({
      connect: { ...(caPem ? { ca: caPem } : {}), lookup: policyLookup(policy) },
    });
    agents.set(key, agent);
  }
  return agent;
}

// The operator's policy, read again when its variables change.
let envPolicy:
  | { text: string; policy?: AddressPolicy; error?: AddressPolicyConfigError }
  | undefined;
function operatorPolicy(): AddressPolicy {
  const text = JSON.stringify([process.env[ALLOWED_HOSTS_ENV], process.env[DENIED_ENV]]);
  if (envPolicy?.text !== text) {
    try {
      envPolicy = { text, policy: addressPolicyFromEnv() };
    } catch (err) {
      if (!(err instanceof AddressPolicyConfigError)) throw err;
      envPolicy = { text, error: err };
    }
  }
  if (envPolicy.error) throw envPolicy.error;
  return envPolicy.policy!;
}

/** Close the cached TLS agents (tests, shutdown). */
export async function closePrometheusAgents(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map(a => a.close()));
}

function refusal(verdict: AddressRefusal): string {
  return `address refused by the operator's address policy: ${verdict.reason}; ${verdict.fix}`;
}

/**
 * What the policy says about an address before anything is sent (no DNS lookup, no request):
 * invalid-address or forbidden-address PrometheusError, or undefined when it may be tried (a host
 * name's addresses are still checked when connecting). For checking a spec before traffic moves.
 */
export function prometheusAddressProblem(
  address: string,
  addressPolicy?: AddressPolicy,
): PrometheusError | undefined {
  const checked = checkAddress(address, addressPolicy);
  if ("policy" in checked) return undefined;
  return new PrometheusError(checked.kind, checked.detail, {
    address,
    query: "",
    cause: checked.cause,
  });
}

type AddressCheck =
  | { url: URL; policy: AddressPolicy }
  | { kind: PrometheusErrorKind; detail: string; cause?: unknown };

function checkAddress(address: string, addressPolicy?: AddressPolicy): AddressCheck {
  let url: URL;
  try {
    url = queryUrl(address);
  } catch (err) {
    return {
      kind: "invalid-address",
      detail: `invalid address: ${describeCause(err)}`,
      cause: err,
    };
  }
  let policy: AddressPolicy;
  try {
    policy = addressPolicy ?? operatorPolicy();
  } catch (err) {
    return {
      kind: "forbidden-address",
      detail: `the operator's address policy is invalid, so no address is allowed: ${(err as Error).message}`,
      cause: err,
    };
  }
  const verdict = checkUrl(url, policy);
  return verdict.allowed
    ? { url, policy }
    : { kind: "forbidden-address", detail: refusal(verdict) };
}

/** The AddressRefusedError somewhere in an error's causes. */
function refusedIn(err: unknown, depth = 0): AddressRefusedError | undefined {
  if (err instanceof AddressRefusedError) return err;
  if (depth > 4 || typeof err !== "object" || err === null) return undefined;
  const e = err as { cause?: unknown; errors?: unknown[] };
  for (const inner of [e.cause, ...(Array.isArray(e.errors) ? e.errors : [])]) {
    const found = refusedIn(inner, depth + 1);
    if (found) return found;
  }
  return undefined;
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

/** A local error's description (Node's or undici's words, never reply bytes), bounded. */
function describeCause(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code;
  let message = e?.message ?? String(err);
  if (message.length > 300) message = message.slice(0, 300) + "…";
  return code && NETWORK_CODES[code] ? `${NETWORK_CODES[code]} (${code}): ${message}` : message;
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

  const checked = checkAddress(address, options.addressPolicy);
  if (!("policy" in checked)) throw fail(checked.kind, checked.detail, { cause: checked.cause });
  const { url, policy } = checked;
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
      dispatcher: dispatcherFor(policy, options.caPem),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    status = response.statusCode;
    text = await readBody(response.body);
  } catch (err) {
    const refused = refusedIn(err);
    if (refused) throw fail("forbidden-address", refusal(refused.verdict), { cause: err });
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
