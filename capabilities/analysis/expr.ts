// A small, safe expression language for gate conditions over a query `result`.
//
//   result[0] < 0.05                      index a vector (0-based)
//   len(result) == 1 and result[0] <= 1.2 and / or / not  (also && || !)
//   all(result, x < 0.05)                 x is the element; any(...) likewise
//   isNaN(result) or abs(result - 1) > 0.1
//
// Values are numbers, vectors (number[]) and booleans. Comparisons involving NaN are false
// (also !=). and/or short-circuit. Functions: len, isNaN, isInf, abs, min, max, all, any.
// A tokenizer and a recursive-descent parser build an AST; nothing is ever evaluated as code.

export type BinaryOp =
  | "+"
  | "-"
  | "*"
  | "/"
  | "%"
  | "<"
  | "<="
  | ">"
  | ">="
  | "=="
  | "!="
  | "and"
  | "or";

export type FunctionName = "len" | "isNaN" | "isInf" | "abs" | "min" | "max" | "all" | "any";

export type Expr =
  | { type: "number"; value: number; pos: number }
  | { type: "bool"; value: boolean; pos: number }
  | { type: "var"; name: "result" | "x"; pos: number }
  | { type: "index"; target: Expr; index: Expr; pos: number }
  | { type: "unary"; op: "-" | "not"; operand: Expr; pos: number }
  | { type: "binary"; op: BinaryOp; left: Expr; right: Expr; pos: number }
  | { type: "call"; fn: FunctionName; args: Expr[]; pos: number };

export type Value = number | boolean | readonly number[];

export interface Env {
  /** A number for a scalar query result, number[] for a vector. */
  result: number | readonly number[];
}

/** A condition that cannot be parsed. `position` is 0-based, `column` 1-based. */
export class ExpressionError extends Error {
  readonly detail: string;
  readonly position: number;
  readonly column: number;
  readonly source: string;
  constructor(detail: string, position: number, source: string) {
    super(`${detail} at column ${position + 1} of "${source}"`);
    this.name = "ExpressionError";
    this.detail = detail;
    this.position = position;
    this.column = position + 1;
    this.source = source;
  }
}

/** A condition that parsed but cannot be evaluated on this result (type, index, empty vector). */
export class EvaluationError extends Error {
  readonly position: number;
  constructor(message: string, position: number) {
    super(message);
    this.name = "EvaluationError";
    this.position = position;
  }
}

const MAX_SOURCE_LENGTH = 2000;
const MAX_DEPTH = 64;

// ---------------------------------------------------------------------------------------------
// Tokenizer

type Token =
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

