// Response text for the simulator's two modes (upstream --mode): `echo` returns the prompt (for
// chat: the last message), `random` returns a sentence from a fixed bank. Tokens are words with
// their leading whitespace, so streamed chunks concatenate back to the text. Pure.

const SENTENCES = [
  "Today is a nice sunny day.",
  "The temperature here is twenty-five degrees centigrade.",
  "Today it is partially cloudy and raining.",
  "To be or not to be that is the question.",
  "The rest is silence.",
  "Give a man a fish and you feed him for a day; teach a man to fish and you feed him for a lifetime.",
];

export type FinishReason = "stop" | "length";

export interface Generated {
  tokens: string[];
  finishReason: FinishReason;
}

export function tokenize(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

/** Deterministic PRNG so --seed reproduces a run. Returns [0, 1). */
export { seededRng as seededRandom } from "../../picker/core/rng";

/**
 * The response tokens. max_tokens truncates (finish "length"); with ignore_eos and max_tokens the
 * response has exactly max_tokens tokens, as upstream, which makes token counts controllable.
 */
export function generate(
  mode: "echo" | "random",
  echoText: string,
  maxTokens: number | undefined,
  ignoreEos: boolean,
  random: () => number,
): Generated {
  const pick = () => tokenize(SENTENCES[Math.floor(random() * SENTENCES.length)]);
  let tokens = mode === "echo" ? tokenize(echoText) : pick();
  if (mode === "random" && ignoreEos && maxTokens !== undefined) {
    while (tokens.length < maxTokens) tokens = tokens.concat(pick().map(t => " " + t.trimStart()));
  }
  if (
    maxTokens !== undefined &&
    tokens.length >= maxTokens &&
    (ignoreEos || tokens.length > maxTokens)
  ) {
    return { tokens: tokens.slice(0, maxTokens), finishReason: "length" };
  }
  return { tokens, finishReason: "stop" };
}

/** Plain text of an OpenAI message content: a string or an array of {type:"text", text}. */
export function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map(block => (block && typeof block === "object" && "text" in block ? String(block.text) : ""))
    .join(" ");
}
