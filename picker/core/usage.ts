import { StringDecoder } from "node:string_decoder";

// Token usage from model-server responses: the `usage` object of a JSON body, or of the SSE
// chunk that carries it (vLLM sends it in the last data chunk before `data: [DONE]` when the
// client asked for `stream_options.include_usage`).

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

function count(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** Reads OpenAI `usage`; accepts the Responses-API names (input_tokens/output_tokens) too. */
export function usageFromObject(body: unknown): TokenUsage | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const usage = (body as { usage?: unknown }).usage;
  if (typeof usage !== "object" || usage === null) return undefined;
  const u = usage as Record<string, unknown>;
  const prompt = count(u.prompt_tokens) ?? count(u.input_tokens);
  const completion = count(u.completion_tokens) ?? count(u.output_tokens);
  if (prompt === undefined && completion === undefined) return undefined;
  return { promptTokens: prompt ?? 0, completionTokens: completion ?? 0 };
}

export function usageFromJson(text: string): TokenUsage | undefined {
  const usage = usageAfterLastKey(text);
  if (usage) return usage;
  try {
    return usageFromObject(JSON.parse(text));
  } catch {
    return undefined;
  }
}

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * The object after the last `"usage":` key, parsed on its own: OpenAI answers put `usage` after
 * the generated text, which then needs no parsing (a whole-body JSON.parse was a measurable share
 * of the proxy's CPU). Undefined when there is no such object; the caller then parses it all.
 */
function usageAfterLastKey(text: string): TokenUsage | undefined {
  const key = text.lastIndexOf('"usage"');
  if (key <= 0 || text.charCodeAt(key - 1) === 0x5c) return undefined; // absent, or inside a string
  let i = key + 7;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  if (text[i] !== ":") return undefined;
  i++;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  if (text[i] !== "{") return undefined;
  let depth = 0;
  let inString = false;
  for (let j = i; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (inString) {
      if (c === 0x5c)
        j++; // skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) {
      try {
        return usageFromObject({ usage: JSON.parse(text.slice(i, j + 1)) });
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * Follows an SSE byte stream chunk by chunk and remembers the last `usage` it saw. Lines may be
 * split across chunks; only the unfinished tail is kept, bounded by `maxLineBytes`.
 */
export class SseUsageScanner {
  private tail = "";
  private last: TokenUsage | undefined;
  private skippingLongLine = false;
  // Keeps multi-byte characters that straddle two chunks intact.
  private readonly decoder = new StringDecoder("utf8");

  constructor(private readonly maxLineBytes = 1 << 20) {}

  push(chunk: Uint8Array | string): void {
    const text = typeof chunk === "string" ? chunk : this.decoder.write(chunk);
    let data = this.tail + text;
    let start = 0;
    for (;;) {
      const nl = data.indexOf("\n", start);
      if (nl < 0) break;
      if (!this.skippingLongLine) this.line(data.slice(start, nl));
      this.skippingLongLine = false;
      start = nl + 1;
    }
    data = data.slice(start);
    if (data.length > this.maxLineBytes) {
      // A runaway line without newline: drop it rather than grow without bound.
      this.skippingLongLine = true;
      data = "";
    }
    this.tail = data;
  }

  /** Call at end of stream: a final line without newline still counts. */
  finish(): TokenUsage | undefined {
    this.tail += this.decoder.end();
    if (this.tail.length > 0 && !this.skippingLongLine) this.line(this.tail);
    this.tail = "";
    return this.last;
  }

  get usage(): TokenUsage | undefined {
    return this.last;
  }

  private line(raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!line.startsWith("data:")) return;
    const payload = line.slice(5).trim();
    if (payload === "" || payload === "[DONE]" || !payload.includes('"usage"')) return;
    const usage = usageFromJson(payload);
    if (usage) this.last = usage;
  }
}

/**
 * The token usage of one response as it passes through a front door: an event stream is scanned
 * line by line; any other body is kept up to `maxBytes` and its `usage` read at the end (none
 * above that).
 */
export class ResponseUsage {
  private readonly sse?: SseUsageScanner;
  private kept: Buffer[] = [];
  private keptBytes = 0;

  constructor(
    contentType: string,
    private readonly maxBytes: number,
  ) {
    if (contentType.includes("text/event-stream")) this.sse = new SseUsageScanner();
  }

  /** An event stream: its chunks are for the client at once. */
  get streaming(): boolean {
    return this.sse !== undefined;
  }

  push(chunk: Buffer): void {
    if (this.sse) {
      this.sse.push(chunk);
      return;
    }
    if (this.keptBytes > this.maxBytes) return;
    this.keptBytes += chunk.length;
    // Above the limit nothing will be read: let go of what was kept.
    if (this.keptBytes > this.maxBytes) this.kept = [];
    else this.kept.push(chunk);
  }

  /** At the end of the response. */
  finish(): TokenUsage | undefined {
    if (this.sse) return this.sse.finish();
    const kept = this.kept;
    this.kept = [];
    return kept.length > 0 ? usageFromJson(Buffer.concat(kept).toString("utf8")) : undefined;
  }
}
