// queue-scorer: less load scores higher.

import { ScorerPlugin } from "../scheduler";
import { EndpointView } from "../types";
import { PluginParameters, onlyParameters } from "./parameters";

export const QUEUE_SCORER = "queue-scorer";

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
  type: QUEUE_SCORER,
  name: QUEUE_SCORER,
  score(_request, endpoints) {
    const loads = endpoints.map(estimatedLoad);
    const min = Math.min(...loads);
    const max = Math.max(...loads);
    if (max === min) return loads.map(() => 1);
    return loads.map(l => (max - l) / (max - min));
  },
};

export function newQueueScorer(name: string, parameters: PluginParameters): ScorerPlugin {
  onlyParameters(QUEUE_SCORER, parameters, []);
  return { ...queueScorer, name };
}
