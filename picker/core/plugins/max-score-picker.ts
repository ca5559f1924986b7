// max-score-picker: the highest total first.

import { PickerPlugin } from "../scheduler";
import { PluginParameters, onlyParameters } from "./parameters";

export const MAX_SCORE_PICKER = "max-score-picker";

/** Highest total first; ties are broken at random so equal endpoints share the load. */
export const maxScorePicker: PickerPlugin = {
  type: MAX_SCORE_PICKER,
  name: MAX_SCORE_PICKER,
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

export function newMaxScorePicker(name: string, parameters: PluginParameters): PickerPlugin {
  onlyParameters(MAX_SCORE_PICKER, parameters, []);
  return { ...maxScorePicker, name };
}
