// Parsing of OpenAI-compatible request bodies (/v1/completions, /v1/chat/completions).
// Every malformed input ends in a PickerError with a precise 4xx; nothing here throws.

import { PickerError, pickerError } from "./types";
import { isRecord } from "../../capabilities/api/objects";

/** Byte range of the top-level `model` value (with its quotes) in the original body. */
export interface ByteSpan {
  start: number;
  end: number;
}

export interface ParsedRequest {
  model: string;
  stream: boolean;
  /** The text whose prefix blocks are hashed for prefix-cache affinity ("" when none). */
  promptText: string;
  /** vLLM's `cache_salt` separates prefix caches; it is part of the first block hash. */
  cacheSalt: string;
  modelSpan: ByteSpan;
}

export type ParseResult = { ok: true; request: ParsedRequest } | { ok: false; error: PickerError };

const bad = (message: string): ParseResult => ({
  ok: false,
  error: pickerError("BadRequest", message),
});

function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

/** Parses and validates the fields the picker relies on; the model server validates the rest. */
export function parseInferenceRequest(body: Uint8Array): ParseResult {
  if (body.length === 0) return bad("request body is empty; expected a JSON object");
  const buffer = Buffer.isBuffer(body)
    ? body
    : Buffer.from(body.buffer, body.byteOffset, body.length);
  let parsed: unknown;
  try {
    parsed = JSON.parse(buffer.toString("utf8"));
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return bad(`request body is not valid JSON: ${detail}`);
  }
  if (!isRecord(parsed)) return bad("request body must be a JSON object");

  const model = own(parsed, "model");
  if (model === undefined) return bad("missing required field 'model'");
  if (typeof model !== "string") return bad("field 'model' must be a string");
  if (model.length === 0) return bad("field 'model' must not be empty");

  const stream = own(parsed, "stream");
  if (stream !== undefined && stream !== null && typeof stream !== "boolean") {
    return bad("field 'stream' must be a boolean");
  }
  const messages = own(parsed, "messages");
  if (messages !== undefined && !Array.isArray(messages)) {
    return bad("field 'messages' must be an array");
  }
  const prompt = own(parsed, "prompt");
  if (prompt !== undefined && typeof prompt !== "string" && !Array.isArray(prompt)) {
    return bad("field 'prompt' must be a string or an array");
  }
  const cacheSalt = own(parsed, "cache_salt");

  const modelSpan = findTopLevelValue(buffer, "model");
  if (modelSpan === undefined) return bad("field 'model' could not be located in the body");

  return {
    ok: true,
    request: {
      model,
      stream: stream === true,
      promptText: promptTextOf(prompt, messages),
      cacheSalt: typeof cacheSalt === "string" ? cacheSalt : "",
      modelSpan,
    },
  };
}

function promptTextOf(prompt: unknown, messages: unknown): string {
  try {
    if (typeof prompt === "string") return prompt;
    if (Array.isArray(prompt)) {
      return prompt.every(p => typeof p === "string") ? prompt.join("") : JSON.stringify(prompt);
    }
    if (Array.isArray(messages)) return JSON.stringify(messages);
  } catch {
    // Pathologically nested input: no prefix affinity for it, but the request is still valid.
  }
  return "";
}

/**
 * Replaces the `model` value in place and keeps every other byte, so number precision, key
 * order and formatting reach the model server exactly as the client sent them.
 */
export function rewriteModel(body: Buffer, span: ByteSpan, newModel: string): Buffer {
  const value = Buffer.from(JSON.stringify(newModel), "utf8");
  return Buffer.concat([body.subarray(0, span.start), value, body.subarray(span.end)]);
}

// --- A byte scanner over JSON that JSON.parse has already accepted. ---------------------------
// Structural characters are ASCII and never occur inside multi-byte UTF-8 sequences, so byte
// offsets found here are exact.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(b: Buffer, i: number): number {
  while (i < b.length && isWs(b[i])) i++;
  return i;
}

/** `i` points at an opening quote; returns the index after the closing quote. */
function scanString(b: Buffer, i: number): number {
  i++;
  while (i < b.length) {
    const c = b[i];
    if (c === BACKSLASH) i += 2;
    else if (c === QUOTE) return i + 1;
    else i++;
  }
  return b.length;
}

function scanValue(b: Buffer, i: number): number {
  const c = b[i];
  if (c === QUOTE) return scanString(b, i);
  if (c === OPEN_OBJ || c === OPEN_ARR) {
    let depth = 0;
    while (i < b.length) {
      const d = b[i];
      if (d === QUOTE) {
        i = scanString(b, i);
        continue;
      }
      if (d === OPEN_OBJ || d === OPEN_ARR) depth++;
      else if (d === CLOSE_OBJ || d === CLOSE_ARR) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return b.length;
  }
  while (i < b.length) {
    const d = b[i];
    if (d === COMMA || d === CLOSE_OBJ || d === CLOSE_ARR || isWs(d)) return i;
    i++;
  }
  return i;
}

function keyEquals(b: Buffer, start: number, end: number, key: string): boolean {
  const raw = b.subarray(start + 1, end - 1);
  if (!raw.includes(BACKSLASH)) return raw.length === key.length && raw.toString("latin1") === key;
  try {
    return JSON.parse(b.toString("utf8", start, end)) === key;
  } catch {
    return false;
  }
}

/** Span of the last top-level occurrence of `key` (JSON.parse keeps the last duplicate too). */
export function findTopLevelValue(b: Buffer, key: string): ByteSpan | undefined {
  let i = skipWs(b, 0);
  if (b[i] !== OPEN_OBJ) return undefined;
  i++;
  let found: ByteSpan | undefined;
  while (i < b.length) {
    i = skipWs(b, i);
    if (b[i] === CLOSE_OBJ) break;
    if (b[i] !== QUOTE) return undefined;
    const keyStart = i;
    const keyEnd = scanString(b, i);
    i = skipWs(b, keyEnd);
    if (b[i] !== COLON) return undefined;
    i = skipWs(b, i + 1);
    const valueStart = i;
    const valueEnd = scanValue(b, i);
    if (keyEquals(b, keyStart, keyEnd, key)) found = { start: valueStart, end: valueEnd };
    i = skipWs(b, valueEnd);
    if (b[i] === COMMA) i++;
  }
  return found;
}
