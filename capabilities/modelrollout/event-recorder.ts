// Kubernetes Events of the rollouts, posted in the background, as client-go's EventRecorder does:
// Events are best-effort records for `kubectl describe`, not state. Posting them off the reconcile
// path keeps a wave of due steps from waiting behind half its own writes (Events were 8 of a
// rollout's 17 writes): the weight and status writes go first, the Events follow within moments,
// each stamped with the time of its transition, so describe still lists them in order. A crash
// can lose the Events of the last moments, never a step.
import { K8s, kind } from "kubernetes-fluent-client";
import pLimit from "p-limit";
import { Log } from "pepr";
import type { Action } from "./engine";
import { apiFailure } from "./targets";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";

type EventAction = Extract<Action, { type: "event" }>;

/** Posts at once; more wait in order. */
const CONCURRENT_POSTS = 4;
/** Beyond this many waiting, new Events are dropped (and counted in the log), as client-go drops. */
const MAX_PENDING = 10_000;

export function eventFor(mro: ModelRollout, action: EventAction, at: Date): kind.CoreEvent {
  const name = mro.metadata!.name!;
  const namespace = mro.metadata!.namespace!;
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      name: `${name}.${at.getTime().toString(16)}${Math.random().toString(16).slice(2, 6)}`,
      namespace,
    },
    involvedObject: {
      apiVersion: mro.apiVersion,
      kind: "ModelRollout",
      name,
      namespace,
      uid: mro.metadata!.uid,
      resourceVersion: mro.metadata!.resourceVersion,
    },
    reason: action.reason,
    message: action.message,
    type: action.eventType,
    source: { component: "modelrollout-operator" },
    reportingComponent: "modelrollout-operator",
    reportingInstance: process.env.HOSTNAME ?? "local",
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
  } as kind.CoreEvent;
}

/** An Event waits at most this long for the reconciles to go idle. */
const MAX_DEFERRAL_MS = 2_000;

export interface EventRecorderOptions {
  /** Posts one Event (default: create it through the apiserver). */
  post?: (event: kind.CoreEvent) => Promise<unknown>;
  /**
   * Resolves when no reconcile waits for a slot. Events yield to them (up to MAX_DEFERRAL_MS):
   * in a wave of due steps the apiserver's time goes to the weight and status writes first.
   */
  reconcilesIdle?: () => Promise<void>;
}

export class EventRecorder {
  readonly #posts = pLimit(CONCURRENT_POSTS);
  readonly #post: (event: kind.CoreEvent) => Promise<unknown>;
  readonly #reconcilesIdle: () => Promise<void>;
  #dropped = 0;

  constructor(options: EventRecorderOptions = {}) {
    this.#post = options.post ?? (e => K8s(kind.CoreEvent).Create(e));
    this.#reconcilesIdle = options.reconcilesIdle ?? (() => Promise.resolve());
  }

  async #yieldThenPost(event: kind.CoreEvent): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#reconcilesIdle(),
      new Promise<void>(resolve => (timer = setTimeout(resolve, MAX_DEFERRAL_MS))),
    ]);
    clearTimeout(timer);
    return this.#post(event);
  }

  /** Queues the Events of one reconcile; returns at once. */
  record(mro: ModelRollout, actions: EventAction[], at: Date): void {
    for (const action of actions) {
      if (this.#posts.pendingCount >= MAX_PENDING) {
        if (this.#dropped++ % 1000 === 0)
          Log.warn(
            { dropped: this.#dropped },
            "Events are arriving faster than the apiserver takes them; dropping some",
          );
        continue;
      }
      const event = eventFor(mro, action, at);
      void this.#posts(() => this.#yieldThenPost(event)).catch(err =>
        Log.warn(
          { rollout: `${event.metadata?.namespace}/${mro.metadata?.name}`, reason: action.reason },
          `could not record Event ${action.reason} for ModelRollout ${event.metadata?.namespace}/${mro.metadata?.name}: ${apiFailure(err).message}`,
        ),
      );
    }
  }

  /** Resolves when every queued Event has been posted (or failed). */
  async flushed(): Promise<void> {
    while (this.#posts.activeCount + this.#posts.pendingCount > 0) {
      await this.#posts(() => Promise.resolve());
    }
  }
}
