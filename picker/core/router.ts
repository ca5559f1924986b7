// One decision per request, shared by both front doors (ext_proc and the HTTP proxy):
// parse the body, resolve the public model name, draw the target model (LoRA split, sticky per
// session when asked), schedule an endpoint, and rewrite `model` in the body.

import { RateMeter, RejectReason, admissionOf, rejection, sheddableWaitMs } from "./admission";
import {
  FlowControlConfig,
  FlowQueue,
  endpointsWithFreeSlot,
  localityChoice,
  runningCapacity,
} from "./flow";
import { PrefixConfig, hashPromptBlocks } from "./prefix";
import { ByteSpan, parseInferenceRequest, rewriteModel } from "./request";
import { SaturationConfig, Scheduler, SchedulingContext, SchedulingRequest } from "./scheduler";
import { TrafficSplitter } from "./split";
import { EndpointView, PickerError, PoolView, Rng, pickerError } from "./types";

export interface RouterOptions {
  /** Unknown model names get 404 instead of passing through unchanged. */
  strict: boolean;
  /** Header whose value keeps a session on one target version (lower case); "" disables. */
  sessionHeader: string;
  /** Headers naming the InferenceObjective of a request, first present wins (lower case). */
  objectiveHeaders: string[];
  maxBodyBytes: number;
  prefix: PrefixConfig;
  saturation: SaturationConfig;
  /** Used by `decideOrHold`; absent or disabled: requests are never held. */
  flowControl?: FlowControlConfig;
}

export const defaultObjectiveHeaders = [
  "x-gateway-inference-objective",
  "x-llm-d-inference-objective",
];

import type { Cancellation } from "./cancellation";

export interface IncomingRequest {
  body: Buffer;
  /** Lower-case header lookup; the value of a client's destination header is never used. */
  header(name: string): string | undefined;
  nowMs: number;
}

export interface RouteSuccess {
  ok: true;
  model: string;
  targetModel: string;
  /** The LoRA adapter the request needs (the target of a split), for in-flight accounting. */
  adapter?: string;
  /** Best first; the first is the destination, the next ones fallbacks or retry candidates. */
  endpoints: EndpointView[];
  body: Buffer;
  bodyChanged: boolean;
  stream: boolean;
  sheddable: boolean;
}

export interface RouteFailure {
  ok: false;
  error: PickerError;
  model: string;
  targetModel: string;
  /** Set when flow control or load shedding refused the request (a fast 429). */
  rejected?: RejectReason;
}

export type RouteDecision = RouteSuccess | RouteFailure;

interface PreparedRequest {
  ok: true;
  model: string;
  targetModel: string;
  adapters: boolean;
  stream: boolean;
  body: Buffer;
  modelSpan: ByteSpan;
  scheduling: SchedulingRequest;
}

interface HeldEntry {
  prepared: PreparedRequest;
  resolve: (decision: RouteDecision) => void;
}

export class RequestRouter {
  private readonly held = new FlowQueue<HeldEntry>();
  private heldTotal = 0;
  private readonly rejected = new Map<RejectReason, number>();
  private readonly dispatched = new RateMeter();
  private readonly criticalArrivals = new RateMeter();

  constructor(
    private readonly pool: PoolView,
    private readonly scheduler: Scheduler,
    private readonly splitter: TrafficSplitter,
    private readonly rng: Rng,
    readonly options: RouterOptions,
  ) {}

  decide(req: IncomingRequest): RouteDecision {
    const prepared = this.prepare(req);
    if (!prepared.ok) return prepared;
    return this.counted(this.place(prepared, req.nowMs));
  }

