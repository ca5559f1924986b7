// Flow control: when every endpoint already runs as many requests as it can (vLLM
// --max-num-seqs), a new request waits in the picker instead of in one pod's queue, and leaves
// for the first endpoint that frees a running slot. One central queue in front of all pods
// (M/G/c) instead of a queue per pod (c × M/G/k): a request never waits behind a long
// generation on one pod while another pod finishes first. Like the upstream EPP's flow-control
// layer, it holds requests only while the pool is saturated. Pure: the caller owns the clock and
// calls `FlowQueue.drain` when capacity may have changed.

import { loraAffinityScorer, loraScores } from "./plugins/lora-affinity-scorer";
import { SchedulingContext, SchedulingRequest } from "./scheduler";
import { EndpointView } from "./types";

export interface FlowControlConfig {
  enabled: boolean;
  /**
   * Requests one endpoint runs at once (vLLM --max-num-seqs). 0: learnt per endpoint from its
   * scrapes (the most it ran while requests waited there); until then nothing is held.
   */
  maxRunning: number;
  /** A request held this long gets 429: the queue is bounded in time as well as in size. */
  maxWaitMs: number;
  /**
   * The same for a sheddable request. Held ones leave after every critical one, so while
   * critical traffic alone fills the pool they would wait the whole `maxWaitMs`; a shorter
   * bound keeps the latency of the sheddable requests that are admitted.
   */
  sheddableMaxWaitMs: number;
  /**
   * Requests held at most: a new one then gets 429 (a critical one first displaces the newest
   * held sheddable one, which gets 429 instead).
   */
  maxQueue: number;
  /**
   * Delay scheduling (Zaharia et al., EuroSys 2010, for data locality): a request whose prompt
   * prefix is cached on endpoints that are all busy waits up to this long for a slot on one of
   * them, rather than start at once elsewhere and compute the prefix again. 0: never waits.
   */
  localityWaitMs: number;
}

export const defaultFlowControlConfig: FlowControlConfig = {
  enabled: true,
  maxRunning: 0,
  maxWaitMs: 10_000,
  sheddableMaxWaitMs: 250,
  maxQueue: 1024,
  localityWaitMs: 200,
};

/**
 * Running requests one endpoint takes, or undefined while unknown: the flag, else the most any
 * endpoint was seen running while requests waited there. The pods of one pool run the same
 * server with the same flags; and a pod that never queued must not look free forever (with flow
 * control it would never queue).
 */
export function runningCapacity(
  endpoints: readonly EndpointView[],
  config: FlowControlConfig,
): number | undefined {
  if (config.maxRunning > 0) return config.maxRunning;
  let learnt: number | undefined;
  for (const e of endpoints) {
    if (e.learntMaxRunning !== undefined && e.learntMaxRunning > (learnt ?? 0)) {
      learnt = e.learntMaxRunning;
    }
  }
  return learnt;
}

/**
 * Requests at the endpoint now. Our own in-flight count is exact for our traffic; the scrape
 * (plus what we sent and saw finish since) also counts other senders' requests. Unlike the queue
 * scorer's estimate, requests that finished since the scrape are taken off at once: a slot that
 * frees must be refilled now, not one scrape later.
 */
export function currentLoad(e: EndpointView): number {
  const m = e.metrics;
  if (!m) return e.inflight;
  const scraped = m.waiting + m.running + e.dispatchedSinceScrape - (e.completedSinceScrape ?? 0);
  return Math.max(e.inflight, scraped);
}

/**
 * Endpoints that can start this request now: a free running slot (or capacity unknown), and for
 * a LoRA adapter, a slot for it (every adapter slot busy with other adapters means waiting
 * there for one to drain).
 */
