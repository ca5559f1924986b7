// The scheduler plugins by type name, as the upstream EPP registers its plugins: a config file
// (or the --weights shorthand) names plugins by type, and each type's factory builds an instance
// from its parameters. Benchmarks add their own baselines to a copy of this registry.

import { PrefixIndex } from "../prefix";
import { SaturationConfig, SchedulerPlugin } from "../scheduler";
import { CAPACITY_FILTER, newCapacityFilter } from "./capacity-filter";
import { KV_CACHE_UTILIZATION_SCORER, newKvCacheScorer } from "./kv-cache-utilization-scorer";
import { LORA_AFFINITY_SCORER, newLoraAffinityScorer } from "./lora-affinity-scorer";
import { MAX_SCORE_PICKER, newMaxScorePicker } from "./max-score-picker";
import { PluginParameters } from "./parameters";
import { PREFIX_CACHE_SCORER, newPrefixCacheScorer } from "./prefix-cache-scorer";
import { QUEUE_SCORER, newQueueScorer } from "./queue-scorer";

/** What plugins may share with the rest of the picker. */
export interface PluginDeps {
  /** The picker's prompt-prefix index (flow control and the datastore use it too). */
  prefixIndex: PrefixIndex;
  /** The saturation detector's thresholds (--stale-ms, --queue-threshold, --kv-threshold). */
  saturation: SaturationConfig;
}

/** Builds one instance named `name`; throws PluginConfigError on parameters it does not take. */
export type PluginFactory = (
  name: string,
  parameters: PluginParameters,
  deps: PluginDeps,
) => SchedulerPlugin;

export type PluginRegistry = ReadonlyMap<string, PluginFactory>;

export type BuiltinPluginType =
  | typeof CAPACITY_FILTER
  | typeof QUEUE_SCORER
  | typeof KV_CACHE_UTILIZATION_SCORER
  | typeof PREFIX_CACHE_SCORER
  | typeof LORA_AFFINITY_SCORER
  | typeof MAX_SCORE_PICKER;

const builtins: Record<BuiltinPluginType, PluginFactory> = {
  [CAPACITY_FILTER]: newCapacityFilter,
  [QUEUE_SCORER]: newQueueScorer,
  [KV_CACHE_UTILIZATION_SCORER]: newKvCacheScorer,
  [PREFIX_CACHE_SCORER]: newPrefixCacheScorer,
  [LORA_AFFINITY_SCORER]: newLoraAffinityScorer,
  [MAX_SCORE_PICKER]: newMaxScorePicker,
};

/** The picker's own plugins. */
export const builtinPlugins: PluginRegistry = new Map(Object.entries(builtins));
