// A small parser of the Prometheus text exposition format (version 0.0.4), and the reading of
// the vLLM metrics the scheduler uses. Scrapes arrive every ~50 ms per pod and vLLM pages carry
// large histograms, so `vllmMetricsFromText` jumps to the few series it needs with indexOf
// instead of parsing every line.

import { parsePrometheusFloat } from "../../capabilities/api/prometheus-float";
import { EndpointMetrics, LoraInfo } from "./types";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function isNameChar(c: number, first: boolean): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    c === 0x5f || // _
    c === 0x3a || // :
    (!first && c >= 0x30 && c <= 0x39)
  );
}

/** Parses one sample line; returns undefined for comments, blanks and malformed lines. */
export function parseSampleLine(line: string): Sample | undefined {
  let i = 0;
  const n = line.length;
  while (i < n && (line[i] === " " || line[i] === "\t")) i++;
  if (i >= n || line[i] === "#") return undefined;
  const nameStart = i;
  if (!isNameChar(line.charCodeAt(i), true)) return undefined;
  while (i < n && isNameChar(line.charCodeAt(i), false)) i++;
  const name = line.slice(nameStart, i);
  const labels: Record<string, string> = {};
  while (i < n && (line[i] === " " || line[i] === "\t")) i++;
  if (line[i] === "{") {
    i++;
    for (;;) {
      while (i < n && (line[i] === " " || line[i] === "\t" || line[i] === ",")) i++;
      if (i >= n) return undefined;
      if (line[i] === "}") {
        i++;
        break;
      }
      const labelStart = i;
      if (!isNameChar(line.charCodeAt(i), true)) return undefined;
      while (i < n && isNameChar(line.charCodeAt(i), false)) i++;
      const label = line.slice(labelStart, i);
      while (i < n && line[i] === " ") i++;
      if (line[i] !== "=") return undefined;
      i++;
      while (i < n && line[i] === " ") i++;
      if (line[i] !== '"') return undefined;
      i++;
      let value = "";
      let closed = false;
      while (i < n) {
        const c = line[i];
        if (c === "\\" && i + 1 < n) {
          const e = line[i + 1];
          value += e === "n" ? "\n" : e;
          i += 2;
        } else if (c === '"') {
          closed = true;
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) return undefined;
      labels[label] = value;
    }
  }
  while (i < n && (line[i] === " " || line[i] === "\t")) i++;
  let end = i;
  while (end < n && line[end] !== " " && line[end] !== "\t") end++;
  const value = parsePrometheusFloat(line.slice(i, end));
  if (value === undefined) return undefined;
  return { name, labels, value };
}

/** Parses a whole exposition page; malformed lines are skipped, never fatal. */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const sample = parseSampleLine(line.endsWith("\r") ? line.slice(0, -1) : line);
    if (sample) samples.push(sample);
  }
  return samples;
}

/** The samples of one metric name, found without parsing unrelated lines. */
export function samplesNamed(text: string, name: string): Sample[] {
  const samples: Sample[] = [];
  let from = 0;
  for (;;) {
    const at = text.indexOf(name, from);
    if (at < 0) break;
    from = at + name.length;
    if (at > 0 && text[at - 1] !== "\n") continue; // inside another line (e.g. a HELP text)
    const next = text[at + name.length];
    if (next !== "{" && next !== " " && next !== "\t") continue; // a longer metric name
    let lineEnd = text.indexOf("\n", at);
    if (lineEnd < 0) lineEnd = text.length;
    const line = text.slice(at, lineEnd);
    const sample = parseSampleLine(line.endsWith("\r") ? line.slice(0, -1) : line);
    if (sample && sample.name === name) samples.push(sample);
    from = lineEnd;
  }
  return samples;
}

export const vllmMetricNames = {
  waiting: "vllm:num_requests_waiting",
  running: "vllm:num_requests_running",
  kvCache: "vllm:kv_cache_usage_perc",
  kvCacheLegacy: "vllm:gpu_cache_usage_perc",
  loraInfo: "vllm:lora_requests_info",
} as const;

function sumOf(samples: Sample[]): number | undefined {
  let total = 0;
  let seen = false;
  for (const s of samples) {
    if (Number.isFinite(s.value)) {
      total += s.value;
      seen = true;
    }
  }
  return seen ? total : undefined;
}

function maxOf(samples: Sample[]): number | undefined {
  let best: number | undefined;
  for (const s of samples) {
    if (Number.isFinite(s.value) && (best === undefined || s.value > best)) best = s.value;
  }
  return best;
}

/** "a, b:2,c" → ["a", "b", "c"]; newer vLLM builds append per-adapter counts after a colon. */
export function adapterList(label: string | undefined): string[] {
  if (!label) return [];
  const names: string[] = [];
  for (const part of label.split(",")) {
    const trimmed = part.trim().replace(/:\d+$/, "");
    if (trimmed !== "") names.push(trimmed);
  }
  return names;
}

/**
 * What `loraInfoFrom` keeps of one endpoint's previous scrape to tell tied series apart: the value
 * of every `vllm:lora_requests_info` series, and which states it read as current. One per
 * endpoint, updated in place by each read.
 */
