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