function tokenize(source: string): Token[] {
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

// ---------------------------------------------------------------------------------------------
// Parser (recursive descent, one function per precedence level, lowest first):
//   or  <  and  <  not  <  comparison (non-associative)  <  + -  <  * / %  <  unary -  <  [index]

const ARITY: Record<FunctionName, { min: number; max: number }> = {
  len: { min: 1, max: 1 },
  isNaN: { min: 1, max: 1 },
  isInf: { min: 1, max: 1 },
  abs: { min: 1, max: 1 },
  min: { min: 1, max: Infinity },
  max: { min: 1, max: Infinity },
  all: { min: 2, max: 2 },
  any: { min: 2, max: 2 },
};
const COMPARISONS = new Set(["<", "<=", ">", ">=", "==", "!="]);
const KEYWORDS = new Set(["and", "or", "not", "true", "false"]);

class Parser {
  private index = 0;
  private depth = 0;
  /** How many all()/any() predicates enclose the current position (x is bound inside). */
  private predicateDepth = 0;

  constructor(
    private readonly tokens: Token[],
    private readonly source: string,
  ) {}

  parseAll(): Expr {
    if (this.peek().kind === "eof") throw this.error("empty expression", this.peek().pos);
    const expr = this.parseOr();
    const next = this.peek();
    if (next.kind !== "eof") {
      throw this.error(`unexpected ${describe(next)} after a complete expression`, next.pos);
    }
    return expr;
  }

  private peek(): Token {
    return this.tokens[this.index];
  }

  private advance(): Token {
    const token = this.tokens[this.index];
    if (token.kind !== "eof") this.index++;
    return token;
  }

  private isOp(text: string): boolean {
    const token = this.peek();
    return token.kind === "op" && token.text === text;
  }

  private isWord(text: string): boolean {
    const token = this.peek();
    return token.kind === "ident" && token.text === text;
  }

  private expectOp(text: string, context: string): Token {
    const token = this.peek();
    if (token.kind === "op" && token.text === text) return this.advance();
    throw this.error(`expected "${text}" ${context}, found ${describe(token)}`, token.pos);
  }

  private error(detail: string, pos: number): ExpressionError {
    return new ExpressionError(detail, pos, this.source);
  }

  private nested<T>(pos: number, parse: () => T): T {
    if (++this.depth > MAX_DEPTH) throw this.error("expression is nested too deeply", pos);
    try {
      return parse();
    } finally {
      this.depth--;
    }
  }

  private parseOr(): Expr {
    let left = this.parseAnd();
    while (this.isWord("or") || this.isOp("||")) {
      const pos = this.advance().pos;
      left = { type: "binary", op: "or", left, right: this.parseAnd(), pos };
    }
    return left;
  }

  private parseAnd(): Expr {
    let left = this.parseNot();
    while (this.isWord("and") || this.isOp("&&")) {
      const pos = this.advance().pos;
      left = { type: "binary", op: "and", left, right: this.parseNot(), pos };
    }
    return left;
  }

  private parseNot(): Expr {
    if (this.isWord("not") || this.isOp("!")) {
      const pos = this.advance().pos;
      return this.nested(pos, () => ({
        type: "unary",
        op: "not",
        operand: this.parseNot(),
        pos,
      }));
    }
    return this.parseComparison();
  }

  private parseComparison(): Expr {
    const left = this.parseAdditive();
    const token = this.peek();
    if (token.kind !== "op" || !COMPARISONS.has(token.text)) return left;
    this.advance();
    const right = this.parseAdditive();
    const after = this.peek();
    if (after.kind === "op" && COMPARISONS.has(after.text)) {
      throw this.error('comparisons cannot be chained; combine them with "and"', after.pos);
    }
    return { type: "binary", op: token.text as BinaryOp, left, right, pos: token.pos };
  }

  private parseAdditive(): Expr {
    let left = this.parseMultiplicative();
    while (this.isOp("+") || this.isOp("-")) {
      const token = this.advance();
      const right = this.parseMultiplicative();
      left = { type: "binary", op: token.text as BinaryOp, left, right, pos: token.pos };
    }
    return left;
  }

  private parseMultiplicative(): Expr {
    let left = this.parseUnary();
    while (this.isOp("*") || this.isOp("/") || this.isOp("%")) {
      const token = this.advance();
      const right = this.parseUnary();
      left = { type: "binary", op: token.text as BinaryOp, left, right, pos: token.pos };
    }
    return left;
  }

  private parseUnary(): Expr {
    if (this.isOp("-")) {
      const pos = this.advance().pos;
      return this.nested(pos, () => ({
        type: "unary",
        op: "-",
        operand: this.parseUnary(),
        pos,
      }));
    }
    return this.parsePostfix();
  }

  private parsePostfix(): Expr {
    let expr = this.parsePrimary();
    while (this.isOp("[")) {
      const pos = this.advance().pos;
      const index = this.nested(pos, () => this.parseOr());
      this.expectOp("]", "to close the index");
      expr = { type: "index", target: expr, index, pos };
    }
    return expr;
  }

  private parsePrimary(): Expr {
    const token = this.peek();
    if (token.kind === "number") {
      this.advance();
      return { type: "number", value: token.value, pos: token.pos };
    }
    if (token.kind === "op" && token.text === "(") {
      this.advance();
      const inner = this.nested(token.pos, () => this.parseOr());
      this.expectOp(")", "to close the parenthesis");
      return inner;
    }
    if (token.kind === "ident") {
      if (this.tokens[this.index + 1]?.kind === "op" && this.tokens[this.index + 1].text === "(") {
        return this.parseCall();
      }
      this.advance();
      switch (token.text) {
        case "true":
        case "false":
          return { type: "bool", value: token.text === "true", pos: token.pos };
        case "result":
          return { type: "var", name: "result", pos: token.pos };
        case "x":
          if (this.predicateDepth === 0) {
            throw this.error(
              '"x" is only defined inside all(vector, predicate) or any(vector, predicate)',
              token.pos,
            );
          }
          return { type: "var", name: "x", pos: token.pos };
        default:
          if (KEYWORDS.has(token.text)) {
            throw this.error(`unexpected "${token.text}"`, token.pos);
          }
          throw this.error(
            `unknown name "${token.text}" (conditions can use result, x inside all/any, numbers, true, false)`,
            token.pos,
          );
      }
    }
    if (token.kind === "eof") throw this.error("unexpected end of expression", token.pos);
    throw this.error(`unexpected ${describe(token)}`, token.pos);
  }

  private parseCall(): Expr {
    const nameToken = this.advance();
    const name = nameToken.text;
    if (!Object.prototype.hasOwnProperty.call(ARITY, name)) {
      throw this.error(
        `unknown function "${name}" (available: ${Object.keys(ARITY).join(", ")})`,
        nameToken.pos,
      );
    }
    const fn = name as FunctionName;
    this.advance(); // "("
    const args: Expr[] = [];
    return this.nested(nameToken.pos, () => {
      if (!this.isOp(")")) {
        for (;;) {
          const isPredicate = (fn === "all" || fn === "any") && args.length === 1;
          if (isPredicate) this.predicateDepth++;
          try {
            args.push(this.parseOr());
          } finally {
            if (isPredicate) this.predicateDepth--;
          }
          if (!this.isOp(",")) break;
          this.advance();
        }
      }
      this.expectOp(")", `to close ${fn}(`);
      const { min, max } = ARITY[fn];
      if (args.length < min || args.length > max) {
        const expected =
          min === max ? `${min}` : max === Infinity ? `at least ${min}` : `${min}-${max}`;
        const usage = fn === "all" || fn === "any" ? ` (usage: ${fn}(result, x < 1))` : "";
        throw this.error(
          `${fn}() takes ${expected} argument${expected === "1" ? "" : "s"}, got ${args.length}${usage}`,
          nameToken.pos,
        );
      }
      return { type: "call", fn, args, pos: nameToken.pos };
    });
  }
}

function describe(token: Token): string {
  switch (token.kind) {
    case "eof":
      return "end of expression";
    case "number":
      return `number ${token.text}`;
    default:
      return `"${token.text}"`;
  }
}

/** Parse a condition; throws ExpressionError with the position and a readable message. */
export function parse(source: string): Expr {
  if (typeof source !== "string") throw new ExpressionError("condition must be a string", 0, "");
  if (source.length > MAX_SOURCE_LENGTH) {
    throw new ExpressionError(
      `condition is longer than ${MAX_SOURCE_LENGTH} characters`,
      MAX_SOURCE_LENGTH,
      source.slice(0, 40) + "…",
    );
  }
  return new Parser(tokenize(source), source).parseAll();
}

// ---------------------------------------------------------------------------------------------
// Evaluation

function typeName(value: Value): string {
  if (typeof value === "number") return "number";
  if (typeof value === "boolean") return "boolean";
  return "vector";
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

interface EvalScope {
  result: number | readonly number[];
  x?: number;
}

function expectNumber(value: Value, node: Expr, what: string): number {
  if (typeof value === "number") return value;
  const hint = typeName(value) === "vector" ? " (index it, e.g. result[0], or use all/any)" : "";
  throw new EvaluationError(`${what} needs a number, got a ${typeName(value)}${hint}`, node.pos);
}

function expectBoolean(value: Value, node: Expr, what: string): boolean {
  if (typeof value === "boolean") return value;
  throw new EvaluationError(`${what} needs a boolean, got a ${typeName(value)}`, node.pos);
}

function expectVector(value: Value, node: Expr, what: string): readonly number[] {
  if (typeof value === "object") return value;
  throw new EvaluationError(`${what} needs a vector, got a ${typeName(value)}`, node.pos);
}

function compare(op: BinaryOp, a: number, b: number): boolean {
  // NaN never compares, not even with != (a missing value must not satisfy any condition).
  if (Number.isNaN(a) || Number.isNaN(b)) return false;
  switch (op) {
    case "<":
      return a < b;
    case "<=":
      return a <= b;
    case ">":
      return a > b;
    case ">=":
      return a >= b;
    case "==":
      return a === b;
    default:
      return a !== b;
  }
}

function evalNode(node: Expr, scope: EvalScope): Value {
  switch (node.type) {
    case "number":
    case "bool":
      return node.value;
    case "var":
      if (node.name === "result") return scope.result;
      if (scope.x === undefined) throw new EvaluationError('"x" is not bound here', node.pos);
      return scope.x;
    case "index": {
      const target = evalNode(node.target, scope);
      if (typeof target !== "object") {
        throw new EvaluationError(
          `cannot index a ${typeName(target)}${typeof target === "number" ? " (the query returned a scalar: use result, not result[0])" : ""}`,
          node.pos,
        );
      }
      const index = expectNumber(evalNode(node.index, scope), node.index, "an index");
      if (!Number.isInteger(index) || index < 0) {
        throw new EvaluationError(
          `index ${formatNumber(index)} is not a non-negative integer`,
          node.pos,
        );
      }
      if (index >= target.length) {
        throw new EvaluationError(
          `index ${index} is out of range: the vector has ${target.length} element${target.length === 1 ? "" : "s"}`,
          node.pos,
        );
      }
      return target[index];
    }
    case "unary": {
      const operand = evalNode(node.operand, scope);
      if (node.op === "-") return -expectNumber(operand, node.operand, 'unary "-"');
      return !expectBoolean(operand, node.operand, '"not"');
    }
    case "binary":
      return evalBinary(node, scope);
    case "call":
      return evalCall(node, scope);
  }
}

function evalBinary(node: Extract<Expr, { type: "binary" }>, scope: EvalScope): Value {
  const { op } = node;
  if (op === "and" || op === "or") {
    const left = expectBoolean(evalNode(node.left, scope), node.left, `"${op}"`);
    if (op === "and" && !left) return false;
    if (op === "or" && left) return true;
    return expectBoolean(evalNode(node.right, scope), node.right, `"${op}"`);
  }
  const left = evalNode(node.left, scope);
  const right = evalNode(node.right, scope);
  if ((op === "==" || op === "!=") && typeof left === "boolean" && typeof right === "boolean") {
    return op === "==" ? left === right : left !== right;
  }
  const a = expectNumber(left, node.left, `"${op}"`);
  const b = expectNumber(right, node.right, `"${op}"`);
  switch (op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return a / b;
    case "%":
      return a % b;
    default:
      return compare(op, a, b);
  }
}

function evalCall(node: Extract<Expr, { type: "call" }>, scope: EvalScope): Value {
  const [first] = node.args;
  switch (node.fn) {
    case "len":
      return expectVector(evalNode(first, scope), first, "len()").length;
    case "isNaN": {
      const value = evalNode(first, scope);
      if (typeof value === "object") {
        throw new EvaluationError(
          "isNaN() needs a number, got a vector (use any(result, isNaN(x)))",
          first.pos,
        );
      }
      return Number.isNaN(expectNumber(value, first, "isNaN()"));
    }
    case "isInf": {
      const n = expectNumber(evalNode(first, scope), first, "isInf()");
      return n === Infinity || n === -Infinity;
    }
    case "abs":
      return Math.abs(expectNumber(evalNode(first, scope), first, "abs()"));
    case "min":
    case "max": {
      let numbers: readonly number[];
      const values = node.args.map(arg => evalNode(arg, scope));
      if (values.length === 1 && typeof values[0] === "object") {
        numbers = values[0];
        if (numbers.length === 0) {
          throw new EvaluationError(`${node.fn}() of an empty vector`, node.pos);
        }
      } else {
        numbers = values.map((v, i) => expectNumber(v, node.args[i], `${node.fn}()`));
      }
      return node.fn === "min" ? Math.min(...numbers) : Math.max(...numbers);
    }
    case "all":
    case "any": {
      const vector = expectVector(evalNode(first, scope), first, `${node.fn}()`);
      const predicate = node.args[1];
      for (const element of vector) {
        const holds = expectBoolean(
          evalNode(predicate, { ...scope, x: element }),
          predicate,
          `the predicate of ${node.fn}()`,
        );
        if (node.fn === "all" && !holds) return false;
        if (node.fn === "any" && holds) return true;
      }
      return node.fn === "all";
    }
  }
}

/** Evaluate to any value (number, boolean or vector). */
export function evaluateValue(ast: Expr, env: Env): Value {
  return evalNode(ast, { result: env.result });
}

/** Evaluate a condition; throws EvaluationError unless it yields a boolean. */
export function evaluate(ast: Expr, env: Env): boolean {
  const value = evaluateValue(ast, env);
  if (typeof value !== "boolean") {
    throw new EvaluationError(
      `a condition must yield true or false, this one yields a ${typeName(value)}`,
      ast.pos,
    );
  }
  return value;
}

/** Parse once per distinct source: conditions are evaluated on every measurement. */
const cache = new Map<string, Expr>();
export function parseCached(source: string): Expr {
  let ast = cache.get(source);
  if (!ast) {
    ast = parse(source);
    if (cache.size > 500) cache.clear();
    cache.set(source, ast);
  }
  return ast;
}
