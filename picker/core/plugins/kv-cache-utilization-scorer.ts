// kv-cache-utilization-scorer: more free KV cache scores higher.

import { ScorerPlugin } from "../scheduler";
import { PluginParameters, onlyParameters } from "./parameters";

export const KV_CACHE_UTILIZATION_SCORER = "kv-cache-utilization-scorer";

/** More free KV cache scores higher; unknown counts as full. */
export const kvCacheScorer: ScorerPlugin = {
  type: KV_CACHE_UTILIZATION_SCORER,
  name: KV_CACHE_UTILIZATION_SCORER,
  score(_request, endpoints) {
    return endpoints.map(e => (e.metrics ? 1 - e.metrics.kvCacheUsage : 0));
  },
};

export function newKvCacheScorer(name: string, parameters: PluginParameters): ScorerPlugin {
  onlyParameters(KV_CACHE_UTILIZATION_SCORER, parameters, []);
  return { ...kvCacheScorer, name };
}