export interface LoraSeriesMemory {
  values: Map<string, number>;
  current: Set<string>;
}

export function newLoraSeriesMemory(): LoraSeriesMemory {
  return { values: new Map(), current: new Set() };
}

const loraKey = (s: Sample) =>
  `${s.labels.max_lora ?? s.labels.max_loras ?? ""}\u0000${s.labels.running_lora_adapters ?? ""}\u0000${s.labels.waiting_lora_adapters ?? ""}`;

/**
 * The current LoRA state from `vllm:lora_requests_info`: every state the server went through
 * stays as a series whose value is the time it was last set, so the series with the highest value
 * is current. Servers that stamp whole seconds (llm-d-inference-sim: `time.Now().Unix()`) leave
 * several series tied at the top when the state changed more than once within that second, and
 * the exposition order says nothing about which came last (Go's client sorts series by label
 * values, Python's keeps the order they were first created in; upstream's EPP keeps the first of
 * the tied series, with Go's order the one with the fewest running adapters: a busy server reads
 * as idle). A tie is settled without the order:
 * - `memory` (the endpoint's previous scrape, ~50 ms ago): of the tied series, those whose value
 *   changed since then were set last; when none changed, the state read then still holds;
 * - `queues` (the same page's running and waiting request counts): a state that lists k running
 *   (waiting) adapters needs at least k running (waiting) requests, so an idle server reads idle;
 * - what is still tied (several changes between two scrapes) is merged.
 */
export function loraInfoFrom(
  samples: Sample[],
  queues?: { running?: number; waiting?: number },
  memory?: LoraSeriesMemory,
): LoraInfo | undefined {
  const valid = samples.filter(s => !Number.isNaN(s.value));
  let top = -Infinity;
  for (const s of valid) if (s.value > top) top = s.value;
  const tied = valid.filter(s => s.value === top);
  let current = tied;
  if (tied.length > 1) {
    if (memory && memory.values.size > 0) {
      const changed = tied.filter(s => memory.values.get(loraKey(s)) !== s.value);
      const held = tied.filter(s => memory.current.has(loraKey(s)));
      if (changed.length > 0) current = changed;
      else if (held.length > 0) current = held;
    }
    if (queues) {
      const fits = (s: Sample) =>
        (queues.running === undefined ||
          adapterList(s.labels.running_lora_adapters).length <= queues.running) &&
        (queues.waiting === undefined ||
          adapterList(s.labels.waiting_lora_adapters).length <= queues.waiting);
      const consistent = current.filter(fits);
      current = consistent.length > 0 ? consistent : tied.filter(fits);
      if (current.length === 0) current = tied;
    }
  }
  if (memory) {
    memory.values = new Map(valid.map(s => [loraKey(s), s.value]));
    memory.current = new Set(current.map(loraKey));
  }
  if (current.length === 0) return undefined;
  const running = new Set<string>();
  const waiting = new Set<string>();
  let maxLora = 0;
  for (const s of current) {
    for (const a of adapterList(s.labels.running_lora_adapters)) running.add(a);
    for (const a of adapterList(s.labels.waiting_lora_adapters)) waiting.add(a);
    const max = Number(s.labels.max_lora ?? s.labels.max_loras);
    if (Number.isFinite(max) && max > maxLora) maxLora = max;
  }
  return { running: [...running], waiting: [...waiting], maxLora };
}

/**
 * More adapters read as running than the server has slots: several tied states were merged (see
 * `loraInfoFrom`), so the read says neither which adapter holds a slot nor why requests wait.
 */
export function isMergedLoraRead(lora: LoraInfo): boolean {
  return lora.maxLora > 0 && lora.running.length > lora.maxLora;
}

/**
 * Reads the scheduler's inputs from a vLLM /metrics page. Returns undefined when the page has
 * none of the queue metrics (not a vLLM-compatible server). Queues are summed over series
 * (several engines), KV-cache use is the highest series. `loraMemory`: the endpoint's, kept
 * from scrape to scrape (see `loraInfoFrom`).
 */
export function vllmMetricsFromText(
  text: string,
  scrapedAtMs: number,
  loraMemory?: LoraSeriesMemory,
): EndpointMetrics | undefined {
  const waiting = sumOf(samplesNamed(text, vllmMetricNames.waiting));
  const running = sumOf(samplesNamed(text, vllmMetricNames.running));
  if (waiting === undefined && running === undefined) return undefined;
  const kv =
    maxOf(samplesNamed(text, vllmMetricNames.kvCache)) ??
    maxOf(samplesNamed(text, vllmMetricNames.kvCacheLegacy)) ??
    0;
  const lora = loraInfoFrom(
    samplesNamed(text, vllmMetricNames.loraInfo),
    { running, waiting },
    loraMemory,
  );
  return {
    waiting: waiting ?? 0,
    running: running ?? 0,
    kvCacheUsage: Math.min(Math.max(kv, 0), 1),
    lora,
    scrapedAtMs,
  };
}
