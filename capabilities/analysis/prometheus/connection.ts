// Which Prometheus addresses may be called, and the connections to them. The address must pass the
// operator's address policy (address-policy.ts) before anything is sent, and every address a host
// name resolves to is checked again when connecting (the checked address is the one connected to,
// so DNS rebinding cannot slip past the check). Redirects are never followed (undici's default).
import * as dns from "node:dns";
import type { LookupFunction } from "node:net";
import { Agent, type Dispatcher } from "undici";
import {
  ALLOWED_HOSTS_ENV,
  AddressPolicyConfigError,
  addressPolicyFromEnv,
  checkResolvedAddresses,
  checkUrl,
  DENIED_ENV,
  type AddressPolicy,
  type AddressRefusal,
} from "../address-policy";
import { PrometheusError, describeCause, type PrometheusErrorKind } from "./errors";

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
export function dispatcherFor(policy: AddressPolicy, caPem: string | undefined): Dispatcher {
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

// The operator's policy, read again when its variables change (also the probe gate's).
let envPolicy:
  | { text: string; policy?: AddressPolicy; error?: AddressPolicyConfigError }
  | undefined;
/** The operator's address policy (throws AddressPolicyConfigError when its variables are bad). */
export function operatorPolicy(): AddressPolicy {
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

export function refusal(verdict: AddressRefusal): string {
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

export function checkAddress(address: string, addressPolicy?: AddressPolicy): AddressCheck {
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
export function refusedIn(err: unknown, depth = 0): AddressRefusedError | undefined {
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
