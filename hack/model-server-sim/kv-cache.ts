// The prefix cache of llm-d-inference-sim's `--enable-kvcache` (pkg/kv-cache: kv_cache.go,
// block_cache.go): a request's prompt is cut into blocks of block-size tokens, each block keyed
// by a hash chained over the model and all earlier blocks (equal keys = equal prefixes). While a
// request runs its blocks are in use (reference-counted); when it ends they stay cached, unused,
// until a new block needs their room (the least recently used goes first). A request's cached
// tokens are (blocks already cached) × block-size, and upstream's TTFT then charges
// prefill-time-per-token only for the others. Pure: no timers, no I/O.
import { createHash } from "node:crypto";

/** Keys of the prompt's complete blocks; the model is part of the first key. */
export function promptBlockKeys(model: string, tokens: readonly string[], blockSize: number) {
  const keys: string[] = [];
  let parent = model;
  for (let end = blockSize; end <= tokens.length; end += blockSize) {
    parent = createHash("sha1")
      .update(parent)
      .update("\u0000")
      .update(tokens.slice(end - blockSize, end).join("\u0001"))
      .digest("base64");
    keys.push(parent);
  }
  return keys;
}

export class PrefixCache {
  /** Block key -> requests running with it. */
  private readonly used = new Map<string, number>();
  /** Cached blocks no running request holds, least recently released first. */
  private readonly unused = new Set<string>();
  private readonly requests = new Map<object, readonly string[]>();

  constructor(private readonly maxBlocks: number) {}

  /**
   * Takes the request's blocks into the cache and returns how many were cached already, or
   * undefined when they do not fit beside the blocks running requests hold (upstream answers
   * that with an error; the request then runs without the cache).
   */
  start(request: object, keys: readonly string[]): number | undefined {
    const distinct = [...new Set(keys)];
    const fresh = distinct.filter(k => !this.used.has(k) && !this.unused.has(k));
    const reused = distinct.filter(k => this.unused.has(k));
    if (this.used.size + reused.length + fresh.length > this.maxBlocks) return undefined;
    for (const k of distinct) {
      if (this.unused.delete(k)) this.used.set(k, 1);
      else if (this.used.has(k)) this.used.set(k, this.used.get(k)! + 1);
    }
    for (const k of fresh) {
      if (this.used.size + this.unused.size >= this.maxBlocks) {
        const oldest = this.unused.values().next().value as string;
        this.unused.delete(oldest);
      }
      this.used.set(k, 1);
    }
    this.requests.set(request, distinct);
    return distinct.length - fresh.length;
  }

  /** The request ended (or left): its blocks stay cached, unused once no one else holds them. */
  finish(request: object): void {
    const keys = this.requests.get(request);
    if (!keys) return;
    this.requests.delete(request);
    for (const k of keys) {
      const n = this.used.get(k) ?? 0;
      if (n > 1) this.used.set(k, n - 1);
      else {
        this.used.delete(k);
        this.unused.add(k);
      }
    }
  }

  /** Share of the cache running requests hold: vllm:kv_cache_usage_perc. */
  get usage(): number {
    return this.used.size / this.maxBlocks;
  }

  get cachedBlocks(): number {
    return this.used.size + this.unused.size;
  }
}
