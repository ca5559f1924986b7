// The scheduler: filters narrow the candidate endpoints, weighted scorers rate each one in
// [0, 1], a picker ranks them (the upstream EPP's framework: filters → scorers → picker), and
// post-pick plugins learn from the choice. Saturation detection in front decides 429/503.
// The plugins are one file each in ./plugins, registered by type name (./plugins/registry.ts)
// and put together from an EndpointPickerConfig (./scheduler-config.ts).

import { EndpointView, PickerError, Rng, pickerError } from "./types";

export interface SchedulingRequest {
  model: string;
  targetModel: string;
  /** The target is a LoRA adapter picked by a split: LoRA affinity applies. */
  adapter: boolean;
  sheddable: boolean;
  prefixHashes: readonly number[];
}

export interface SaturationConfig {
  /** Metrics older than this count as saturated (upstream default is 2 s; ours is tighter). */
  staleAfterMs: number;
  /** Waiting requests above which an endpoint has no spare capacity (upstream default 5). */
  queueThreshold: number;
  /** KV-cache use above which an endpoint has no spare capacity (upstream default 0.8). */
  kvCacheThreshold: number;
}

export const defaultSaturationConfig: SaturationConfig = {
  staleAfterMs: 200,
  queueThreshold: 5,
  kvCacheThreshold: 0.8,
};

export interface SchedulingContext {
  nowMs: number;
  rng: Rng;
  saturation: SaturationConfig;
}

/**
 * What every plugin has: its type (the name it is registered under, e.g. `queue-scorer`) and
 * the name of this instance (the type unless a config names it otherwise), as upstream's
 * TypedName.
 */
export interface Plugin {
  readonly type: string;
  readonly name: string;
}

export interface FilterPlugin extends Plugin {
  filter(
    request: SchedulingRequest,
    endpoints: readonly EndpointView[],
    ctx: SchedulingContext,
  ): EndpointView[];
}

export interface ScorerPlugin extends Plugin {
  /** One score in [0, 1] per endpoint, in the same order. */
  score(
    request: SchedulingRequest,
    endpoints: readonly EndpointView[],
    ctx: SchedulingContext,
  ): number[];
}

export interface PickerPlugin extends Plugin {
  /** All endpoints, best first. */
  rank(
    endpoints: readonly EndpointView[],
    totals: readonly number[],
    ctx: SchedulingContext,
  ): EndpointView[];
}

export interface PostPickPlugin extends Plugin {
  picked(request: SchedulingRequest, endpoint: EndpointView): void;
}

/**
 * A scorer that also names the endpoints a request should go to if they have room (the prefix
 * scorer: those that hold its prompt prefix), for flow control's delay scheduling.
 */
export interface PreferencePlugin extends Plugin {
  preferred(request: SchedulingRequest, endpoints: readonly EndpointView[]): EndpointView[];
}

/** A plugin implements one or more of the extension points (a scorer may also learn post-pick). */
export type SchedulerPlugin = Plugin &
  Partial<
    Pick<FilterPlugin, "filter"> &
      Pick<ScorerPlugin, "score"> &
      Pick<PickerPlugin, "rank"> &
      Pick<PostPickPlugin, "picked">
  >;

export interface WeightedScorer {
  scorer: ScorerPlugin;
  weight: number;
}

export function isStale(endpoint: EndpointView, ctx: SchedulingContext): boolean {
  const m = endpoint.metrics;
  return m === undefined || ctx.nowMs - m.scrapedAtMs > ctx.saturation.staleAfterMs;
}

/** No spare capacity: stale or missing metrics, a long queue, or a nearly full KV cache. */
export function isEndpointSaturated(endpoint: EndpointView, ctx: SchedulingContext): boolean {
  if (isStale(endpoint, ctx)) return true;
  const m = endpoint.metrics!;
  return (
    m.waiting > ctx.saturation.queueThreshold || m.kvCacheUsage > ctx.saturation.kvCacheThreshold
  );
}

export function isPoolSaturated(
  endpoints: readonly EndpointView[],
  ctx: SchedulingContext,
): boolean {
  return endpoints.every(e => isEndpointSaturated(e, ctx));
}

// --- Scheduler -------------------------------------------------------------------------------

export interface SchedulerConfig {
  filters: FilterPlugin[];
  scorers: WeightedScorer[];
  picker: PickerPlugin;
  postPick: PostPickPlugin[];
}

export type ScheduleResult =
  | { ok: true; ranked: EndpointView[]; scores: Map<string, number> }
  | { ok: false; error: PickerError };

export class Scheduler {
  private readonly preference?: PreferencePlugin;

  constructor(readonly config: SchedulerConfig) {
    this.preference = config.scorers
      .map(s => s.scorer as ScorerPlugin & Partial<PreferencePlugin>)
      .find((s): s is ScorerPlugin & PreferencePlugin => typeof s.preferred === "function");
  }

  /**
   * Endpoints that hold the request's prompt prefix (none without a scorer that prefers some:
   * the prefix scorer with a weight above 0).
   */
  preferred(request: SchedulingRequest, endpoints: readonly EndpointView[]): EndpointView[] {
    return this.preference?.preferred(request, endpoints) ?? [];
  }

  schedule(
    request: SchedulingRequest,
    endpoints: readonly EndpointView[],
    ctx: SchedulingContext,
  ): ScheduleResult {
    if (endpoints.length === 0) {
      return {
        ok: false,
        error: pickerError("ServiceUnavailable", "no ready endpoint in the pool"),
      };
    }
    if (request.sheddable && isPoolSaturated(endpoints, ctx)) {
      return {
        ok: false,
        error: pickerError(
          "InferencePoolResourceExhausted",
          "the pool is saturated and the request is sheddable",
        ),
      };
    }
    let candidates: readonly EndpointView[] = endpoints;
    for (const filter of this.config.filters) {
      candidates = filter.filter(request, candidates, ctx);
      if (candidates.length === 0) {
        return {
          ok: false,
          error: pickerError("ServiceUnavailable", `no endpoint passed the ${filter.name}`),
        };
      }
    }
    const totals = new Array<number>(candidates.length).fill(0);
    for (const { scorer, weight } of this.config.scorers) {
      const scores = scorer.score(request, candidates, ctx);
      for (let i = 0; i < totals.length; i++) totals[i] += weight * clamp01(scores[i]);
    }
    const ranked = this.config.picker.rank(candidates, totals, ctx);
    for (const plugin of this.config.postPick) plugin.picked(request, ranked[0]);
    const scores = new Map<string, number>();
    candidates.forEach((e, i) => scores.set(e.name, totals[i]));
    return { ok: true, ranked, scores };
  }
}

function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(Math.max(x, 0), 1) : 0;
}
