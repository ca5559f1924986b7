// The schedulers the picker is compared with, as plugins of the picker's own scheduler
// framework, so that everything else (proxy, split, metrics) is the same and only the choice of
// endpoint differs: round-robin and uniform random (no filters, no scorers), and, as a reference,
// the queue scorer alone (least loaded first: join-the-shortest-queue).

import {
  PickerPlugin,
  SchedulerConfig,
  maxScorePicker,
  queueScorer,
} from "../../picker/core/scheduler";

export type Strategy = "picker" | "queue-only" | "round-robin" | "random";
export type Baseline = Exclude<Strategy, "picker">;

export const strategies: readonly Strategy[] = ["picker", "queue-only", "round-robin", "random"];

/** Each call starts one endpoint further along the (name-sorted) ready list. */
export function roundRobinPicker(): PickerPlugin {
  let next = 0;
  return {
    name: "round-robin-picker",
    rank(endpoints) {
      if (endpoints.length === 0) return [];
      const start = next++ % endpoints.length;
      return [...endpoints.slice(start), ...endpoints.slice(0, start)];
    },
  };
}

/** A uniformly random order. */
export const randomPicker: PickerPlugin = {
  name: "random-picker",
  rank(endpoints, _totals, ctx) {
    const order = [...endpoints];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(ctx.rng() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order;
  },
};

export function baselineSchedulerConfig(strategy: Baseline): SchedulerConfig {
  if (strategy === "queue-only") {
    return {
      filters: [],
      scorers: [{ scorer: queueScorer, weight: 1 }],
      picker: maxScorePicker,
      postPick: [],
    };
  }
  return {
    filters: [],
    scorers: [],
    picker: strategy === "round-robin" ? roundRobinPicker() : randomPicker,
    postPick: [],
  };
}
