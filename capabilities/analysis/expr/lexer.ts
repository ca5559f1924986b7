// The condition language's tokens: numbers, identifiers and operators, with their position.
import { ExpressionError } from "./ast";

export type Token =
  | { kind: "number"; value: number; text: string; pos: number }
  | { kind: "ident"; text: string; pos: number }
  | { kind: "op"; text: string; pos: number }
  | { kind: "eof"; text: ""; pos: number };

const OPERATORS = [
  "<=",
  ">=",
  "==",
  "!=",
  "&&",
  "||",
  "<",
  ">",
  "+",
  "-",
  "*",
  "/",
  "%",
  "!",
  "(",
  ")",
  "[",
  "]",
  ",",
];
const NUMBER_RE = /(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/y;
const IDENT_RE = /[A-Za-z_][A-Za-z0-9_]*/y;

export function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  while (pos < source.length) {
    const ch = source[pos];
    if (/\s/.test(ch)) {
      pos++;
      continue;
    }
    NUMBER_RE.lastIndex = pos;
    const num = NUMBER_RE.exec(source);
    if (num) {
      const next = source[pos + num[0].length];
      if (next !== undefined && /[A-Za-z0-9_.]/.test(next)) {
        throw new ExpressionError(
          `unexpected "${next}" after number ${num[0]}`,
          pos + num[0].length,
          source,
        );
      }
      tokens.push({ kind: "number", value: Number(num[0]), text: num[0], pos });
      pos += num[0].length;
      continue;
    }
    IDENT_RE.lastIndex = pos;
    const ident = IDENT_RE.exec(source);
    if (ident) {
      tokens.push({ kind: "ident", text: ident[0], pos });
      pos += ident[0].length;
      continue;
    }
    const op = OPERATORS.find(o => source.startsWith(o, pos));
    if (op) {
      tokens.push({ kind: "op", text: op, pos });
      pos += op.length;
      continue;
    }
    const hints: Record<string, string> = {
      "=": ' (use "==" to compare)',
      "&": ' (use "and" or "&&")',
      "|": ' (use "or" or "||")',
      '"': " (strings are not supported)",
      "'": " (strings are not supported)",
    };
    throw new ExpressionError(`unexpected character "${ch}"${hints[ch] ?? ""}`, pos, source);
  }
  tokens.push({ kind: "eof", text: "", pos: source.length });
  return tokens;
}

/** A token as an error message names it. */
export function describeToken(token: Token): string {
  switch (token.kind) {
    case "eof":
      return "end of expression";
    case "number":
      return `number ${token.text}`;
    default:
      return `"${token.text}"`;
  }
}
