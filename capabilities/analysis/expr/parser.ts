// The condition language's parser: recursive descent, one function per precedence level, lowest
// first:
//   or  <  and  <  not  <  comparison (non-associative)  <  + -  <  * / %  <  unary -  <  [index]
import { BinaryOp, Expr, ExpressionError, FunctionName } from "./ast";
import { Token, describeToken, tokenize } from "./lexer";

const MAX_SOURCE_LENGTH = 2000;
const MAX_DEPTH = 64;
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
      throw this.error(`unexpected ${describeToken(next)} after a complete expression`, next.pos);
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
    throw this.error(`expected "${text}" ${context}, found ${describeToken(token)}`, token.pos);
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
    throw this.error(`unexpected ${describeToken(token)}`, token.pos);
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
