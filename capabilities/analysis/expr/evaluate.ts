// The condition language's evaluator: walks the AST over a query result; every type error names
// the node's position.
import { BinaryOp, Env, EvaluationError, Expr, Value } from "./ast";

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