  /**
   * `decide` with flow control: without a free running slot the request is held (or refused,
   * ./admission.ts); `drainHeld`, called whenever capacity may have changed, releases it. An
   * aborted `signal` takes a held request out (it resolves to a 499-style failure).
   */
  decideOrHold(
    req: IncomingRequest,
    signal?: Cancellation,
  ): RouteDecision | Promise<RouteDecision> {
    const prepared = this.prepare(req);
    if (!prepared.ok) return prepared;
    if (!prepared.scheduling.sheddable) this.criticalArrivals.note(req.nowMs);
    const flow = this.options.flowControl;
    if (!flow?.enabled) return this.counted(this.place(prepared, req.nowMs));
    const ready = this.pool.readyEndpoints();
    if (ready.length === 0) return this.place(prepared, req.nowMs); // 503 now, not after holding
    if (this.held.size === 0) {
      const among = this.startable(prepared, ready, 0, this.context(req.nowMs));
      if (among) return this.counted(this.place(prepared, req.nowMs, among));
    }
    // What the pool takes beyond the critical requests arriving: a sheddable one's share.
    const spare = this.dispatched.rate(req.nowMs) - this.criticalArrivals.rate(req.nowMs);
    const admission = admissionOf({
      sheddable: prepared.scheduling.sheddable,
      held: this.held.size,
      heldSheddable: this.held.sheddable,
      maxQueue: flow.maxQueue,
      queueThreshold: this.options.saturation.queueThreshold,
      readyEndpoints: ready.length,
      expectedWaitMs: sheddableWaitMs(this.held.size, spare),
      sheddableMaxWaitMs: flow.sheddableMaxWaitMs,
    });
    if (admission === "displace") {
      const displaced = this.held.displaceSheddable()!;
      displaced.resolve(this.reject("displaced", displaced.prepared));
    } else if (admission !== "hold") {
      return this.reject(admission, prepared);
    }
    // Gone before it could wait: never queued (an abort listener would never fire now).
    if (signal?.aborted) return clientLeft(prepared);
    return new Promise<RouteDecision>(resolve => {
      const entry: HeldEntry = { prepared, resolve };
      const handle = this.held.hold(entry, req.nowMs, prepared.scheduling.sheddable);
      this.heldTotal++;
      signal?.addEventListener(
        "abort",
        () => {
          if (this.held.remove(handle)) resolve(clientLeft(prepared));
        },
        { once: true },
      );
      this.drainHeld(req.nowMs); // younger requests for other adapters may start at once
    });
  }

  /** Requests refused with a fast 429 since the start, by reason. */
  rejectedCount(): ReadonlyMap<RejectReason, number> {
    return this.rejected;
  }

  private reject(reason: RejectReason, p: { model: string; targetModel: string }): RouteFailure {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
    return rejection(reason, p.model, p.targetModel);
  }

  /** Counts the scheduler's 429 for a sheddable request on a pool whose pods all queue. */
  private counted(d: RouteDecision): RouteDecision {
    if (d.ok || d.error.code !== "InferencePoolResourceExhausted") return d;
    return this.reject("sheddable-saturated", d);
  }

  /** Requests held by flow control now, and since the start. */
  heldCount(): { now: number; total: number } {
    return { now: this.held.size, total: this.heldTotal };
  }

  /**
   * Dispatches held requests that an endpoint can start now; those held too long get 429; with
   * no ready endpoint left, 503.
   */
  drainHeld(nowMs: number): void {
    const flow = this.options.flowControl;
    if (!flow || this.held.size === 0) return;
    const endpoints = this.pool.readyEndpoints();
    const ctx = this.context(nowMs);
    this.held.drain(
      nowMs,
      flow.maxWaitMs,
      (entry, overdue, heldMs) => {
        if (endpoints.length === 0) {
          entry.resolve(this.place(entry.prepared, nowMs));
          return true;
        }
        const among = this.startable(entry.prepared, endpoints, heldMs, ctx);
        if (among) entry.resolve(this.counted(this.place(entry.prepared, nowMs, among)));
        else if (overdue) entry.resolve(this.reject("queue-timeout", entry.prepared));
        return among !== undefined || overdue;
      },
      flow.sheddableMaxWaitMs,
    );
  }

  /**
   * The endpoints a request may start on now, after waiting `waitedMs` (flow control with
   * delay scheduling for prefix locality), or undefined when it should wait.
   */
  private startable(
    p: PreparedRequest,
    ready: readonly EndpointView[],
    waitedMs: number,
    ctx: SchedulingContext,
  ): readonly EndpointView[] | undefined {
    const flow = this.options.flowControl!;
    const free = endpointsWithFreeSlot(p.scheduling, ready, flow, ctx);
    if (free.length === 0) return undefined;
    // Without a known running capacity "free" means every endpoint: nothing to wait for.
    if (flow.localityWaitMs <= 0 || runningCapacity(ready, flow) === undefined) return free;
    const preferred = this.scheduler.preferred(p.scheduling, ready);
    return localityChoice(free, preferred, waitedMs, flow);
  }

  private context(nowMs: number): SchedulingContext {
    return { nowMs, rng: this.rng, saturation: this.options.saturation };
  }

