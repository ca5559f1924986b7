import { describe, expect, it } from "@jest/globals";
import { canonicalJson, fingerprint, jsonEqual, parseDuration } from "./fingerprint";

describe("fingerprint", () => {
  it("ignores key order and undefined members, but not values or array order", () => {
    expect(canonicalJson({ b: 1, a: [1, { d: 2, c: undefined }] })).toBe('{"a":[1,{"d":2}],"b":1}');
    expect(fingerprint({ a: 1, b: 2 })).toBe(fingerprint({ b: 2, a: 1 }));
    expect(fingerprint({ a: 1 })).not.toBe(fingerprint({ a: 2 }));
    expect(fingerprint([1, 2])).not.toBe(fingerprint([2, 1]));
    expect(fingerprint({ setWeight: 10 })).toMatch(/^[0-9a-f]{8}$/);
    expect(jsonEqual({ a: 1, b: undefined }, { a: 1 })).toBe(true);
  });
});

describe("parseDuration", () => {
  it.each([
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1m30s", 90_000],
    ["500ms", 500],
    ["1h0m5s", 3_605_000],
    ["0s", 0],
  ])("%s = %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });
  it.each(["", "5", "5 m", "1d", "-1s", "1.5s", "s", "m5"])("rejects %j", text => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
