// Query templates: {{canary}}, {{stable}}, {{namespace}}, {{rollout}}, {{modelName}}, {{pool}},
// {{interval}}, {{weight}} and {{args.NAME}}.
//
// A value can never change the structure of the query. What a placeholder becomes depends on
// where it stands in the template:
//   inside "..." or '...'       the value's text, escaped for that quote (\\, the quote, control
//                               characters), so it stays inside the string;
//   inside [...] or after offset a duration (5m, 1h30m): validated, inserted raw;
//   anywhere else                a name becomes a complete "..." literal, {{interval}} a
//                               validated duration, {{weight}} a number; an arg becomes a
//                               number if it reads as one, a duration if it reads as one, else
//                               a "..." literal (put the placeholder in quotes to force a string).
// Placeholders inside `raw strings` are refused: a raw string cannot escape anything.

import { durationMs, isDuration } from "../duration";
import type { TemplateContext } from "./types";

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TemplateError";
  }
}

/** Everything a template may reference. Unset optional variables are an error when used. */
export interface QueryVariables {
  canary?: string;
  stable?: string;
  namespace?: string;
  rollout?: string;
  modelName?: string;
  pool?: string;
  /** A PromQL duration, the metric's interval by default. */
  interval?: string;
  /** Canary weight in percent. */
  weight?: number;
  args?: Record<string, string>;
}

const STRING_VARIABLES = ["canary", "stable", "namespace", "rollout", "modelName", "pool"] as const;
type StringVariable = (typeof STRING_VARIABLES)[number];
const KNOWN = [...STRING_VARIABLES, "interval", "weight", "args.NAME"];

const NUMBER_LITERAL_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const PLACEHOLDER_NAME_RE = /^(?:[A-Za-z][A-Za-z0-9]*|args\.[A-Za-z0-9_-]+)$/;
const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Variables for a metric's query from what the reconciler knows. */
export function variablesFor(
  ctx: TemplateContext,
  metric: { interval?: string; args?: Record<string, string> },
): QueryVariables {
  return {
    canary: ctx.canary,
    stable: ctx.stable,
    namespace: ctx.namespace,
    rollout: ctx.rollout,
    modelName: ctx.modelName,
    pool: ctx.pool,
    weight: ctx.weight,
    interval: metric.interval ?? "30s",
    args: metric.args ?? {},
  };
}

/** The body of a PromQL string literal for `quote` (the text between the quotes). */
export function escapePromQLString(value: string, quote: '"' | "'" = '"'): string {
  if (LONE_SURROGATE_RE.test(value)) {
    throw new TemplateError("value contains invalid Unicode (a lone surrogate)");
  }
  let out = "";
  for (const ch of value) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === "\\") out += "\\\\";
    else if (ch === quote) out += "\\" + quote;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + code.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out;
}

/** A complete double-quoted PromQL string literal. */
export function quotePromQLString(value: string): string {
  return `"${escapePromQLString(value, '"')}"`;
}

type Position = "double" | "single" | "raw" | "range" | "code";

interface Placeholder {
  name: string;
  start: number;
  end: number;
  position: Position;
}

/** Split a template into placeholders and where they stand (inside which quote, range, code). */
function scan(template: string): Placeholder[] {
  const found: Placeholder[] = [];
  let quote: '"' | "'" | "`" | null = null;
  let quoteStart = 0;
  let bracketDepth = 0;
  let inComment = false;
  let i = 0;
  while (i < template.length) {
    if (template.startsWith("{{", i)) {
      const close = template.indexOf("}}", i + 2);
      if (close < 0) throw new TemplateError(`unclosed "{{" at offset ${i}`);
      const name = template.slice(i + 2, close).trim();
      if (!PLACEHOLDER_NAME_RE.test(name)) {
        throw new TemplateError(
          `malformed placeholder "${template.slice(i, close + 2)}" at offset ${i}`,
        );
      }
      let position: Position;
      if (quote === '"') position = "double";
      else if (quote === "'") position = "single";
      else if (quote === "`") position = "raw";
      else if (bracketDepth > 0 || /\boffset\s*$/i.test(template.slice(0, i))) position = "range";
      else position = "code";
      found.push({ name, start: i, end: close + 2, position });
      i = close + 2;
      continue;
    }
    const ch = template[i];
    if (inComment) {
      if (ch === "\n") inComment = false;
    } else if (quote) {
      if (ch === "\\" && quote !== "`") i++;
      else if (ch === quote) quote = null;
      else if (ch === "\n" && quote !== "`") {
        throw new TemplateError(`line break inside the string starting at offset ${quoteStart}`);
      }
    } else if (ch === '"' || ch === "'" || ch === "`") {
      quote = ch;
      quoteStart = i;
    } else if (ch === "#") {
      inComment = true;
    } else if (ch === "[") {
      bracketDepth++;
    } else if (ch === "]") {
      bracketDepth = Math.max(0, bracketDepth - 1);
    }
    i++;
  }
  if (quote) throw new TemplateError(`unterminated string starting at offset ${quoteStart}`);
  return found;
}

