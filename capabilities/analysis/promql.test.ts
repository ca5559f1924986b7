import {
  TemplateError,
  escapePromQLString,
  formatLabelMatcher,
  parseLabelMatchers,
  placeholdersOf,
  quotePromQLString,
  renderQuery,
  variablesFor,
  type QueryVariables,
} from "./promql";
import { lex, type Token } from "../../test/support/promql-lexer";

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

describe("parseLabelMatchers / formatLabelMatcher", () => {
  it("reads matchers with or without braces, every operator and quote", () => {
    expect(parseLabelMatchers('{namespace="prod", job=~"picker.*"}')).toEqual([
      { label: "namespace", op: "=", value: "prod" },
      { label: "job", op: "=~", value: "picker.*" },
    ]);
    expect(parseLabelMatchers(" cluster != 'eu-1' ,zone!~`a\\b`, ")).toEqual([
      { label: "cluster", op: "!=", value: "eu-1" },
      { label: "zone", op: "!~", value: "a\\b" },
    ]);
    expect(parseLabelMatchers("{}")).toEqual([]);
    expect(parseLabelMatchers("")).toEqual([]);
  });

  it("decodes Go escapes, and re-quotes the value itself", () => {
    const [m] = parseLabelMatchers('a="q\\"x\\\\y\\n\\x41\\u00e9\\U0001F680\\101"');
    expect(m.value).toBe('q"x\\y\nAé🚀A');
    expect(formatLabelMatcher(m)).toBe('a="q\\"x\\\\y\\nAé🚀A"');
    expect(lex(formatLabelMatcher(m)).map(t => t.decoded ?? t.text)).toEqual(["a", "=", m.value]);
    expect(formatLabelMatcher({ label: "b", op: "=~", value: "it's" })).toBe('b=~"it\'s"');
  });

  it.each([
    ['namespace="a"} or vector(1) #', /unexpected "}"/],
    ['{namespace="a"} or vector(1)', /unexpected "o"/],
    ['{namespace="a"', /expected "}"/],
    ["namespace=prod", /expected a quoted value/],
    ['namespace=="prod"', /expected a quoted value/],
    ['namespace>"prod"', /expected =, !=, =~ or !~/],
    ['1abc="x"', /expected a label name/],
    ['a="x" b="y"', /unexpected "b"/],
    ['a="x', /unterminated string/],
    ['a="x\\q"', /unknown escape \\q/],
    ['a="\\xZZ"', /bad \\x escape/],
    ['a="\\ud800"', /invalid code point/],
    ['a="x\ny"', /line break/],
    ["a='x\"", /unterminated string/],
  ])("rejects %j", (text, message) => {
    expect(() => parseLabelMatchers(text)).toThrow(TemplateError);
    expect(() => parseLabelMatchers(text)).toThrow(message);
  });

  it("whatever the input, the re-quoted matcher is one label, one operator, one string", () => {
    const values = ['"} or vector(1) #', "\\", "a\nb", "`", "{{x}}", "'", "}"];
    for (const value of values) {
      for (const quoted of [
        JSON.stringify(value),
        `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`,
      ]) {
        const [m] = parseLabelMatchers(`l=${quoted}`);
        expect(m.value).toBe(value);
        const tokens = lex(formatLabelMatcher(m));
        expect(tokens.map(t => t.kind)).toEqual(["word", "op", "string"]);
        expect(tokens[2].decoded).toBe(value);
      }
    }
  });
});
