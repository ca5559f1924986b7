// The scheduler: filters narrow the candidate endpoints, weighted scorers rate each one in
// [0, 1], a picker ranks them (the upstream EPP's framework: filters → scorers → picker), and
// post-pick plugins learn from the choice. Saturation detection in front decides 429/503.

import { PrefixIndex } from "./prefix";
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

export interface FilterPlugin {
  readonly name: string;
  filter(
    request: SchedulingRequest,
    endpoints: readonly EndpointView[],
    ctx: SchedulingContext,
  ): EndpointView[];
}

export interface ScorerPlugin {
  readonly name: string;
  /** One score in [0, 1] per endpoint, in the same order. */
  score(
    request: SchedulingRequest,
    endpoints: readonly EndpointView[],
    ctx: SchedulingContext,
  ): number[];
}

export interface PickerPlugin {
  readonly name: string;
  /** All endpoints, best first. */
  rank(
    endpoints: readonly EndpointView[],
    totals: readonly number[],
    ctx: SchedulingContext,
  ): EndpointView[];
}

export interface PostPickPlugin {
  readonly name: string;
  picked(request: SchedulingRequest, endpoint: EndpointView): void;
}

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

// --- Filters ---------------------------------------------------------------------------------

/** Prefers endpoints with spare capacity; keeps everyone when none has any (never empties). */
export const capacityFilter: FilterPlugin = {
  name: "capacity-filter",
  filter(_request, endpoints, ctx) {
    const withCapacity = endpoints.filter(e => !isEndpointSaturated(e, ctx));
    return withCapacity.length > 0 ? withCapacity : [...endpoints];
  },
};

// --- Scorers ---------------------------------------------------------------------------------

/**
 * Load as we best know it: the last scrape (waiting + running) plus what we sent since, or our
 * own count of unfinished requests when that is higher (scrapes lag by up to one interval, and
 * without the correction every request in that interval would pile onto the same pod).
 */
export function estimatedLoad(endpoint: EndpointView): number {
  const m = endpoint.metrics;
  const scraped = m ? m.waiting + m.running : 0;
  return Math.max(scraped + endpoint.dispatchedSinceScrape, endpoint.inflight);
}

/** Less load scores higher, min-max normalised like the upstream queue scorer. */
export const queueScorer: ScorerPlugin = {
  name: "queue-scorer",
  score(_request, endpoints) {
    const loads = endpoints.map(estimatedLoad);
    const min = Math.min(...loads);
    const max = Math.max(...loads);
    if (max === min) return loads.map(() => 1);
    return loads.map(l => (max - l) / (max - min));
  },
};

/** More free KV cache scores higher; unknown counts as full. */
export const kvCacheScorer: ScorerPlugin = {
  name: "kv-cache-utilization-scorer",
  score(_request, endpoints) {
    return endpoints.map(e => (e.metrics ? 1 - e.metrics.kvCacheUsage : 0));
  },
};

/** LoRA affinity scores. */
export const loraScores = {
  /** The adapter runs there, or sits idle in one of its slots: no adapter swap. */
  active: 1,
  /** A free adapter slot. */
  freeSlot: 0.8,
  /** The adapter waits there for a slot: it will be loaded anyway. */
  waiting: 0.6,
  /** Every slot is taken but one holds an idle adapter: serving here swaps adapters. */
  evictIdle: 0.2,
  /** Every slot runs another adapter: the request waits until one drains. */
  full: 0,
};

/**
 * Adapter active > free slot > adapter waiting > an idle adapter must be evicted > full.
 * `vllm:lora_requests_info` is up to one scrape interval old and lists only adapters with
 * running or waiting requests. So adapters of requests we sent that are still in flight count as
 * running (unless the scrape shows them waiting), and the adapters we sent most recently fill the
 * remaining slots as idle ones (servers evict the least recently used). Without this, a pod idle
 * at its last scrape looks free for every adapter, gets two adapters at once with one slot, and
 * one of them waits behind the other or evicts it.
 */
