// Delivery of notifications to webhooks, in the background: the reconciler hands a transition over
// after its status write and goes on; nothing here can delay or fail a reconcile. Bounded (beyond
// MAX_PENDING waiting, new ones are dropped and reported), in order per rollout and webhook, a few
// attempts with backoff and a timeout each. A transition is queued once, after its status is
// stored: a receiver may see one twice (a retry after an answer that was lost; deduplicate on
// `id`), and a crash of the operator loses what was still queued (nothing is re-sent from status,
// so a restarted operator never repeats old transitions).
import pLimit from "p-limit";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { checkUrl } from "../../analysis/address-policy";
import { describeCause } from "../../analysis/prometheus/errors";
import {
  dispatcherFor,
  operatorPolicy,
  refusal,
  refusedIn,
} from "../../analysis/prometheus/connection";
import { payloadFor, type NotifiedRollout, type NotifyAction } from "./payload";
import type { Webhook } from "./webhooks";

/** Attempts per notification, the timeout of each and the waits between them (~27 s in all). */
export const ATTEMPTS = 3;
export const ATTEMPT_TIMEOUT_MS = 5_000;
export const BACKOFF_MS: readonly number[] = [2_000, 10_000];
/** Notifications waiting or in flight, over all rollouts; beyond, new ones are dropped. */
export const MAX_PENDING = 1_000;
/** Requests in flight at once, over all webhooks. */
const CONCURRENT_REQUESTS = 8;

export interface Delivery {
  rollout: NotifiedRollout;
  webhook: Webhook;
  action: NotifyAction;
}

export type Outcome =
  | { result: "Delivered"; attempts: number }
  | { result: "Failed" | "Dropped"; attempts: number; message: string };

/** A failed attempt; `retry`: whether another attempt may succeed. */
export class AttemptError extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
  ) {
    super(message);
  }
}

/** Whether an HTTP answer is worth another attempt: 5xx, 429 and 408 (as Slack and GitHub advise). */
export function retryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** POSTs `body` to the webhook; resolves on 2xx, throws AttemptError otherwise. */
export async function postOnce(webhook: Webhook, body: string, timeoutMs: number): Promise<void> {
  // Checked again before each attempt: the policy may have changed, and an IP literal is connected
  // to without the lookup that checks host names' addresses.
  const policy = operatorPolicy();
  const verdict = checkUrl(new URL(webhook.url), policy);
  if (!verdict.allowed) throw new AttemptError(refusal(verdict), false);
  const signal = AbortSignal.timeout(timeoutMs);
  let status: number;
  try {
    const response = await request(webhook.url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "modelrollout-operator" },
      body,
      signal,
      dispatcher: dispatcherFor(policy, undefined),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    status = response.statusCode;
    await response.body.dump();
  } catch (err) {
    const refused = refusedIn(err);
    if (refused) throw new AttemptError(refusal(refused.verdict), false);
    const code = (err as { code?: string })?.code ?? "";
    if (signal.aborted || code.endsWith("_TIMEOUT"))
      throw new AttemptError(`no answer within ${timeoutMs} ms`, true);
    throw new AttemptError(describeCause(err), true);
  }
  if (status < 200 || status >= 300)
    throw new AttemptError(`HTTP ${status}`, retryableStatus(status));
}

export interface DeliveryOptions {
  attempts?: number;
  timeoutMs?: number;
  backoffMs?: readonly number[];
  maxPending?: number;
  /** One attempt (default: postOnce). */
  post?: (webhook: Webhook, body: string, timeoutMs: number) => Promise<void>;
}

export class NotificationDelivery {
  readonly #slots = pLimit(CONCURRENT_REQUESTS);
  readonly #chains = new Map<string, Promise<void>>();
  readonly #options: Required<DeliveryOptions>;
  #pending = 0;

  constructor(options: DeliveryOptions = {}) {
    this.#options = {
      attempts: options.attempts ?? ATTEMPTS,
      timeoutMs: options.timeoutMs ?? ATTEMPT_TIMEOUT_MS,
      backoffMs: options.backoffMs ?? BACKOFF_MS,
      maxPending: options.maxPending ?? MAX_PENDING,
      post: options.post ?? postOnce,
    };
  }

  /** Queues one notification; returns at once. `done` hears how it ended (never throws into it). */
  enqueue(delivery: Delivery, done: (outcome: Outcome) => void): void {
    const report = (outcome: Outcome) => {
      try {
        done(outcome);
      } catch {
        // reporting is best-effort; the delivery itself is over
      }
    };
    if (this.#pending >= this.#options.maxPending) {
      const message = `more than ${this.#options.maxPending} notifications waiting; this one was dropped`;
      report({ result: "Dropped", attempts: 0, message });
      return;
    }
    this.#pending++;
    // In order per rollout and webhook: a transition waits for the one before it.
    const key = `${delivery.rollout.uid}/${delivery.webhook.name}`;
    const next = (this.#chains.get(key) ?? Promise.resolve())
      .then(() => this.#deliver(delivery))
      .then(report, err => report({ result: "Failed", attempts: 0, message: describeCause(err) }))
      .finally(() => this.#pending--);
    this.#chains.set(key, next);
    void next.finally(() => {
      if (this.#chains.get(key) === next) this.#chains.delete(key);
    });
  }

  async #deliver({ rollout, webhook, action }: Delivery): Promise<Outcome> {
    const { attempts, timeoutMs, backoffMs, post } = this.#options;
    const body = JSON.stringify(payloadFor(webhook.format, rollout, action, webhook.name));
    let last = "";
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        await this.#slots(() => post(webhook, body, timeoutMs));
        return { result: "Delivered", attempts: attempt };
      } catch (err) {
        last = err instanceof AttemptError ? err.message : describeCause(err);
        const retry = err instanceof AttemptError ? err.retry : true;
        if (!retry || attempt === attempts) {
          return {
            result: "Failed",
            attempts: attempt,
            message: `${attempt} attempt(s), last: ${last}`,
          };
        }
      }
      await sleep(backoffMs[Math.min(attempt - 1, backoffMs.length - 1)] ?? 0);
    }
    return { result: "Failed", attempts, message: last };
  }

  /** Notifications waiting or in flight. */
  get pending(): number {
    return this.#pending;
  }

  /** Resolves when everything queued so far has ended. */
  async flushed(): Promise<void> {
    while (this.#chains.size) await Promise.all([...this.#chains.values()]);
  }
}
