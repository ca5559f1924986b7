// The webhook URLs of spec.notifications: each from a key of a Secret in the rollout's namespace
// that opts in with NOTIFICATION_WEBHOOK_LABEL=true, and allowed by the operator's address policy
// (the one Prometheus addresses go through: link-local and cloud metadata refused by default).
// A URL is a credential (Slack's carries its token): it never goes into status, Events or logs.
import { K8s, kind } from "kubernetes-fluent-client";
import { checkSecretRef, checkUrl } from "../../analysis";
import { operatorPolicy, refusal } from "../../analysis/prometheus/connection";
import { apiFailure } from "../../api-failure";
import type { NotificationSpec } from "../types";

/** The label a Secret needs (value "true") before the operator reads a webhook URL from it. */
export const NOTIFICATION_WEBHOOK_LABEL = "rollouts.inference.dev/notification-webhook";

export interface Webhook {
  name: string;
  url: string;
  format?: string;
}

export interface ResolvedWebhooks {
  usable: Map<string, Webhook>;
  /** By notification name: why it cannot be used, naming the Secret and the fix. */
  problems: Record<string, { reason: string; message: string }>;
}

type SecretLike = { metadata?: { labels?: Record<string, string> }; data?: Record<string, string> };
type Problem = { reason: string; message: string };

/** The URL in `secret` (already read) for `ref`, or what is wrong with it. */
export function webhookUrlFrom(
  secret: SecretLike,
  namespace: string,
  ref: { name: string; key: string },
): { url: string } | { problem: Problem } {
  const where = `Secret ${namespace}/${ref.name}`;
  if (secret.metadata?.labels?.[NOTIFICATION_WEBHOOK_LABEL] !== "true") {
    return {
      problem: {
        reason: "NotificationSecretNotLabelled",
        message:
          `${where} is not labelled ${NOTIFICATION_WEBHOOK_LABEL}=true, so the operator does not read ` +
          `it for a webhook; if it holds the webhook URL, label it: kubectl -n ${namespace} label secret ` +
          `${ref.name} ${NOTIFICATION_WEBHOOK_LABEL}=true`,
      },
    };
  }
  const value = secret.data?.[ref.key];
  if (value === undefined) {
    return {
      problem: {
        reason: "NotificationSecretKeyMissing",
        message: `${where} has no key ${JSON.stringify(ref.key)}; fix urlSecretRef.key or add the key to the Secret`,
      },
    };
  }
  const text = Buffer.from(value, "base64").toString("utf8").trim();
  const invalid: Problem = {
    reason: "NotificationURLInvalid",
    message: `key ${ref.key} of ${where} is not an http:// or https:// URL; put the webhook URL there`,
  };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { problem: invalid };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return { problem: invalid };
  let verdict;
  try {
    verdict = checkUrl(url, operatorPolicy());
  } catch (err) {
    verdict = {
      allowed: false as const,
      reason: (err as Error).message,
      fix: "fix the operator's address policy",
    };
  }
  if (!verdict.allowed) {
    return {
      problem: {
        reason: "NotificationURLRefused",
        message: `the URL in key ${ref.key} of ${where}: ${refusal(verdict)}`,
      },
    };
  }
  return { url: url.toString() };
}

/** Reads and checks the Secrets of `notifications` (one GET per Secret). Never throws. */
export async function resolveWebhooks(
  namespace: string,
  notifications: readonly NotificationSpec[],
): Promise<ResolvedWebhooks> {
  const secrets = new Map<string, Promise<SecretLike>>();
  const read = (name: string) => {
    if (!secrets.has(name))
      secrets.set(name, K8s(kind.Secret).InNamespace(namespace).Get(name) as Promise<SecretLike>);
    return secrets.get(name)!;
  };
  const resolved: ResolvedWebhooks = { usable: new Map(), problems: {} };
  for (const n of notifications) {
    const ref = n.urlSecretRef;
    try {
      checkSecretRef(namespace, ref); // before the name goes into a request path
      const found = webhookUrlFrom(await read(ref.name), namespace, ref);
      if ("url" in found)
        resolved.usable.set(n.name, { name: n.name, url: found.url, format: n.format });
      else resolved.problems[n.name] = found.problem;
    } catch (err) {
      resolved.problems[n.name] = secretReadProblem(err, namespace, ref.name);
    }
  }
  return resolved;
}

function secretReadProblem(err: unknown, namespace: string, name: string): Problem {
  const failure = apiFailure(err);
  if (failure.status === 404) {
    return {
      reason: "NotificationSecretNotFound",
      message:
        `Secret ${namespace}/${name} not found; create it with the webhook URL and the label ` +
        `${NOTIFICATION_WEBHOOK_LABEL}=true, or fix urlSecretRef`,
    };
  }
  return {
    reason: "NotificationSecretUnreadable",
    message: `cannot read Secret ${namespace}/${name}: ${failure.message}`,
  };
}
