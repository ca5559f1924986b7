// capacity-filter: prefers endpoints with spare capacity, by the saturation detector's
// thresholds (--queue-threshold, --kv-threshold) unless its parameters set its own.

import {
  FilterPlugin,
  SaturationConfig,
  SchedulingContext,
  isEndpointSaturated,
  isStale,
} from "../scheduler";
import { EndpointView } from "../types";
import { PluginParameters, numberParameter, onlyParameters } from "./parameters";

export const CAPACITY_FILTER = "capacity-filter";

/** Prefers endpoints with spare capacity; keeps everyone when none has any (never empties). */
export const capacityFilter: FilterPlugin = {
  type: CAPACITY_FILTER,
  name: CAPACITY_FILTER,
  filter(_request, endpoints, ctx) {
    const withCapacity = endpoints.filter(e => !isEndpointSaturated(e, ctx));
    return withCapacity.length > 0 ? withCapacity : [...endpoints];
  },
};

type Thresholds = Pick<SaturationConfig, "queueThreshold" | "kvCacheThreshold">;

/**
 * Parameters (both optional; the other one stays the saturation detector's):
 * `queueThreshold` (waiting requests above which an endpoint has no spare capacity) and
 * `kvCacheThreshold` (KV-cache use, 0..1). Staleness is always the detector's.
 */
export function newCapacityFilter(
  name: string,
  parameters: PluginParameters,
  deps: { saturation: SaturationConfig },
): FilterPlugin {
  onlyParameters(CAPACITY_FILTER, parameters, ["queueThreshold", "kvCacheThreshold"]);
  const queue = numberParameter(CAPACITY_FILTER, parameters, "queueThreshold", 0);
  const kvCache = numberParameter(CAPACITY_FILTER, parameters, "kvCacheThreshold", 0, 1);
  if (queue === undefined && kvCache === undefined) return { ...capacityFilter, name };
  const own: Thresholds = {
    queueThreshold: queue ?? deps.saturation.queueThreshold,
    kvCacheThreshold: kvCache ?? deps.saturation.kvCacheThreshold,
  };
  const saturated = (e: EndpointView, ctx: SchedulingContext) =>
    isStale(e, ctx) ||
    e.metrics!.waiting > own.queueThreshold ||
    e.metrics!.kvCacheUsage > own.kvCacheThreshold;
  return {
    type: CAPACITY_FILTER,
    name,
    filter(_request, endpoints, ctx) {
      const withCapacity = endpoints.filter(e => !saturated(e, ctx));
      return withCapacity.length > 0 ? withCapacity : [...endpoints];
    },
  };
}
