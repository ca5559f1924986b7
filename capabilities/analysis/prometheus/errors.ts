// A failed gate query, and whether retrying alone can fix it. Nothing of a reply's body ever goes
// into an error message (they end up in status and Events, readable by whoever may read the
// ModelRollout): only the HTTP status, Prometheus' errorType when it is one of the documented ones,
// and our own description.
import { GateCredentialsError } from "../credentials";

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

/** How the client builds a PrometheusError for the query it is running. */
export type QueryFailure = (
  kind: PrometheusErrorKind,
  detail: string,
  extra?: { status?: number; errorType?: string; cause?: unknown },
) => PrometheusError;

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "DNS lookup failed",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  UND_ERR_SOCKET: "socket error",
};

/** A local error's description (Node's or undici's words, never reply bytes), bounded. */
export function describeCause(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code;
  let message = e?.message ?? String(err);
  if (message.length > 300) message = message.slice(0, 300) + "…";
  return code && NETWORK_CODES[code] ? `${NETWORK_CODES[code]} (${code}): ${message}` : message;
}
