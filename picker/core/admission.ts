// Admission: which requests get a fast 429 instead of a place — flow control's bounded queue
// (full, or waited too long), sheddable requests on a saturated pool, and the picker process
// past its own capacity. Pure: the router and the front doors decide with it.
//
// Semantics follow the upstream EPP v1.5.0 (pkg/epp/requestcontrol/admission.go): a sheddable
// request (priority < 0) on a saturated pool and a request refused for queue capacity both get
// InferencePoolResourceExhausted (429). Where the EPP's flow control answers 503 for a request
// whose queue TTL expired, the picker answers 429 too: the cause is the pool's capacity, not an
// unavailable service, and 429 tells a client to back off; 503 stays "no ready endpoint".

import type { RouteFailure } from "./router";
import { pickerError } from "./types";

/** Why a request got a fast 429 instead of a place (labels of modelrollout_picker_rejected_total). */
export type RejectReason =
  /** The held queue is at --flow-max-queue (and holds no sheddable request to displace). */
  | "queue-full"
  /** Held --flow-max-wait-ms (a sheddable one --flow-sheddable-max-wait-ms) without a free slot. */
  | "queue-timeout"
  /** A held sheddable request, displaced by a critical one when the queue was full. */
  | "displaced"
  /** Sheddable, and the pool is saturated (its pods' queues or the picker's held queue). */
  | "sheddable-saturated"
  /** The picker process itself is past its capacity (front doors: event-loop delay, pending). */
  | "picker-overloaded";

export const rejectReasons: readonly RejectReason[] = [
  "queue-full",
  "queue-timeout",
  "displaced",
  "sheddable-saturated",
  "picker-overloaded",
];

/**
 * What happens to a request that cannot start now. The held queue stands in for the pods' own
 * queues (with flow control they stay short), so the pool counts as saturated — as the upstream
 * EPP's saturation detector says when every pod has more than `queueThreshold` waiting — once
 * more than `queueThreshold` requests per ready endpoint are held: a sheddable request then
 * gets 429 at once rather than wait. So does one that would wait longer than its bound
 * (`expectedWaitMs`, see sheddableWaitMs, over `sheddableMaxWaitMs`): a fast 429 now instead of
 * a slow one later. A
 * full queue answers 429 (as the EPP's flow control does, QueueOutcomeRejectedCapacity); a
 * critical request first displaces a held sheddable one.
 */
export function admissionOf(o: {
  sheddable: boolean;
  held: number;
  heldSheddable: number;
  maxQueue: number;
  queueThreshold: number;
  readyEndpoints: number;
  expectedWaitMs: number;
  sheddableMaxWaitMs: number;
}): "hold" | "displace" | RejectReason {
  if (o.sheddable) {
    const saturated =
      o.held >= o.queueThreshold * o.readyEndpoints || o.expectedWaitMs > o.sheddableMaxWaitMs;
    if (saturated) return "sheddable-saturated";
    return o.held < o.maxQueue ? "hold" : "queue-full";
  }
  if (o.held < o.maxQueue) return "hold";
  return o.heldSheddable > 0 ? "displace" : "queue-full";
}

/**
 * The wait of a sheddable request joining `ahead` held ones (ms): held sheddable requests leave
 * after every critical one, so they drain at what the pool takes beyond the critical arrivals
 * (`sparePerSecond`); none spare while requests wait: it would wait without bound.
 */
export function sheddableWaitMs(ahead: number, sparePerSecond: number): number {
  if (ahead === 0) return 0;
  return sparePerSecond > 0 ? ((ahead + 1) * 1000) / sparePerSecond : Infinity;
}

/** Events per second, counted over whole windows of `windowMs` (the last complete one). */
export class RateMeter {
  private windowStartMs = -Infinity;
  private current = 0;
  private previous = 0;

  constructor(private readonly windowMs = 1000) {}

  note(nowMs: number): void {
    this.roll(nowMs);
    this.current++;
  }

  rate(nowMs: number): number {
    this.roll(nowMs);
    return (this.previous * 1000) / this.windowMs;
  }

  private roll(nowMs: number): void {
    const elapsed = nowMs - this.windowStartMs;
    if (elapsed < this.windowMs) return;
    this.previous = elapsed < 2 * this.windowMs ? this.current : 0;
    this.current = 0;
    this.windowStartMs = nowMs;
  }
}

const rejectMessages: Record<RejectReason, string> = {
  "queue-full": "the pool is over capacity: the endpoint picker's queue is full",
  "queue-timeout": "the pool is over capacity: no endpoint freed a slot in time",
  displaced: "the pool is over capacity: a sheddable request made room for a critical one",
  "sheddable-saturated": "the pool is saturated and the request is sheddable",
  "picker-overloaded": "the endpoint picker is over its own capacity",
};

/** A fast 429 (InferencePoolResourceExhausted, as the EPP's flow control answers). */
export function rejection(reason: RejectReason, model = "", targetModel = ""): RouteFailure {
  return {
    ok: false,
    error: pickerError("InferencePoolResourceExhausted", rejectMessages[reason]),
    model,
    targetModel,
    rejected: reason,
  };
}
