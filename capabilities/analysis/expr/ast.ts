// A small, safe expression language for gate conditions over a query `result`.
//
//   result[0] < 0.05                      index a vector (0-based)
//   len(result) == 1 and result[0] <= 1.2 and / or / not  (also && || !)
//   all(result, x < 0.05)                 x is the element; any(...) likewise
//   isNaN(result) or abs(result - 1) > 0.1
//
// Values are numbers, vectors (number[]) and booleans. Comparisons involving NaN are false
// (also !=). and/or short-circuit. Functions: len, isNaN, isInf, abs, min, max, all, any.
// lexer.ts turns the source into tokens, parser.ts builds this file's AST (nothing is ever
// evaluated as code), evaluate.ts computes its value on a query result.

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
