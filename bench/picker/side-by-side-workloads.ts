// Part (e)'s workloads (pure): part (b)'s queued pods (b1) and shared prefixes (b4) as request
// bodies that the picker and the upstream EPP v1.5.0 both hash for prefix affinity. Both take a
// completion's `prompt` text in blocks of 64 characters (the EPP: 16-token blocks × 4 characters
// per token, its block size read from the pods' vllm:cache_config_info), so the bodies are
// completions with a `prompt`, not chat messages. The model is the pods' base model: neither the
// EPP nor lwepp splits traffic onto adapters.

import { poissonArrivals, seededRandom } from "./stats";

/**
 * Prompts sharing long prefixes (part (b)'s b4, like the upstream benchmarks' shared_prefix data):
 * `groups` documents of `prefixWords` tokens, each request one of them plus its own question, on
 * pods with llm-d-inference-sim's prefix cache (`--enable-kvcache`): TTFT = prefill overhead +
 * uncached prompt tokens × prefill time per token.
 */
export interface SharedPrefixes {
  groups: number;
  prefixWords: number;
  questionWords: number;
  prefillOverheadMs: number;
  prefillPerTokenMs: number;
  /** Per pod, in blocks of 16 tokens. */
  kvCacheBlocks: number;
}

export interface SchedulingWorkload {
  /** Part (b)'s scenario it repeats (`--workload b1|b4`). */
  id: string;
  name: string;
  what: string;
  pods: number;
  maxNumSeqs: number;
  ttftMs: number;
  itlMs: number;
  /** Output lengths are exponential with this mean (at least 1, at most maxTokens). */
  meanTokens: number;
  maxTokens: number;
  /** Offered load as a share of the capacity measured before. */
  load: number;
  shared?: SharedPrefixes;
}

/** b4's documents and pods' caches (parts (b) and (e)). */
export const sharedPrefixDocuments: SharedPrefixes = {
  groups: 32,
  prefixWords: 1024,
  questionWords: 32,
  prefillOverheadMs: 20,
  prefillPerTokenMs: 0.25,
  kvCacheBlocks: 1024,
};

const queuedPods = { pods: 4, maxNumSeqs: 2, ttftMs: 40, itlMs: 8, meanTokens: 24, maxTokens: 256 };

export const schedulingWorkloads: SchedulingWorkload[] = [
  {
    ...queuedPods,
    id: "b1",
    name: "queued pods (b1)",
    what: "4 pods × max-num-seqs 2, TTFT 40 ms, ITL 8 ms, output lengths exponential (mean 24 tokens, 1–256), 85 % load",
    load: 0.85,
  },
  {
    ...queuedPods,
    id: "b4",
    name: "shared prefixes (b4)",
    what:
      "32 documents of 1,024 tokens, each request one of them plus its own 32-token question; " +
      "4 pods × max-num-seqs 4 with the simulator's prefix cache (1,024 blocks of 16 tokens) and " +
      "prefill (20 ms + 0.25 ms per uncached prompt token), ITL 8 ms, the same output lengths, 90 % load",
    maxNumSeqs: 4,
    ttftMs: 0, // from the prefill model
    load: 0.9,
    shared: sharedPrefixDocuments,
  },
];

/** The simulator's prefix cache and prefill model, as part (b) sets them. */
export function workloadSimArgs(w: { shared?: SharedPrefixes }): string[] {
  const p = w.shared;
  if (!p) return [];
  return [
    "--enable-kvcache",
    `--kv-cache-size=${p.kvCacheBlocks}`,
    "--block-size=16",
    `--prefill-overhead=${p.prefillOverheadMs}ms`,
    `--prefill-time-per-token=${p.prefillPerTokenMs * 1000}us`,
  ];
}

/**
 * What an operator tells the picker about these pods, as in part (b): how many prefix blocks (64
 * characters) one pod caches — its KV blocks × 16 tokens at about 8 characters per token of these
 * prompts. The EPP reads the pods' block count itself (its prefix plugin's autoTune).
 */
export function workloadPickerFlags(w: { shared?: SharedPrefixes }): string[] {
  if (!w.shared) return [];
  return ["--prefix-lru-capacity", String((w.shared.kvCacheBlocks * 16 * 8) / 64)];
}

/** Exponentially distributed output lengths, the same for every picker. */
export function outputLengths(
  w: { meanTokens: number; maxTokens: number },
  count: number,
  seed: number,
): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () =>
    Math.min(w.maxTokens, Math.max(1, Math.round(-w.meanTokens * Math.log(1 - random())))),
  );
}

/** Request i's prompt: one of the shared documents plus its own question, or a short one. */
export function prompts(w: SchedulingWorkload, count: number, seed: number): string[] {
  if (w.shared) return sharedPrompts(w.shared, count, seed);
  return Array.from({ length: count }, (_, i) => `Request ${i}: things to do in Porto.`);
}

/** The prompts of a shared-prefix workload: each one of the documents, chosen uniformly. */
export function sharedPrompts(p: SharedPrefixes, count: number, seed: number): string[] {
  const random = seededRandom(seed);
  const documents = Array.from({ length: p.groups }, (_, g) =>
    Array.from({ length: p.prefixWords }, (_, k) => `g${g}w${k}`).join(" "),
  );
  return Array.from({ length: count }, (_, i) => {
    const question = Array.from({ length: p.questionWords }, (_, k) => `q${i}w${k}`).join(" ");
    return `${documents[Math.floor(random() * p.groups)]} ${question}`;
  });
}

export const MODEL = "mymodel";

/** A streamed completion of exactly `tokens` tokens (ignore_eos), as part (b) sends. */
export function completionBody(prompt: string, tokens: number): Buffer {
  return Buffer.from(
    JSON.stringify({ model: MODEL, prompt, max_tokens: tokens, ignore_eos: true, stream: true }),
  );
}

/** One arrival sequence and its bodies, the same for every picker and round. */
export function requestsOf(
  w: SchedulingWorkload,
  rate: number,
  seconds: number,
): { arrivalsMs: number[]; bodies: Buffer[] } {
  const arrivalsMs = poissonArrivals(rate, seconds * 1000, seededRandom(2024));
  const lengths = outputLengths(w, arrivalsMs.length, 99);
  const texts = prompts(w, arrivalsMs.length, 98);
  return { arrivalsMs, bodies: lengths.map((n, i) => completionBody(texts[i], n)) };
}
