// prefix-cache-scorer: prefers endpoints that were already sent the request's prompt prefix (so
// likely hold it in their KV cache), remembers where each prompt went, and names the endpoints
// that hold a prefix for flow control's delay scheduling. Its index is the picker's one
// PrefixIndex (--prefix-lru-capacity; pods that leave are forgotten); prompts are hashed into
// blocks by the router (--prefix-block-size, --prefix-max-blocks).

import { PrefixIndex } from "../prefix";
import { PostPickPlugin, PreferencePlugin, SchedulingRequest, ScorerPlugin } from "../scheduler";
import { EndpointView } from "../types";
import { PluginParameters, onlyParameters } from "./parameters";

export const PREFIX_CACHE_SCORER = "prefix-cache-scorer";

/** Prefix-cache affinity: the share of the prompt's blocks the endpoint was already sent. */
export class PrefixCacheScorer implements ScorerPlugin, PostPickPlugin, PreferencePlugin {
  readonly type = PREFIX_CACHE_SCORER;

  constructor(
    readonly index: PrefixIndex,
    readonly name: string = PREFIX_CACHE_SCORER,
  ) {}

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

export function newPrefixCacheScorer(
  name: string,
  parameters: PluginParameters,
  deps: { prefixIndex: PrefixIndex },
): PrefixCacheScorer {
  onlyParameters(PREFIX_CACHE_SCORER, parameters, []);
  return new PrefixCacheScorer(deps.prefixIndex, name);
}
