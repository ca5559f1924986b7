import {
  TemplateError,
  escapePromQLString,
  placeholdersOf,
  quotePromQLString,
  renderQuery,
  variablesFor,
  type QueryVariables,
} from "./promql";

// A minimal PromQL lexer for the tests: enough to compare the structure of two queries. String
// literals are decoded with Go's escape rules, which the PromQL lexer uses.
type Token = { kind: "string" | "word" | "op" | "comment"; text: string; decoded?: string };

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

function lex(query: string): Token[] {
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

const base: QueryVariables = {
  canary: "canary-pool",
  stable: "stable-pool",
  namespace: "default",
  rollout: "demo",
  modelName: "llama",
  pool: "pool",
  interval: "30s",
  weight: 10,
  args: {},
};

describe("escapePromQLString / quotePromQLString", () => {
  it("escapes backslash, the quote, newlines and control characters", () => {
    expect(escapePromQLString('a"b', '"')).toBe('a\\"b');
    expect(escapePromQLString("a'b", '"')).toBe("a'b");
    expect(escapePromQLString("a'b", "'")).toBe("a\\'b");
    expect(escapePromQLString("a\\b")).toBe("a\\\\b");
    expect(escapePromQLString("a\nb\rc\td")).toBe("a\\nb\\rc\\td");
    expect(escapePromQLString("a\u0000b\u001fc\u007f")).toBe("a\\x00b\\x1fc\\x7f");
    expect(escapePromQLString("ünï 🚀")).toBe("ünï 🚀");
    expect(quotePromQLString('x"} or vector(1) #')).toBe('"x\\"} or vector(1) #"');
  });

  it("refuses lone surrogates, which cannot be sent as UTF-8", () => {
    expect(() => escapePromQLString("a\uD800b")).toThrow(TemplateError);
  });
});

describe("renderQuery", () => {
  it("escapes names inside double and single quotes and quotes bare names", () => {
    const vars = { ...base, canary: 'we"ird\\' };
    expect(renderQuery('up{pool="{{canary}}"}', vars)).toBe('up{pool="we\\"ird\\\\"}');
    expect(renderQuery("up{pool='{{canary}}'}", vars)).toBe("up{pool='we\"ird\\\\'}");
    expect(renderQuery("up{pool={{canary}}}", vars)).toBe('up{pool="we\\"ird\\\\"}');
    expect(renderQuery('up{pool=~"{{canary}}|{{stable}}"}', base)).toBe(
      'up{pool=~"canary-pool|stable-pool"}',
    );
    expect(renderQuery("up{a={{ canary }}}", base)).toBe('up{a="canary-pool"}');
  });

  it("inserts every known variable", () => {
    const template =
      'x{c="{{canary}}",s="{{stable}}",n="{{namespace}}",r="{{rollout}}",m="{{modelName}}",p="{{pool}}"}[{{interval}}] > {{weight}}';
    expect(renderQuery(template, base)).toBe(
      'x{c="canary-pool",s="stable-pool",n="default",r="demo",m="llama",p="pool"}[30s] > 10',
    );
  });

  it("inserts durations raw in ranges, subqueries and after offset, and validates them", () => {
    const vars = {
      ...base,
      args: { window: "5m", step: "1m", back: "1h30m", bad: "5m] or vector(1) #" },
    };
    expect(renderQuery("rate(x[{{args.window}}])", vars)).toBe("rate(x[5m])");
    expect(renderQuery("max_over_time(x[{{args.window}}:{{args.step}}])", vars)).toBe(
      "max_over_time(x[5m:1m])",
    );
    expect(renderQuery("x offset {{args.back}}", vars)).toBe("x offset 1h30m");
    expect(() => renderQuery("rate(x[{{args.bad}}])", vars)).toThrow(/not a positive duration/);
    expect(() => renderQuery("x offset {{args.bad}}", vars)).toThrow(/not a positive duration/);
    expect(() => renderQuery("rate(x[{{canary}}])", base)).toThrow(/expects a duration/);
    expect(() => renderQuery("rate(x[{{args.z}}])", { ...base, args: { z: "0s" } })).toThrow(
      /positive duration/,
    );
    expect(() => renderQuery("rate(x[{{interval}}])", { ...base, interval: "30 s" })).toThrow(
      /not a positive duration/,
    );
    expect(() => renderQuery("x + {{interval}}", { ...base, interval: "1) or (1" })).toThrow(
      /must be a duration/,
    );
  });

  it("keeps numeric args raw outside quotes, and turns other args into string literals", () => {
    const vars = { ...base, args: { max: "0.05", neg: "-1e3", name: "a) or vector(1" } };
    expect(renderQuery("x > {{args.max}}", vars)).toBe("x > 0.05");
    expect(renderQuery("x > {{args.neg}}", vars)).toBe("x > -1e3");
    expect(renderQuery('label_replace(x, "a", {{args.name}}, "", "")', vars)).toBe(
      'label_replace(x, "a", "a) or vector(1", "", "")',
    );
    expect(renderQuery('x{a="{{args.max}}"}', vars)).toBe('x{a="0.05"}');
  });

  it("requires a finite weight", () => {
    expect(() => renderQuery("x > {{weight}}", { ...base, weight: NaN })).toThrow(/finite number/);
    expect(() => renderQuery("x > {{weight}}", { ...base, weight: undefined })).toThrow(
      /not known yet/,
    );
  });

  it.each([
    ["x{a={{canry}}}", /unknown placeholder \{\{canry\}\} \(known: canary, stable/],
    ["x{a={{args.missing}}}", /args\.missing is not set \(the metric has no args\)/],
    ["x{a={{canary}", /unclosed "\{\{"/],
    ["x{a={{can ary}}}", /malformed placeholder/],
    ["x{a={{}}}", /malformed placeholder/],
    ["x{a=`{{canary}}`}", /raw string/],
    ['x{a="{{canary}}}', /unterminated string/],
    ['x{a="{{canary}}\n"}', /line break inside the string/],
  ])("rejects %j", (template, message) => {
    expect(() => renderQuery(template, base)).toThrow(message);
  });

  it("names the args that exist when one is missing", () => {
    expect(() => renderQuery("{{args.b}}", { ...base, args: { a: "1" } })).toThrow(/args: a/);
  });

  it("refuses an optional variable the rollout does not have", () => {
    expect(() => renderQuery('x{m="{{modelName}}"}', { ...base, modelName: undefined })).toThrow(
      /\{\{modelName\}\} is not known for this rollout/,
    );
  });

  it("leaves placeholder-looking values alone (no second expansion)", () => {
    expect(renderQuery('x{a="{{canary}}"}', { ...base, canary: "{{stable}}" })).toBe(
      'x{a="{{stable}}"}',
    );
  });

  it("lists the placeholders of a template", () => {
    expect(placeholdersOf('x{a="{{canary}}"}[{{ interval }}] > {{args.max}}')).toEqual([
      "canary",
      "interval",
      "args.max",
    ]);
  });

  it("takes variables from the rollout context and the metric", () => {
    expect(
      variablesFor(
        { scope: "pools", namespace: "ns", rollout: "r", canary: "c", stable: "s", weight: 5 },
        { args: { a: "1" } },
      ),
    ).toEqual({
      canary: "c",
      stable: "s",
      namespace: "ns",
      rollout: "r",
      modelName: undefined,
      pool: undefined,
      weight: 5,
      interval: "30s",
      args: { a: "1" },
    });
  });
});

describe("a name cannot change the query", () => {
  const evilNames = [
    '"} or vector(1) #',
    "'} or vector(1) #",
    '\\"} or vector(1) #',
    'x\\\\"} or vector(1) #',
    "a\\",
    "\\",
    '"',
    "'",
    "}",
    "}}",
    "{{stable}}",
    '{pool=~".*"}',
    "a\nb) or vector(1)\n#",
    "a\r\n\t\u0000\u0007\u001b\u007fb",
    "`raw`",
    "$1 $& $` $'",
    "ünïcödé 🚀 \u2028",
    "",
  ];
  const templates = [
    'sum(rate(inference_objective_request_total{target_model_name="{{canary}}", pool="{{stable}}"}[{{interval}}])) > 0',
    "sum(rate(x{pool='{{canary}}'}[1m])) / sum(rate(x{pool='{{stable}}'}[1m]))",
    "x{pool={{canary}}} and on() y{pool={{stable}}}",
    'label_replace(up, "dst", "{{canary}}-{{stable}}", "", "") # {{canary}}',
    'x{a="pre {{args.name}} post"} or x{b={{args.name}}}',
  ];

  it.each(evilNames)("%j stays one string literal in every template", evil => {
    for (const template of templates) {
      const benign = renderQuery(template, {
        ...base,
        canary: "SAFE",
        stable: "STABLE",
        args: { name: "SAFE" },
      });
      const attacked = renderQuery(template, {
        ...base,
        canary: evil,
        stable: evil,
        args: { name: evil },
      });
      const expected = lex(benign);
      const actual = lex(attacked);
      // Same token sequence: only the contents of string literals differ.
      expect(actual.map(t => t.kind)).toEqual(expected.map(t => t.kind));
      actual.forEach((token, i) => {
        const reference = expected[i];
        if (token.kind === "word" || token.kind === "op") {
          expect(token.text).toBe(reference.text);
        } else if (token.kind === "string") {
          // The literal decodes back to exactly what the template meant, with the name inserted.
          const want = reference.decoded!.split("SAFE").join(evil).split("STABLE").join(evil);
          expect(token.decoded).toBe(want);
        } else {
          // Comments: still one line, and still a comment.
          expect(token.text.includes("\n")).toBe(false);
        }
      });
      // Outside string literals the query is byte-identical.
      const outside = (tokens: Token[]) =>
        tokens
          .filter(t => t.kind !== "string" && t.kind !== "comment")
          .map(t => t.text)
          .join(" ");
      expect(outside(actual)).toBe(outside(expected));
    }
  });

  it("the test lexer notices a successful injection (the check can fail)", () => {
    const naive = (name: string) => `x{pool="${name}"}`;
    const benign = lex(naive("SAFE"));
    const attacked = lex(naive('"} or vector(1) #'));
    expect(attacked.map(t => t.kind)).not.toEqual(benign.map(t => t.kind));
  });
});
