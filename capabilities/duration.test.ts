import { parseDuration } from "./duration";

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
  it.each(["", "5", "5 m", "-1s", "1.5s", "s", "m5"])("rejects %j", text => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
