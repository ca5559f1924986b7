import { EvaluationError, ExpressionError } from "./ast";
import { evaluate, evaluateValue } from "./evaluate";
import { parse } from "./parser";

const run = (source: string, result: number | number[]) => evaluate(parse(source), { result });
const value = (source: string, result: number | number[] = 0) =>
  evaluateValue(parse(source), { result });

function parseError(source: string): ExpressionError {
  try {
    parse(source);
  } catch (err) {
    if (err instanceof ExpressionError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(source)} not to parse`);
}

function evalError(source: string, result: number | number[]): EvaluationError {
  const ast = parse(source);
  try {
    evaluate(ast, { result });
  } catch (err) {
    if (err instanceof EvaluationError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(source)} to fail on ${JSON.stringify(result)}`);
}

describe("parse", () => {
  it("builds an AST with positions", () => {
    expect(parse("result[0] < 0.05")).toEqual({
      type: "binary",
      op: "<",
      pos: 10,
      left: {
        type: "index",
        pos: 6,
        target: { type: "var", name: "result", pos: 0 },
        index: { type: "number", value: 0, pos: 7 },
      },
      right: { type: "number", value: 0.05, pos: 12 },
    });
  });

  it("normalizes && || ! to and or not", () => {
    const shape = (source: string) =>
      JSON.stringify(parse(source), (k, v) => (k === "pos" ? 0 : v));
    expect(shape("!true && false || true")).toEqual(shape("not true and false or true"));
  });

  it("gives arithmetic its usual precedence and associativity", () => {
    expect(value("1 + 2 * 3")).toBe(7);
    expect(value("(1 + 2) * 3")).toBe(9);
    expect(value("10 - 4 - 3")).toBe(3);
    expect(value("8 / 4 / 2")).toBe(1);
    expect(value("7 % 4 + 1")).toBe(4);
    expect(value("-2 * -3")).toBe(6);
    expect(value("--1")).toBe(1);
    expect(value("1e-3 * 1000")).toBe(1);
    expect(value(".5 + 1.")).toBe(1.5);
  });

  it("binds not looser than comparison and and tighter than or", () => {
    expect(run("not result > 1", 0)).toBe(true);
    expect(run("true or false and false", 0)).toBe(true);
    expect(run("(true or false) and false", 0)).toBe(false);
  });

  it.each([
    ["", "empty expression", 1],
    ["result[0] <", "unexpected end of expression", 12],
    ["result[0] < < 1", 'unexpected "<"', 13],
    ["result = 1", 'unexpected character "=" (use "==" to compare)', 8],
    ["result[0] & 1", 'unexpected character "&" (use "and" or "&&")', 11],
    ["result[0 < 1", 'expected "]" to close the index, found end of expression', 13],
    ["(1 + 2", 'expected ")" to close the parenthesis, found end of expression', 7],
    ["reslt[0] < 1", 'unknown name "reslt"', 1],
    ["x < 1", '"x" is only defined inside all(vector, predicate)', 1],
    ["foo(result)", 'unknown function "foo"', 1],
    ["len(result, 1) > 0", "len() takes 1 argument, got 2", 1],
    ["all(result) ", "all() takes 2 arguments, got 1 (usage: all(result, x < 1))", 1],
    ["1 < result[0] < 2", 'comparisons cannot be chained; combine them with "and"', 15],
    ["result[0] < 5m", 'unexpected "m" after number 5', 14],
    ["result[0] < 'a'", 'unexpected character "\'" (strings are not supported)', 13],
    ["result[0] < 1 1", "unexpected number 1 after a complete expression", 15],
    ["result[0] and", "unexpected end of expression", 14],
    ["and", 'unexpected "and"', 1],
  ])("rejects %j with a readable message", (source, detail, column) => {
    const err = parseError(source);
    expect(err.detail).toContain(detail);
    expect(err.column).toBe(column);
    expect(err.position).toBe(column - 1);
    expect(err.message).toContain(`at column ${column}`);
    expect(err.name).toBe("ExpressionError");
  });

  it("rejects deep nesting and huge sources instead of overflowing the stack", () => {
    expect(parseError("(".repeat(100) + "1" + ")".repeat(100)).detail).toContain(
      "nested too deeply",
    );
    expect(parseError("1 + ".repeat(1000) + "1").detail).toContain("longer than");
  });

  it("accepts x inside all/any predicates, also nested", () => {
    expect(() => parse("all(result, any(result, x > 0) and x < 1)")).not.toThrow();
    expect(parseError("all(x, x > 0)").detail).toContain('"x" is only defined');
  });
});

