// Weighted target lists of InferenceModel (spec.targetModels[{name, weight}]) and
// InferenceModelRewrite (spec.rules[].targets[{modelRewrite, weight}]). Their CRDs allow weights
// 1..1e6 only (0 is invalid: an entry that should get nothing is removed) and want weights on all
// entries or on none, so the split always writes weights on every entry.
//
// Unrelated entries (neither stable nor canary) keep their share of traffic: the stable + canary
// pair is normalised to a total of 100 and the other entries are scaled by the same factor
// (rounded, clamped to 1..1e6). A list without weights counts every entry as 1. With the seed's
// lists (pair already at 100) unrelated weights never change.

export const MIN_WEIGHT = 1;
export const MAX_WEIGHT = 1_000_000;

type Entry = Record<string, unknown>;

function weightOf(entry: Entry | undefined, weighted: boolean): number {
  if (!entry) return 0;
  if (!weighted) return 1;
  const w = entry.weight;
  return typeof w === "number" && Number.isFinite(w) ? w : 0;
}

export interface ListInspection {
  hasStable: boolean;
  hasCanary: boolean;
  /** Canary share in percent of the pair; undefined when neither entry exists. */
  canaryWeight?: number;
}

export function inspectWeightedList(
  list: Entry[],
  key: string,
  stable: string,
  canary: string,
): ListInspection {
  const weighted = list.some(e => e.weight !== undefined);
  const s = list.find(e => e[key] === stable);
  const c = list.find(e => e[key] === canary);
  const total = weightOf(s, weighted) + weightOf(c, weighted);
  return {
    hasStable: !!s,
    hasCanary: !!c,
    ...(total > 0 ? { canaryWeight: Math.round((weightOf(c, weighted) * 100) / total) } : {}),
  };
}

/**
 * A new list with canary = canaryWeight and stable = 100 - canaryWeight (0 → entry removed, missing
 * entry with weight > 0 → added as a copy of the other one, next to it: stable before canary).
 * Order and unknown fields of all entries are kept.
 * Throws when neither entry exists or the list would exceed maxItems.
 */
export function splitWeightedList<T extends Entry>(
  list: T[],
  key: string,
  stable: string,
  canary: string,
  canaryWeight: number,
  maxItems = Infinity,
): T[] {
  if (!Number.isInteger(canaryWeight) || canaryWeight < 0 || canaryWeight > 100) {
    throw new RangeError(`canary weight ${canaryWeight} is not an integer percent (0-100)`);
  }
  const weighted = list.some(e => e.weight !== undefined);
  const stableEntry = list.find(e => e[key] === stable);
  const canaryEntry = list.find(e => e[key] === canary);
  if (!stableEntry && !canaryEntry) {
    throw new Error(`neither ${stable} nor ${canary} is in the list`);
  }
  const pairBefore = weightOf(stableEntry, weighted) + weightOf(canaryEntry, weighted);
  const scale = pairBefore > 0 ? 100 / pairBefore : 1;
  const desired: Record<string, number> = { [stable]: 100 - canaryWeight, [canary]: canaryWeight };

  const out: T[] = [];
  const withWeight = (entry: T, name: string, weight: number): T =>
    ({ ...structuredClone(entry), [key]: name, weight }) as T;
  const seen = new Set<unknown>();
  for (const entry of list) {
    const name = entry[key];
    if (name !== stable && name !== canary) {
      const w = Math.round(weightOf(entry, weighted) * scale);
      out.push({
        ...structuredClone(entry),
        weight: Math.min(MAX_WEIGHT, Math.max(MIN_WEIGHT, w)),
      });
      continue;
    }
    if (seen.has(name)) continue; // a repeated stable/canary entry would count twice
    seen.add(name);
    // A missing partner is inserted next to the existing one: stable before canary.
    const own = name as string;
    if (own === canary && !stableEntry && desired[stable] > 0) {
      out.push(withWeight(entry, stable, desired[stable]));
    }
    if (desired[own] > 0) out.push(withWeight(entry, own, desired[own]));
    if (own === stable && !canaryEntry && desired[canary] > 0) {
      out.push(withWeight(entry, canary, desired[canary]));
    }
  }
  if (out.length > maxItems) {
    throw new Error(`adding ${canary} would exceed the limit of ${maxItems} entries`);
  }
  return out;
}
