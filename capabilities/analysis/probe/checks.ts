// The content checks that need compiling: a regular expression run by V8's linear-time engine (no
// catastrophic backtracking on a model's answer) and a JSON Schema compiled by ajv. Both are
// compiled once per source text and cached; a source that does not compile is a readable error.
import * as v8 from "node:v8";
import Ajv, { type ValidateFunction } from "ajv";

// V8's non-backtracking engine serves RegExps with the `l` flag: matching time is linear in the
// text, and patterns it cannot run that way (back-references, look-arounds) fail to compile.
v8.setFlagsFromString("--enable-experimental-regexp-engine");

const MAX_CACHED = 64;

function cached<T>(cache: Map<string, T>, key: string, make: () => T): T {
  let value = cache.get(key);
  if (value === undefined) {
    if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
    value = make();
    cache.set(key, value);
  }
  return value;
}

const regexes = new Map<string, RegExp | Error>();

/** The compiled linear-time RegExp, or an Error saying why the pattern cannot be used. */
export function compileProbeRegex(pattern: string): RegExp | Error {
  return cached(regexes, pattern, () => {
    try {
      // eslint-disable-next-line no-invalid-regexp -- `l` is V8's linear-engine flag, enabled above
      return new RegExp(pattern, "l");
    } catch (err) {
      const why = (err as Error).message.replace(/^Invalid regular expression: /, "");
      return new Error(
        `regex ${JSON.stringify(pattern)} cannot be used: ${why} ` +
          "(JavaScript syntax without back-references or look-arounds, run in linear time)",
      );
    }
  });
}

// One ajv instance: strict mode off so that schemas written for other validators (unknown
// keywords such as `example`) still check what ajv knows; allErrors off (first error is enough).
const ajv = new Ajv({ strict: false, allErrors: false });
const schemas = new Map<string, ValidateFunction | Error>();

/** The compiled JSON Schema validator, or an Error naming what is wrong with the schema. */
export function compileProbeSchema(text: string): ValidateFunction | Error {
  return cached(schemas, text, () => {
    let schema: unknown;
    try {
      schema = JSON.parse(text);
    } catch (err) {
      return new Error(`jsonSchema is not JSON: ${(err as Error).message}`);
    }
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
      if (typeof schema !== "boolean") return new Error("jsonSchema must be a JSON object");
    }
    try {
      return ajv.compile(schema as object);
    } catch (err) {
      return new Error(`jsonSchema is not a valid JSON Schema: ${(err as Error).message}`);
    }
  });
}

/** ajv's first error as one short line, e.g. `/city must be string`. */
export function schemaErrorText(validate: ValidateFunction): string {
  const first = validate.errors?.[0];
  if (!first) return "does not match";
  return `${first.instancePath || "(root)"} ${first.message ?? "does not match"}`;
}
