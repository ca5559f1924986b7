// Prefix-cache affinity: the prompt is cut into fixed-size blocks, block i's hash chains over
// blocks 0..i (so equal hashes mean equal prefixes), and an index remembers which endpoint
// was sent which block. Same idea as the upstream EPP's prefix plugin (block size 64 chars,
// at most 256 blocks, an LRU per server); our hash is a 53-bit JS hash instead of xxhash.

import { LruMap } from "./lru";

export interface PrefixConfig {
  /** Characters per block; vLLM's 16-token blocks at ~4 characters per token. */
  blockSize: number;
  maxBlocks: number;
  /** Blocks remembered per endpoint before the least recently used one is forgotten. */
  capacityPerEndpoint: number;
}

export const defaultPrefixConfig: PrefixConfig = {
  blockSize: 64,
  maxBlocks: 256,
  capacityPerEndpoint: 31250,
};

/** cyrb53-style hash of s[start, end) seeded with `seed`; a safe integer usable as a Map key. */
function hashRange(s: string, start: number, end: number, seed: number): number {
  let h1 = 0xdeadbeef ^ (seed >>> 0);
  let h2 = 0x41c6ce57 ^ Math.floor(seed / 4294967296);
  for (let i = start; i < end; i++) {
    const ch = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * Hashes of the complete blocks of `text`. The first hash is seeded with `seed` (target model
 * and cache salt), because different models never share KV cache.
 */
export function hashPromptBlocks(seed: string, text: string, config: PrefixConfig): number[] {
  const blocks = Math.min(Math.floor(text.length / config.blockSize), config.maxBlocks);
  const hashes = new Array<number>(blocks);
  let previous = hashRange(seed, 0, seed.length, 0);
  for (let b = 0; b < blocks; b++) {
    previous = hashRange(text, b * config.blockSize, (b + 1) * config.blockSize, previous);
    hashes[b] = previous;
  }
  return hashes;
}

/** Which endpoints were sent which prefix blocks, bounded per endpoint. */
export class PrefixIndex {
  private readonly byEndpoint = new Map<string, LruMap<number, true>>();
  private readonly byHash = new Map<number, Set<string>>();

  constructor(private readonly capacityPerEndpoint: number) {}

  /** Records that `endpoint` now holds these blocks. */
  add(hashes: readonly number[], endpoint: string): void {
    let lru = this.byEndpoint.get(endpoint);
    if (!lru) {
      lru = new LruMap<number, true>(this.capacityPerEndpoint);
      this.byEndpoint.set(endpoint, lru);
    }
    for (const hash of hashes) {
      const evicted = lru.set(hash, true);
      let holders = this.byHash.get(hash);
      if (!holders) {
        holders = new Set();
        this.byHash.set(hash, holders);
      }
      holders.add(endpoint);
      if (evicted !== undefined) this.forget(evicted, endpoint);
    }
  }

  /** Number of leading blocks each endpoint holds contiguously from the first block. */
  longestMatches(hashes: readonly number[]): Map<string, number> {
    const matched = new Map<string, number>();
    for (let i = 0; i < hashes.length; i++) {
      const holders = this.byHash.get(hashes[i]);
      if (!holders) break;
      let extended = false;
      for (const endpoint of holders) {
        if ((matched.get(endpoint) ?? 0) === i) {
          matched.set(endpoint, i + 1);
          extended = true;
        }
      }
      if (!extended) break;
    }
    return matched;
  }

  /** Drops endpoints that left the pool. */
  retain(endpoints: ReadonlySet<string>): void {
    for (const [endpoint, lru] of this.byEndpoint) {
      if (endpoints.has(endpoint)) continue;
      for (const hash of lru.keys()) this.forget(hash, endpoint);
      this.byEndpoint.delete(endpoint);
    }
  }

  get size(): number {
    return this.byHash.size;
  }

  private forget(hash: number, endpoint: string): void {
    const holders = this.byHash.get(hash);
    if (!holders) return;
    holders.delete(endpoint);
    if (holders.size === 0) this.byHash.delete(hash);
  }
}
