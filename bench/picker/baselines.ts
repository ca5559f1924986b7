// The schedulers the picker is compared with, as plugins of the picker's own scheduler
// framework, so that everything else (proxy, split, metrics) is the same and only the choice of
// endpoint differs: round-robin and uniform random (no filters, no scorers), and, as a reference,
// the queue scorer alone (least loaded first: join-the-shortest-queue). The two pickers are
// registered beside the picker's own plugins, and each baseline is an EndpointPickerConfig.

import { PrefixIndex } from "../../picker/core/prefix";
import { MAX_SCORE_PICKER } from "../../picker/core/plugins/max-score-picker";
import { onlyParameters } from "../../picker/core/plugins/parameters";
import { QUEUE_SCORER } from "../../picker/core/plugins/queue-scorer";
import { PluginRegistry, builtinPlugins } from "../../picker/core/plugins/registry";
import {
  PickerPlugin,
  SchedulerConfig,
  defaultSaturationConfig,
} from "../../picker/core/scheduler";
import { EndpointPickerConfig, buildSchedulerConfig } from "../../picker/core/scheduler-config";

export type Strategy = "picker" | "queue-only" | "round-robin" | "random";
export type Baseline = Exclude<Strategy, "picker">;

export const strategies: readonly Strategy[] = ["picker", "queue-only", "round-robin", "random"];

export const ROUND_ROBIN_PICKER = "round-robin-picker";
export const RANDOM_PICKER = "random-picker";

/** Each call starts one endpoint further along the (name-sorted) ready list. */
export function roundRobinPicker(name = ROUND_ROBIN_PICKER): PickerPlugin {
  let next = 0;
  return {
    type: ROUND_ROBIN_PICKER,
    name,
    rank(endpoints) {
      if (endpoints.length === 0) return [];
      const start = next++ % endpoints.length;
      return [...endpoints.slice(start), ...endpoints.slice(0, start)];
    },
  };
}

/** A uniformly random order. */
export const randomPicker: PickerPlugin = {
  type: RANDOM_PICKER,
  name: RANDOM_PICKER,
  rank(endpoints, _totals, ctx) {
    const order = [...endpoints];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(ctx.rng() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  },
};

/** The picker's plugins and the baselines' pickers. */
export const baselinePlugins: PluginRegistry = new Map([
  ...builtinPlugins,
  [
    ROUND_ROBIN_PICKER,
    (name, parameters) => (
      onlyParameters(ROUND_ROBIN_PICKER, parameters, []),
      roundRobinPicker(name)
    ),
  ],
  [
    RANDOM_PICKER,
    (name, parameters) => (
      onlyParameters(RANDOM_PICKER, parameters, []),
      { ...randomPicker, name }
    ),
  ],
]);

/** A baseline as the plugins it runs. */
export function baselineConfig(strategy: Baseline): EndpointPickerConfig {
  if (strategy === "queue-only") {
    return {
      plugins: [{ type: QUEUE_SCORER }, { type: MAX_SCORE_PICKER }],
      schedulingProfiles: [
        {
          name: "queue-only",
          plugins: [{ pluginRef: QUEUE_SCORER, weight: 1 }, { pluginRef: MAX_SCORE_PICKER }],
        },
      ],
    };
  }
  const picker = strategy === "round-robin" ? ROUND_ROBIN_PICKER : RANDOM_PICKER;
  return { plugins: [{ type: picker }] };
}

/** A baseline's scheduler plugins (none of them uses the prefix index or the thresholds). */
export function baselineSchedulerConfig(strategy: Baseline): SchedulerConfig {
  return buildSchedulerConfig(
    baselineConfig(strategy),
    { prefixIndex: new PrefixIndex(1), saturation: defaultSaturationConfig },
    baselinePlugins,
  );
}