  /** Parse, resolve, split: everything up to the choice of endpoint. */
  private prepare(req: IncomingRequest): PreparedRequest | RouteFailure {
    const fail = (error: PickerError, model = "", targetModel = ""): RouteFailure => ({
      ok: false,
      error,
      model,
      targetModel,
    });
    if (req.body.length > this.options.maxBodyBytes) {
      return fail(
        pickerError(
          "PayloadTooLarge",
          `request body of ${req.body.length} bytes exceeds the limit of ${this.options.maxBodyBytes}`,
        ),
      );
    }
    const parsed = parseInferenceRequest(req.body);
    if (!parsed.ok) return fail(parsed.error);
    const { model, stream, promptText, cacheSalt, modelSpan } = parsed.request;

    let resolution = this.pool.resolveModel(model);
    if (resolution === undefined) {
      if (this.options.strict) {
        return fail(
          pickerError(
            "BadConfiguration",
            `model '${model}' is not served by pool '${this.pool.poolName()}'`,
          ),
          model,
        );
      }
      resolution = {
        source: "passthrough",
        targets: [{ name: model, weight: 1 }],
        adapters: false,
      };
    }

    const sessionKey = this.options.sessionHeader
      ? req.header(this.options.sessionHeader)
      : undefined;
    const targetModel = this.splitter.choose(model, resolution.targets, sessionKey);
    if (targetModel === undefined) {
      return fail(
        pickerError("BadConfiguration", `model '${model}' has no target model with weight > 0`),
        model,
      );
    }

    const sheddable =
      resolution.criticality === "Sheddable" || (this.objectivePriority(req) ?? 0) < 0;
    const prefixHashes =
      promptText.length >= this.options.prefix.blockSize
        ? hashPromptBlocks(`${targetModel}\u0000${cacheSalt}`, promptText, this.options.prefix)
        : [];
    return {
      ok: true,
      model,
      targetModel,
      adapters: resolution.adapters,
      stream,
      body: req.body,
      modelSpan,
      scheduling: { model, targetModel, adapter: resolution.adapters, sheddable, prefixHashes },
    };
  }

  /** Schedules among `among` (default: every ready endpoint) and notes the dispatch. */
  private place(p: PreparedRequest, nowMs: number, among?: readonly EndpointView[]): RouteDecision {
    const ready = this.pool.readyEndpoints();
    const result = this.scheduler.schedule(p.scheduling, among ?? ready, this.context(nowMs));
    if (!result.ok) {
      return { ok: false, error: result.error, model: p.model, targetModel: p.targetModel };
    }
    const endpoints = withRemaining(result.ranked, ready);
    const adapter = p.adapters ? p.targetModel : undefined;
    this.pool.noteDispatched(endpoints[0].address, adapter);
    this.dispatched.note(nowMs);
    const bodyChanged = p.targetModel !== p.model;
    return {
      ok: true,
      model: p.model,
      targetModel: p.targetModel,
      adapter,
      endpoints,
      body: bodyChanged ? rewriteModel(p.body, p.modelSpan, p.targetModel) : p.body,
      bodyChanged,
      stream: p.stream,
      sheddable: p.scheduling.sheddable,
    };
  }

  /** Requests without a body (GET /v1/models): any ready endpoint, least loaded first. */
  decideBodyless(nowMs: number): RouteDecision {
    const candidates = this.pool.readyEndpoints();
    const result = this.scheduler.schedule(
      { model: "", targetModel: "", adapter: false, sheddable: false, prefixHashes: [] },
      candidates,
      { nowMs, rng: this.rng, saturation: this.options.saturation },
    );
    if (!result.ok) return { ok: false, error: result.error, model: "", targetModel: "" };
    const endpoints = withRemaining(result.ranked, candidates);
    this.pool.noteDispatched(endpoints[0].address);
    return {
      ok: true,
      model: "",
      targetModel: "",
      endpoints,
      body: Buffer.alloc(0),
      bodyChanged: false,
      stream: false,
      sheddable: false,
    };
  }

  private objectivePriority(req: IncomingRequest): number | undefined {
    for (const header of this.options.objectiveHeaders) {
      const name = req.header(header);
      if (name) return this.pool.objectivePriority(name);
    }
    return undefined;
  }
}

function clientLeft(p: PreparedRequest): RouteFailure {
  return {
    ok: false,
    error: pickerError("BadRequest", "the client closed the request while it waited"),
    model: p.model,
    targetModel: p.targetModel,
  };
}

/** Ranked candidates first, then the endpoints a filter set aside (last-resort retries). */
function withRemaining(ranked: EndpointView[], all: readonly EndpointView[]): EndpointView[] {
  if (ranked.length === all.length) return ranked;
  const seen = new Set(ranked);
  return ranked.concat(all.filter(e => !seen.has(e)));
}
