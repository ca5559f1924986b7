// lora-affinity-scorer: prefers endpoints where the request's LoRA adapter runs or can be loaded
// without a swap (only for requests whose target is an adapter picked by a split).

import { isMergedLoraRead } from "../promtext";
import { ScorerPlugin } from "../scheduler";
import { PluginParameters, onlyParameters } from "./parameters";

export const LORA_AFFINITY_SCORER = "lora-affinity-scorer";

/** LoRA affinity scores. */
export const loraScores = {
  /** The adapter runs there, or sits idle in one of its slots: no adapter swap. */
  active: 1,
  /** A free adapter slot. */
  freeSlot: 0.8,
  /** The adapter waits there for a slot: it will be loaded anyway. */
  waiting: 0.6,
  /** Every slot is taken but one holds an idle adapter: serving here swaps adapters. */
  evictIdle: 0.2,
  /** Every slot runs another adapter: the request waits until one drains. */
  full: 0,
};

/**
 * Adapter active > free slot > adapter waiting > an idle adapter must be evicted > full.
 * `vllm:lora_requests_info` is up to one scrape interval old and lists only adapters with
 * running or waiting requests. So adapters of requests we sent that are still in flight count as
 * running (unless the scrape shows them waiting), and the adapters we sent most recently fill the
 * remaining slots as idle ones (servers evict the least recently used). Without this, a pod idle
 * at its last scrape looks free for every adapter, gets two adapters at once with one slot, and
 * one of them waits behind the other or evicts it.
 */
export const loraAffinityScorer: ScorerPlugin = {
  type: LORA_AFFINITY_SCORER,
  name: LORA_AFFINITY_SCORER,
  score(request, endpoints) {
    if (!request.adapter) return endpoints.map(() => 1);
    const target = request.targetModel;
    return endpoints.map(e => {
      const read = e.metrics?.lora;
      if (!read) return loraScores.full;
      // A merged read lists every adapter as running (and waiting): every pod would score active
      // for every adapter and the queue alone would decide. Our requests in flight tell more.
      const lora = isMergedLoraRead(read) ? { ...read, running: [], waiting: [] } : read;
      if (lora.running.includes(target)) return loraScores.active;
      const sent = e.sentAdapters ?? new Map<string, number>();
      const running = new Set(lora.running);
      for (const [adapter, n] of sent) {
        if (n > 0 && !lora.waiting.includes(adapter)) running.add(adapter);
      }
      if (running.has(target)) {
        return running.size <= lora.maxLora
          ? loraScores.active
          : crowdedScore(target, running, sent, lora.maxLora);
      }
      const loaded = new Set(running);
      for (const adapter of [...sent.keys()].reverse()) {
        if (loaded.size >= lora.maxLora) break;
        if (!lora.waiting.includes(adapter)) loaded.add(adapter);
      }
      if (loaded.has(target)) return loraScores.active;
      if (new Set([...loaded, ...lora.waiting]).size < lora.maxLora) return loraScores.freeSlot;
      if (lora.waiting.includes(target)) return loraScores.waiting;
      return loaded.size > running.size ? loraScores.evictIdle : loraScores.full;
    });
  },
};

/**
 * More adapters in flight than the pod has slots: the ones in the slots run, the others wait
 * until one drains (a server keeps an adapter loaded while requests for it keep coming). When
 * every one of them is ours, the adapters with the most requests in flight are taken to hold the
 * slots: the target among them scores active, one behind `maxLora` adapters with more in flight
 * scores full, a tie at the boundary waiting. Without this, two one-slot pods that both got both
 * adapters score every request alike, the queue scorer alone decides, and they stay mixed — every
 * request for the other adapter a swap or a wait. A slot taken by requests we did not send (a
 * running adapter with none of ours in flight) leaves it unknown: waiting.
 */
function crowdedScore(
  target: string,
  running: ReadonlySet<string>,
  sent: ReadonlyMap<string, number>,
  maxLora: number,
): number {
  const mine = sent.get(target) ?? 0;
  let more = 0;
  let asMany = 0;
  for (const adapter of running) {
    const n = sent.get(adapter) ?? 0;
    if (n === 0) return loraScores.waiting;
    if (n > mine) more++;
    if (n >= mine) asMany++;
  }
  if (asMany <= maxLora) return loraScores.active;
  return more >= maxLora ? loraScores.full : loraScores.waiting;
}

export function newLoraAffinityScorer(name: string, parameters: PluginParameters): ScorerPlugin {
  onlyParameters(LORA_AFFINITY_SCORER, parameters, []);
  return { ...loraAffinityScorer, name };
}
