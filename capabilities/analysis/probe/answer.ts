// Reading one OpenAI-style answer (a JSON body, or server-sent events when streamed) into what the
// checks need: the served model, the content (bounded) and the time to the first content chunk.
import type { Dispatcher } from "undici";
import { PROBE_LIMITS } from "./types";

export interface ReadAnswer {
  model?: string;
  content: string;
  ttftMs?: number;
  errorType?: string;
  error?: string;
}

interface Choice {
  message?: { content?: unknown };
  delta?: { content?: unknown };
  text?: unknown;
}

/** The content of one answer or one streamed chunk (chat message, chat delta or completion text). */
function contentOf(json: unknown): string {
  const choice = (json as { choices?: Choice[] })?.choices?.[0];
  const content = choice?.message?.content ?? choice?.delta?.content ?? choice?.text;
  return typeof content === "string" ? content : "";
}

function modelOf(json: unknown): string | undefined {
  const model = (json as { model?: unknown })?.model;
  return typeof model === "string" ? model : undefined;
}

const bounded = (text: string) => text.slice(0, PROBE_LIMITS.maxContentChars);

/** An OpenAI error body's `error.type` (or `code`) when it is a short token, e.g. NotFoundError. */
function errorTypeOf(json: unknown): string | undefined {
  const error = (json as { error?: { type?: unknown; code?: unknown } })?.error;
  for (const value of [error?.type, error?.code]) {
    const text = typeof value === "number" ? String(value) : value;
    if (typeof text === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(text)) return text;
  }
  return undefined;
}

const notAnAnswer = (bytes: number) => ({
  error: `not an OpenAI answer (${bytes} bytes, not recorded)`,
});

/** Parses the `data:` lines of server-sent events as they arrive. */
class EventStream {
  private pending = "";
  model?: string;
  content = "";
  ttftMs?: number;
  error?: string;

  push(text: string, elapsedMs: number) {
    const lines = (this.pending + text).split("\n");
    this.pending = lines.pop() ?? "";
    for (const line of lines) this.line(line.trim(), elapsedMs);
  }

  private line(line: string, elapsedMs: number) {
    if (!line.startsWith("data:")) return;
    const data = line.slice(5).trim();
    if (data === "" || data === "[DONE]") return;
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      this.error ??= "a streamed event is not JSON";
      return;
    }
    // Only an OpenAI chunk (with `choices`) counts, as for a JSON answer: the model goes into
    // status, so another service's events must not be copied there.
    if (!Array.isArray((json as { choices?: unknown })?.choices)) return;
    this.model ??= modelOf(json);
    const part = contentOf(json);
    if (part !== "" && this.ttftMs === undefined) this.ttftMs = elapsedMs;
    if (this.content.length < PROBE_LIMITS.maxContentChars)
      this.content = bounded(this.content + part);
  }
}

/**
 * Reads `body` (at most PROBE_LIMITS.maxBodyBytes; the rest is discarded). Streamed: the events'
 * model, joined content and TTFT. Otherwise the JSON answer's model and content. Only an OpenAI
 * answer's content is kept (it goes into status): any other body — an error page, or whatever a
 * URL pointing elsewhere returns — is not, so a probe cannot be used to read other services; of
 * an OpenAI error body only its short `error.type` token is kept.
 */
export async function readAnswer(
  body: Dispatcher.ResponseData["body"],
  stream: boolean,
  elapsedMs: () => number,
): Promise<ReadAnswer> {
  const events = stream ? new EventStream() : undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > PROBE_LIMITS.maxBodyBytes) {
      truncated = true;
      body.destroy();
      break;
    }
    if (events) events.push(buffer.toString("utf8"), elapsedMs());
    else chunks.push(buffer);
  }
  if (events) {
    const { model, content, ttftMs } = events;
    const error = truncated
      ? `answer larger than ${PROBE_LIMITS.maxBodyBytes} bytes`
      : events.error;
    return { model, content, ttftMs, ...(error ? { error } : {}) };
  }
  if (truncated)
    return { content: "", error: `answer larger than ${PROBE_LIMITS.maxBodyBytes} bytes` };
  const text = Buffer.concat(chunks).toString("utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { content: "", ...notAnAnswer(size) };
  }
  if (Array.isArray((json as { choices?: unknown })?.choices))
    return { model: modelOf(json), content: bounded(contentOf(json)) };
  const errorType = errorTypeOf(json);
  return { content: "", ...(errorType ? { errorType } : notAnAnswer(size)) };
}
