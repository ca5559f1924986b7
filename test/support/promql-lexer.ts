// Test support (imported by capabilities/analysis/*.test.ts only).
// A minimal PromQL lexer for the tests: enough to compare the structure of two queries. String
// literals are decoded with Go's escape rules, which the PromQL lexer uses.
export type Token = { kind: "string" | "word" | "op" | "comment"; text: string; decoded?: string };

function decodeString(raw: string): string {
  const quote = raw[0];
  const body = raw.slice(1, -1);
  if (quote === "`") return body;
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (ch !== "\\") {
      if (ch === quote || ch === "\n") throw new Error(`unescaped ${JSON.stringify(ch)} in ${raw}`);
      out += ch;
      continue;
    }
    const next = body[++i];
    const simple: Record<string, string> = {
      a: "\x07",
      b: "\b",
      f: "\f",
      n: "\n",
      r: "\r",
      t: "\t",
      v: "\v",
      "\\": "\\",
      '"': '"',
      "'": "'",
    };
    if (next in simple) {
      if ((next === '"' || next === "'") && next !== quote) throw new Error(`bad escape in ${raw}`);
      out += simple[next];
    } else if (next === "x") {
      out += String.fromCharCode(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (next === "u") {
      out += String.fromCharCode(parseInt(body.slice(i + 1, i + 5), 16));
      i += 4;
    } else {
      throw new Error(`unknown escape \\${next} in ${raw}`);
    }
  }
  return out;
}

export function lex(query: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < query.length) {
    const ch = query[i];
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === "#") {
      const end = query.indexOf("\n", i);
      const stop = end < 0 ? query.length : end;
      tokens.push({ kind: "comment", text: query.slice(i, stop) });
      i = stop;
    } else if (ch === '"' || ch === "'" || ch === "`") {
      let j = i + 1;
      while (j < query.length && query[j] !== ch) j += ch !== "`" && query[j] === "\\" ? 2 : 1;
      if (j >= query.length) throw new Error(`unterminated string at ${i} in ${query}`);
      const text = query.slice(i, j + 1);
      tokens.push({ kind: "string", text, decoded: decodeString(text) });
      i = j + 1;
    } else if (/[A-Za-z0-9_:.]/.test(ch)) {
      const word = /[A-Za-z0-9_:.]+/y;
      word.lastIndex = i;
      const text = word.exec(query)![0];
      tokens.push({ kind: "word", text });
      i += text.length;
    } else {
      const two = query.slice(i, i + 2);
      const text = ["==", "!=", "=~", "!~", "<=", ">="].includes(two) ? two : ch;
      if (!"{}[]()+-*/%^,<>=!~@".includes(text[0])) throw new Error(`unexpected ${ch} in ${query}`);
      tokens.push({ kind: "op", text });
      i += text.length;
    }
  }
  return tokens;
}
