// Sends a probe's requests (the only I/O of the probe gate): per side, `requests` POSTs at `rate`
// per second (at most PROBE_LIMITS.concurrency in flight), on undici through the operator's address
// policy (checked before sending and again on every address a host name resolves to), redirects
// never followed. Every answer is read to at most PROBE_LIMITS.maxBodyBytes; what came back is
// recorded as a ProbeAnswer for judge.ts, a refused address is thrown as ProbeRefusedError.
import { request } from "undici";
import pLimit from "p-limit";
import { checkUrl, type AddressPolicy } from "../address-policy";
import { dispatcherFor, operatorPolicy, refusal, refusedIn } from "../prometheus/connection";
import { describeCause } from "../prometheus/errors";
import { ProbeRefusedError } from "./errors";
import { readAnswer } from "./answer";
import type { ProbeAnswer, ProbeObservation, ResolvedProbe, SideRequests } from "./types";
import { PROBE_LIMITS } from "./types";

export interface ProbeRunOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  bearerToken?: string;
  /** Default: the operator's (MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS / _DENIED). */
  addressPolicy?: AddressPolicy;
}

/** The URL, checked against the policy before anything is sent. */
function checkedUrl(text: string, policy: AddressPolicy): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw new ProbeRefusedError(
      `probe url ${JSON.stringify(text)} is not a URL: ${describeCause(err)}`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new ProbeRefusedError(`probe url must be http:// or https://, got ${url.protocol}`);
  const verdict = checkUrl(url, policy);
  if (!verdict.allowed) throw new ProbeRefusedError(`probe url ${url.origin}: ${refusal(verdict)}`);
  return url;
}

async function send(
  side: SideRequests,
  url: URL,
  body: string,
  probe: ResolvedProbe,
  options: ProbeRunOptions & { policy: AddressPolicy },
  prompt: number,
): Promise<ProbeAnswer> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const headers: Record<string, string> = {
    ...side.headers,
    "content-type": "application/json",
    accept: probe.stream ? "text/event-stream" : "application/json",
  };
  if (options.bearerToken) headers.authorization = `Bearer ${options.bearerToken.trim()}`;
  const signal = AbortSignal.timeout(probe.timeoutMs);
  try {
    const response = await request(url, {
      method: "POST",
      headers,
      body,
      signal,
      dispatcher: dispatcherFor(options.policy, undefined),
      headersTimeout: probe.timeoutMs,
      bodyTimeout: probe.timeoutMs,
    });
    const read = await readAnswer(
      response.body,
      probe.stream && response.statusCode < 300,
      elapsed,
    );
    return { prompt, status: response.statusCode, ...read, latencyMs: elapsed() };
  } catch (err) {
    const refused = refusedIn(err);
    if (refused)
      throw new ProbeRefusedError(`probe url ${url.origin}: ${refusal(refused.verdict)}`, {
        cause: err,
      });
    const timedOut =
      signal.aborted || ((err as { code?: string })?.code ?? "").endsWith("_TIMEOUT");
    const error = timedOut ? `no answer within ${probe.timeoutMs} ms` : describeCause(err);
    return { prompt, content: "", latencyMs: elapsed(), error };
  }
}

async function runSide(
  side: SideRequests,
  probe: ResolvedProbe,
  options: ProbeRunOptions & { policy: AddressPolicy },
): Promise<ProbeAnswer[]> {
  const url = checkedUrl(side.url, options.policy);
  const limit = pLimit(PROBE_LIMITS.concurrency);
  const start = performance.now();
  const spacingMs = 1000 / probe.rate;
  return Promise.all(
    side.bodies.map(async (body, i) => {
      // Request i leaves at i / rate seconds, so the side sends `rate` requests per second.
      const wait = start + i * spacingMs - performance.now();
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait));
      return limit(() => send(side, url, body, probe, options, i % probe.prompts));
    }),
  );
}

/** Sends every side's requests (sides in parallel) and returns the answers; throws ProbeRefusedError. */
export async function runProbe(
  probe: ResolvedProbe,
  options: ProbeRunOptions = {},
): Promise<ProbeObservation> {
  let policy: AddressPolicy;
  try {
    policy = options.addressPolicy ?? operatorPolicy();
  } catch (err) {
    throw new ProbeRefusedError(
      `the operator's address policy is invalid, so no address is allowed: ${(err as Error).message}`,
    );
  }
  const all = await Promise.all(
    probe.sides.map(side => runSide(side, probe, { ...options, policy })),
  );
  const observation: ProbeObservation = { canary: [] };
  probe.sides.forEach((side, i) => (observation[side.side] = all[i]));
  return observation;
}