export function endpointsWithFreeSlot(
  request: SchedulingRequest,
  endpoints: readonly EndpointView[],
  config: FlowControlConfig,
  ctx: SchedulingContext,
): EndpointView[] {
  const capacity = runningCapacity(endpoints, config);
  const free =
    capacity === undefined ? [...endpoints] : endpoints.filter(e => currentLoad(e) < capacity);
  if (!request.adapter || free.length === 0) return free;
  const lora = loraAffinityScorer.score(request, free, ctx);
  // Without LoRA info (a server that does not report it) nothing is known to block the adapter.
  return free.filter((e, i) => !e.metrics?.lora || lora[i] > loraScores.full);
}

/**
 * Where a request may start now. `free`: endpoints with a slot for it; `preferred`: those that
 * hold its prefix (the scheduler's affinity). Free preferred endpoints first; when every
 * preferred one is busy, the request waits (undefined) until it has waited `localityWaitMs`,
 * then takes any free endpoint. Without a preference, any free endpoint.
 */
export function localityChoice(
  free: readonly EndpointView[],
  preferred: readonly EndpointView[],
  waitedMs: number,
  config: FlowControlConfig,
): readonly EndpointView[] | undefined {
  if (free.length === 0 || preferred.length === 0) return free;
  const local = free.filter(e => preferred.includes(e));
  if (local.length > 0) return local;
  return waitedMs >= config.localityWaitMs ? free : undefined;
}

export interface HeldRequest<T> {
  readonly item: T;
  readonly heldSinceMs: number;
  readonly sheddable: boolean;
}

/**
 * The queue itself: first come, first served among requests an endpoint can take, critical
 * (non-sheddable) ones before sheddable ones (the EPP's strict priority between bands).
 */
export class FlowQueue<T> {
  private held: HeldRequest<T>[] = [];
  private sheddableCount = 0;

  get size(): number {
    return this.held.length;
  }

  get sheddable(): number {
    return this.sheddableCount;
  }

  hold(item: T, nowMs: number, sheddable = false): HeldRequest<T> {
    const h = { item, heldSinceMs: nowMs, sheddable };
    this.held.push(h);
    if (sheddable) this.sheddableCount++;
    return h;
  }

  /** Takes the newest held sheddable request out (to make room for a critical one). */
  displaceSheddable(): T | undefined {
    for (let i = this.held.length - 1; i >= 0; i--) {
      if (!this.held[i].sheddable) continue;
      const [h] = this.held.splice(i, 1);
      this.sheddableCount--;
      return h.item;
    }
    return undefined;
  }

  /** Takes a request out (its client left); false when it had already left the queue. */
  remove(h: HeldRequest<T>): boolean {
    const i = this.held.indexOf(h);
    if (i < 0) return false;
    this.held.splice(i, 1);
    if (h.sheddable) this.sheddableCount--;
    return true;
  }

  /**
   * Offers the held requests to `place`, critical ones oldest first, then sheddable ones oldest
   * first; `overdue` is true for one held at least `maxWaitMs` (a sheddable one:
   * `sheddableMaxWaitMs`), which must leave (placed or refused). Requests `place` accepts leave the queue. A request that cannot start anywhere
   * does not block younger ones that can (another adapter, say).
   */
  drain(
    nowMs: number,
    maxWaitMs: number,
    place: (item: T, overdue: boolean, heldMs: number) => boolean,
    sheddableMaxWaitMs = maxWaitMs,
  ): void {
    if (this.held.length === 0) return;
    const leaves = new Set<HeldRequest<T>>();
    for (const sheddable of [false, true]) {
      for (const h of this.held) {
        if (h.sheddable !== sheddable) continue;
        const heldMs = nowMs - h.heldSinceMs;
        const bound = sheddable ? sheddableMaxWaitMs : maxWaitMs;
        if (place(h.item, heldMs >= bound, heldMs)) leaves.add(h);
      }
      if (this.sheddableCount === 0) break;
    }
    if (leaves.size === 0) return;
    this.held = this.held.filter(h => !leaves.has(h));
    for (const h of leaves) if (h.sheddable) this.sheddableCount--;
  }
}
