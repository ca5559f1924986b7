// Instant queries against Prometheus' HTTP API (POST /api/v1/query, form-encoded) on undici.
// Every failure — address, network, timeout, HTTP status, Prometheus `status: "error"`, a body
// that is not a scalar or instant vector — is a PrometheusError naming the address, the query and
// the cause, which the gate records as an Error measurement. errors.ts: the errors and which are
// permanent; connection.ts: the address policy and connections; response.ts: reading the reply.

import { request, type Dispatcher } from "undici";
import { durationMs } from "../../duration";
import type { AddressPolicy } from "../address-policy";
import type { ProviderSpec, QueryResult } from "../types";
import { checkAddress, dispatcherFor, refusal, refusedIn } from "./connection";
import { PrometheusError, describeCause, type QueryFailure } from "./errors";
import { resultOfReply } from "./response";

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
  const fail: QueryFailure = (kind, detail, extra = {}) =>
    new PrometheusError(kind, detail, { address, query, ...extra });

  const checked = checkAddress(address, options.addressPolicy);
  if (!("policy" in checked)) throw fail(checked.kind, checked.detail, { cause: checked.cause });
  const { status, text } = await postQuery(options, checked.url, checked.policy, query, at, fail);
  return resultOfReply(status, text, checked.url, fail);
}

/** POST the query form; a network failure, a timeout or a refused address is thrown as `fail(...)`. */
async function postQuery(
  options: PrometheusClientOptions,
  url: URL,
  policy: AddressPolicy,
  query: string,
  at: Date | undefined,
  fail: QueryFailure,
): Promise<{ status: number; text: string }> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const form = new URLSearchParams({ query, timeout: `${timeoutMs}ms` });
  if (at) form.set("time", (at.getTime() / 1000).toFixed(3));
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
    accept: "application/json",
  };
  if (options.bearerToken) headers.authorization = `Bearer ${options.bearerToken.trim()}`;

  const signal = AbortSignal.timeout(timeoutMs);
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
    return { status: response.statusCode, text: await readBody(response.body) };
  } catch (err) {
    const refused = refusedIn(err);
    if (refused) throw fail("forbidden-address", refusal(refused.verdict), { cause: err });
    const code = (err as { code?: string })?.code ?? "";
    if (signal.aborted || code.endsWith("_TIMEOUT")) {
      throw fail("timeout", `no answer within ${timeoutMs} ms`, { cause: err });
    }
    throw fail("network", describeCause(err), { cause: err });
  }
}
