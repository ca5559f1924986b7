// LoRA split: a weighted choice among target models, drawn per request (like the upstream EPP),
// plus optional session stickiness — the same session key keeps its target version for as long
// as that version still has weight > 0. The upstream pickers draw every request independently.

import { LruMap } from "./lru";
import { Rng, WeightedTarget } from "./types";

/** Draws one target with probability weight/sum(weights); entries with weight <= 0 never win. */
export function weightedChoice(targets: readonly WeightedTarget[], rng: Rng): string | undefined {
  let total = 0;
  for (const t of targets) if (t.weight > 0) total += t.weight;
  if (!(total > 0)) return undefined;
  let remaining = rng() * total;
  let lastPositive: string | undefined;
  for (const t of targets) {
    if (!(t.weight > 0)) continue;
    lastPositive = t.name;
    remaining -= t.weight;
    if (remaining < 0) return t.name;
  }
  return lastPositive; // only reached through floating-point rounding at the top end
}

export interface SplitterOptions {
  rng: Rng;
  /** How many sessions to remember; the least recently seen is forgotten first. */
  stickyCapacity: number;
}

export class TrafficSplitter {
  private readonly sessions: LruMap<string, string>;

  constructor(private readonly options: SplitterOptions) {
    this.sessions = new LruMap(options.stickyCapacity);
  }

  /**
   * Chooses the target for one request. `scope` separates public model names (a session may
   * talk to two models); without a session key every request is drawn independently.
   */
  choose(
    scope: string,
    targets: readonly WeightedTarget[],
    sessionKey?: string,
  ): string | undefined {
    if (sessionKey === undefined || sessionKey === "") {
      return weightedChoice(targets, this.options.rng);
    }
    const key = `${scope}\u0000${sessionKey}`;
    const previous = this.sessions.get(key);
    if (previous !== undefined && targets.some(t => t.name === previous && t.weight > 0)) {
      return previous;
    }
    const chosen = weightedChoice(targets, this.options.rng);
    if (chosen === undefined) this.sessions.delete(key);
    else this.sessions.set(key, chosen);
    return chosen;
  }

  get stickySessions(): number {
    return this.sessions.size;
  }
}
