import { describe, expect, it } from "@jest/globals";
import { canonicalJson, fingerprint, jsonEqual } from "./fingerprint";

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