describe("evaluate", () => {
  it("compares indexed vector elements and scalars", () => {
    expect(run("result[0] < 0.05", [0.01])).toBe(true);
    expect(run("result[0] < 0.05", [0.06])).toBe(false);
    expect(run("result >= 3", 3)).toBe(true);
    expect(run("result[1] == 2 and result[0] != 2", [1, 2])).toBe(true);
    expect(run("result[len(result) - 1] > 1", [1, 2])).toBe(true);
  });

  it("makes every comparison with NaN false, even !=", () => {
    for (const op of ["<", "<=", ">", ">=", "==", "!="]) {
      expect(run(`result[0] ${op} 1`, [NaN])).toBe(false);
      expect(run(`result ${op} result`, NaN)).toBe(false);
    }
    expect(run("isNaN(result[0])", [NaN])).toBe(true);
    expect(run("isNaN(result)", 1)).toBe(false);
    expect(run("not (result[0] < 1)", [NaN])).toBe(true);
  });

  it("handles infinities", () => {
    expect(run("result[0] > 1000", [Infinity])).toBe(true);
    expect(run("isInf(result[0])", [-Infinity])).toBe(true);
    expect(run("isInf(result)", 1)).toBe(false);
    expect(value("1 / 0")).toBe(Infinity);
  });

  it("supports len, abs, min and max", () => {
    expect(run("len(result) == 0", [])).toBe(true);
    expect(run("abs(result - 10) <= 2", 11.5)).toBe(true);
    expect(value("min(result)", [3, 1, 2])).toBe(1);
    expect(value("max(result)", [3, 1, 2])).toBe(3);
    expect(value("min(4, 2, 9)")).toBe(2);
    expect(value("max(result[0], 5)", [7])).toBe(7);
    expect(value("min(7)")).toBe(7);
  });

  it("all/any bind x to each element", () => {
    expect(run("all(result, x < 0.05)", [0.01, 0.02])).toBe(true);
    expect(run("all(result, x < 0.05)", [0.01, 0.2])).toBe(false);
    expect(run("any(result, x > 1)", [0.5, 2])).toBe(true);
    expect(run("any(result, x > 1)", [0.5])).toBe(false);
    expect(run("all(result, x < 1)", [NaN])).toBe(false);
    // Vacuous truth: the run logic never lets an empty result succeed.
    expect(run("all(result, x < 1)", [])).toBe(true);
    expect(run("any(result, x < 1)", [])).toBe(false);
    expect(run("all(result, any(result, x > 1) and x >= 0)", [0, 2])).toBe(true);
  });

  it("short-circuits and/or so a guarded index is safe", () => {
    expect(run("len(result) == 0 or result[0] < 1", [])).toBe(true);
    expect(run("len(result) == 1 and result[0] < 1", [])).toBe(false);
  });

  it("compares booleans with == and !=", () => {
    expect(run("(result[0] > 1) == true", [2])).toBe(true);
    expect(run("isNaN(result) != false", NaN)).toBe(true);
  });

  it.each([
    ["result[3] > 0", [1, 2], "index 3 is out of range: the vector has 2 elements"],
    ["result[0] > 0", [], "index 0 is out of range: the vector has 0 elements"],
    ["result[0.5] > 0", [1], "index 0.5 is not a non-negative integer"],
    ["result[-1] > 0", [1], "index -1 is not a non-negative integer"],
    ["result[0] > 0", 5, "cannot index a number (the query returned a scalar"],
    ["result > 0", [1], "needs a number, got a vector (index it, e.g. result[0]"],
    ["result + 1 > 0", [1], '"+" needs a number, got a vector'],
    ["result[0]", [1], "a condition must yield true or false, this one yields a number"],
    ["result", [1], "yields a vector"],
    ["len(result) > 0", 1, "len() needs a vector, got a number"],
    ["all(result, x < 1)", 1, "all() needs a vector, got a number"],
    ["all(result, x)", [1], "the predicate of all() needs a boolean, got a number"],
    ["result[0] and true", [1], '"and" needs a boolean, got a number'],
    ["not result[0]", [1], '"not" needs a boolean, got a number'],
    ["-(result[0] > 1)", [1], 'unary "-" needs a number, got a boolean'],
    ["min(result) > 0", [], "min() of an empty vector"],
    ["isNaN(result)", [1], "use any(result, isNaN(x))"],
    ["true == 1", 0, '"==" needs a number, got a boolean'],
  ])("%j on %j is an evaluation error", (source, result, message) => {
    const err = evalError(source, result);
    expect(err.message).toContain(message);
    expect(err.name).toBe("EvaluationError");
  });

  it("reports where in the source a runtime error happened", () => {
    expect(evalError("true and result[5] > 1", [1]).position).toBe(15);
  });
});
