// Spec and observation shapes of the probe gate: requests sent to the canary (and the stable) and
// the answers they got, judged by judge.ts. Mirrored from the CRD's metric `probe` block.
import type { SecretKeyRef } from "../types";

export type ProbeApi = "chat" | "completions";
export type ProbeSide = "canary" | "stable";

/** What a passing answer looks like (every check given must hold). */
export interface ProbeExpect {
  /** HTTP status, default 200. */
  status?: number;
  /** The answer's `model` field, a template; default the model sent, "*" accepts any. */
  model?: string;
  contains?: string[];
  notContains?: string[];
  /** Linear-time regular expression the content must match somewhere. */
  regex?: string;
  /** JSON Schema (JSON text) the content, parsed as JSON, must satisfy. */
  jsonSchema?: string;
  maxLatency?: string;
  /** Time to first token bound; needs stream. */
  maxTTFT?: string;
}

export interface ProbeSpec {
  /** POST target with the path, a template rendered per side. */
  url: string;
  api?: ProbeApi;
  /** The model name sent, a template; default the side's adapter / the rollout's model name. */
  model?: string;
  prompts: string[];
  /** Requests per side and measurement, default prompts.length. */
  requests?: number;
  /** Requests per second per side, default 5. */
  rate?: number;
  maxTokens?: number;
  stream?: boolean;
  /** Per-request time limit, default 30s. */
  timeout?: string;
  headers?: Record<string, string>;
  bearerTokenSecretRef?: SecretKeyRef;
  /** Probe the stable too (default true). */
  compareStable?: boolean;
  expect?: ProbeExpect;
}

/** One side's requests, rendered: where to send them and what to send. */
export interface SideRequests {
  side: ProbeSide;
  url: string;
  headers: Record<string, string>;
  /** The model name sent in every body. */
  model: string;
  /** One JSON body per request, in order. */
  bodies: string[];
}

/** A probe ready to run: the sides' requests and how to send them. */
export interface ResolvedProbe {
  sides: SideRequests[];
  /** Number of prompts (request i sends prompt i % prompts). */
  prompts: number;
  /** Requests per second per side. */
  rate: number;
  timeoutMs: number;
  stream: boolean;
  bearerTokenSecretRef?: SecretKeyRef;
}

/** What one request got back (content bounded by the client). */
export interface ProbeAnswer {
  /** Index of the prompt sent. */
  prompt: number;
  /** HTTP status; absent when no answer came (error). */
  status?: number;
  /** The answer's `model` field. */
  model?: string;
  /** choices[0].message.content (chat) or choices[0].text (completions), streamed parts joined. */
  content: string;
  /** Time from sending to the last byte. */
  latencyMs: number;
  /** Time to the first streamed content chunk (stream only). */
  ttftMs?: number;
  /** An OpenAI error body's `error.type` (a short token), e.g. NotFoundError. */
  errorType?: string;
  /** No usable answer: network error, timeout, a body that is not an OpenAI answer. */
  error?: string;
}

/** Every answer of one measurement, per side (stable absent when compareStable is false). */
export interface ProbeObservation {
  canary: ProbeAnswer[];
  stable?: ProbeAnswer[];
}

/** Upper bounds that keep probes and status small. */
export const PROBE_LIMITS = {
  /** Response bytes read per request. */
  maxBodyBytes: 256 * 1024,
  /** Content kept per answer (what the checks see; regex sees at most this). */
  maxContentChars: 4096,
  /** Content shown in a measurement's message. */
  shownContentChars: 200,
  /** Whole measurement message. */
  maxMessageChars: 1024,
  /** Requests in flight per side. */
  concurrency: 8,
} as const;

export const PROBE_DEFAULTS = {
  api: "chat" as ProbeApi,
  rate: 5,
  maxTokens: 32,
  timeout: "30s",
  status: 200,
  successCondition: "result == 1",
} as const;