/** Placeholder names a template uses, in order of appearance (validates the syntax). */
export function placeholdersOf(template: string): string[] {
  return scan(template).map(p => p.name);
}

function lookup(name: string, vars: QueryVariables): { kind: string; value: string | number } {
  if (name.startsWith("args.")) {
    const key = name.slice(5);
    const args = vars.args ?? {};
    if (!Object.prototype.hasOwnProperty.call(args, key)) {
      const known = Object.keys(args);
      throw new TemplateError(
        `{{${name}}} has no value: args.${key} is not set (${known.length ? `args: ${known.join(", ")}` : "the metric has no args"})`,
      );
    }
    return { kind: "arg", value: String(args[key]) };
  }
  if ((STRING_VARIABLES as readonly string[]).includes(name)) {
    const value = vars[name as StringVariable];
    if (value === undefined) throw new TemplateError(`{{${name}}} is not known for this rollout`);
    return { kind: "string", value };
  }
  if (name === "interval") {
    if (vars.interval === undefined) throw new TemplateError("{{interval}} is not set");
    return { kind: "duration", value: vars.interval };
  }
  if (name === "weight") {
    if (vars.weight === undefined) throw new TemplateError("{{weight}} is not known yet");
    return { kind: "number", value: vars.weight };
  }
  throw new TemplateError(`unknown placeholder {{${name}}} (known: ${KNOWN.join(", ")})`);
}

function render(p: Placeholder, kind: string, value: string | number): string {
  const text = String(value);
  if (kind === "number" && (typeof value !== "number" || !Number.isFinite(value))) {
    throw new TemplateError(`{{${p.name}}} must be a finite number, got ${text}`);
  }
  switch (p.position) {
    case "double":
      return escapePromQLString(text, '"');
    case "single":
      return escapePromQLString(text, "'");
    case "raw":
      throw new TemplateError(
        `{{${p.name}}} stands inside a \`raw string\`, which cannot escape a value: use "..." instead`,
      );
    case "range":
      if (!isDuration(text) || durationMs(text) === 0) {
        throw new TemplateError(
          `{{${p.name}}} stands where PromQL expects a duration, but its value ${JSON.stringify(text)} is not a positive duration like 30s or 5m`,
        );
      }
      return text;
    case "code":
      if (kind === "string") return quotePromQLString(text);
      if (kind === "number") return text;
      if (kind === "duration") {
        if (!isDuration(text)) {
          throw new TemplateError(
            `{{${p.name}}} must be a duration like 30s or 5m, got ${JSON.stringify(text)}`,
          );
        }
        return text;
      }
      // An arg outside quotes and ranges: a number or duration stays raw, anything else is a name.
      if (NUMBER_LITERAL_RE.test(text) || isDuration(text)) return text;
      return quotePromQLString(text);
  }
}

/** Substitute every placeholder; throws TemplateError for unknown names or invalid values. */
export function renderQuery(template: string, vars: QueryVariables): string {
  const placeholders = scan(template);
  let out = "";
  let last = 0;
  for (const p of placeholders) {
    const { kind, value } = lookup(p.name, vars);
    out += template.slice(last, p.start) + render(p, kind, value);
    last = p.end;
  }
  return out + template.slice(last);
}

// ---------------------------------------------------------------------------------------------
// Label matchers given by users (the `selector` arg of the built-in gates)

export type MatchOp = "=" | "!=" | "=~" | "!~";