export const loraAffinityScorer: ScorerPlugin = {
  name: "lora-affinity-scorer",
  score(request, endpoints) {
    if (!request.adapter) return endpoints.map(() => 1);
    const target = request.targetModel;
    return endpoints.map(e => {
      const lora = e.metrics?.lora;
      if (!lora) return loraScores.full;
      if (lora.running.includes(target)) return loraScores.active;
      const sent = e.sentAdapters ?? new Map<string, number>();
      const running = new Set(lora.running);
      for (const [adapter, n] of sent) {
        if (n > 0 && !lora.waiting.includes(adapter)) running.add(adapter);
      }
      if (running.has(target)) {
        return running.size <= lora.maxLora ? loraScores.active : loraScores.waiting;
      }
      const loaded = new Set(running);
      for (const adapter of [...sent.keys()].reverse()) {
        if (loaded.size >= lora.maxLora) break;
        if (!lora.waiting.includes(adapter)) loaded.add(adapter);
      }
      if (loaded.has(target)) return loraScores.active;
      if (new Set([...loaded, ...lora.waiting]).size < lora.maxLora) return loraScores.freeSlot;
      if (lora.waiting.includes(target)) return loraScores.waiting;
      return loaded.size > running.size ? loraScores.evictIdle : loraScores.full;
    });
  },
};

/** Prefix-cache affinity: the share of the prompt's blocks the endpoint was already sent. */
export class PrefixCacheScorer implements ScorerPlugin, PostPickPlugin {
  readonly name = "prefix-cache-scorer";

  constructor(readonly index: PrefixIndex) {}

  score(request: SchedulingRequest, endpoints: readonly EndpointView[]): number[] {
    const total = request.prefixHashes.length;
    if (total === 0) return endpoints.map(() => 0);
    const matches = this.index.longestMatches(request.prefixHashes);
    return endpoints.map(e => (matches.get(e.name) ?? 0) / total);
  }

  picked(request: SchedulingRequest, endpoint: EndpointView): void {
    if (request.prefixHashes.length > 0) this.index.add(request.prefixHashes, endpoint.name);
  }

  /** The endpoints with the longest prefix match, if it covers at least half the prompt. */
  preferred(request: SchedulingRequest, endpoints: readonly EndpointView[]): EndpointView[] {
    const total = request.prefixHashes.length;
    if (total === 0) return [];
    const matches = this.index.longestMatches(request.prefixHashes);
    let best = Math.ceil(total / 2);
    for (const n of matches.values()) best = Math.max(best, n);
    return endpoints.filter(e => (matches.get(e.name) ?? 0) >= best);
  }
}

// --- Pickers ---------------------------------------------------------------------------------

/** Highest total first; ties are broken at random so equal endpoints share the load. */
export const maxScorePicker: PickerPlugin = {
  name: "max-score-picker",
  rank(endpoints, totals, ctx) {
    const order = endpoints.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(ctx.rng() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    order.sort((a, b) => totals[b] - totals[a]); // stable: shuffled order survives among ties
    return order.map(i => endpoints[i]);
  },
};

// --- Scheduler -------------------------------------------------------------------------------

export interface SchedulerConfig {
  filters: FilterPlugin[];
  scorers: WeightedScorer[];
  picker: PickerPlugin;
  postPick: PostPickPlugin[];
}

export interface ScoreWeights {
  queue: number;
  kvCache: number;
  prefix: number;
  lora: number;
}

/**
 * Upstream's default weights for queue, KV cache and prefix. LoRA affinity gets 3: more than the
 * whole range of the queue score, so an adapter is not evicted on another pod just because that
 * pod has one request less (overloaded pods are already set aside by the capacity filter).
 */
export const defaultScoreWeights: ScoreWeights = { queue: 2, kvCache: 2, prefix: 3, lora: 3 };

export function defaultSchedulerConfig(
  weights: ScoreWeights,
  prefixIndex: PrefixIndex,
): SchedulerConfig {
  const prefix = new PrefixCacheScorer(prefixIndex);
  const scorers: WeightedScorer[] = [
    { scorer: queueScorer, weight: weights.queue },
    { scorer: kvCacheScorer, weight: weights.kvCache },
    { scorer: prefix, weight: weights.prefix },
    { scorer: loraAffinityScorer, weight: weights.lora },
  ].filter(s => s.weight > 0);
  return { filters: [capacityFilter], scorers, picker: maxScorePicker, postPick: [prefix] };
}

export type ScheduleResult =
  | { ok: true; ranked: EndpointView[]; scores: Map<string, number> }
  | { ok: false; error: PickerError };

export class Scheduler {
  private readonly prefix?: PrefixCacheScorer;

  constructor(readonly config: SchedulerConfig) {
    this.prefix = config.scorers
      .map(s => s.scorer)
      .find((s): s is PrefixCacheScorer => s instanceof PrefixCacheScorer);
  }

  /** Endpoints that hold the request's prompt prefix (none without a prefix scorer). */
  preferred(request: SchedulingRequest, endpoints: readonly EndpointView[]): EndpointView[] {
    return this.prefix?.preferred(request, endpoints) ?? [];
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