export interface LabelMatcher {
  label: string;
  op: MatchOp;
  /** The decoded value (what Prometheus compares), not the literal. */
  value: string;
}

export const LABEL_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const SIMPLE_ESCAPES: Record<string, string> = {
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\\": "\\",
};

/** Decodes the PromQL (Go) string literal starting at `start`; returns its value and end. */
function readStringLiteral(text: string, start: number): { value: string; end: number } {
  const quote = text[start];
  let value = "";
  let i = start + 1;
  while (i < text.length) {
    const ch = text[i];
    if (ch === quote) return { value, end: i + 1 };
    if (quote === "`") {
      value += ch;
      i++;
      continue;
    }
    if (ch === "\n") throw new TemplateError(`line break inside the string at offset ${start}`);
    if (ch !== "\\") {
      value += ch;
      i++;
      continue;
    }
    const next = text[i + 1] ?? "";
    const hex = (digits: number) => {
      const body = text.slice(i + 2, i + 2 + digits);
      if (!new RegExp(`^[0-9A-Fa-f]{${digits}}$`).test(body)) {
        throw new TemplateError(`bad \\${next} escape at offset ${i}`);
      }
      const code = parseInt(body, 16);
      if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
        throw new TemplateError(`invalid code point in the escape at offset ${i}`);
      }
      i += 2 + digits;
      return String.fromCodePoint(code);
    };
    if (next in SIMPLE_ESCAPES) {
      value += SIMPLE_ESCAPES[next];
      i += 2;
    } else if (next === quote) {
      value += quote;
      i += 2;
    } else if (next === "x") value += hex(2);
    else if (next === "u") value += hex(4);
    else if (next === "U") value += hex(8);
    else if (/^[0-7]{3}$/.test(text.slice(i + 1, i + 4))) {
      const code = parseInt(text.slice(i + 1, i + 4), 8);
      if (code > 255) throw new TemplateError(`octal escape above \\377 at offset ${i}`);
      value += String.fromCharCode(code);
      i += 4;
    } else {
      throw new TemplateError(`unknown escape \\${next} at offset ${i}`);
    }
  }
  throw new TemplateError(`unterminated string starting at offset ${start}`);
}

/**
 * Parses label matchers as written inside a PromQL selector: `a="x", b=~"y|z"`, optionally in
 * braces. Values are PromQL string literals ("...", '...' or `...`) and are decoded, so the caller
 * re-quotes them (formatLabelMatcher) instead of pasting the user's text into a query.
 */
export function parseLabelMatchers(text: string): LabelMatcher[] {
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  skipSpace();
  const braced = text[i] === "{";
  if (braced) i++;
  const matchers: LabelMatcher[] = [];
  for (;;) {
    skipSpace();
    if (i >= text.length || (braced && text[i] === "}")) break;
    const name = /[A-Za-z_][A-Za-z0-9_]*/y;
    name.lastIndex = i;
    const label = name.exec(text)?.[0];
    if (!label) throw new TemplateError(`expected a label name at offset ${i}`);
    i += label.length;
    skipSpace();
    const op = (["=~", "!~", "!=", "="] as const).find(o => text.startsWith(o, i));
    if (!op) throw new TemplateError(`expected =, !=, =~ or !~ after ${label} at offset ${i}`);
    i += op.length;
    skipSpace();
    if (!['"', "'", "`"].includes(text[i])) {
      throw new TemplateError(`expected a quoted value after ${label}${op} at offset ${i}`);
    }
    const { value, end } = readStringLiteral(text, i);
    i = end;
    matchers.push({ label, op, value });
    skipSpace();
    if (text[i] === ",") i++;
    else break;
  }
  skipSpace();
  if (braced) {
    if (text[i] !== "}") throw new TemplateError(`expected "}" at offset ${i}`);
    i++;
    skipSpace();
  }
  if (i < text.length)
    throw new TemplateError(`unexpected ${JSON.stringify(text[i])} at offset ${i}`);
  return matchers;
}

/** One matcher as PromQL text, its value re-quoted by quotePromQLString. */
export function formatLabelMatcher(m: LabelMatcher): string {
  return `${m.label}${m.op}${quotePromQLString(m.value)}`;
}
