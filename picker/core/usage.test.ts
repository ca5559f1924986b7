import { SseUsageScanner, usageFromJson } from "./usage";

describe("usage from responses", () => {
  it("reads usage of a JSON response, both naming schemes", () => {
    expect(
      usageFromJson(
        '{"object":"chat.completion","usage":{"prompt_tokens":7,"completion_tokens":10}}',
      ),
    ).toEqual({
      promptTokens: 7,
      completionTokens: 10,
    });
    expect(usageFromJson('{"usage":{"input_tokens":3,"output_tokens":4}}')).toEqual({
      promptTokens: 3,
      completionTokens: 4,
    });
    expect(usageFromJson('{"usage":null}')).toBeUndefined();
    expect(usageFromJson("not json")).toBeUndefined();
  });

  it("reads the usage object after the text without being fooled by the text", () => {
    const answer = {
      id: "cmpl-1",
      choices: [{ text: 'a "usage": {"prompt_tokens": 999} inside the text', index: 0 }],
      usage: {
        prompt_tokens: 5,
        completion_tokens: 2,
        prompt_tokens_details: { cached_tokens: 4 },
      },
    };
    expect(usageFromJson(JSON.stringify(answer))).toEqual({ promptTokens: 5, completionTokens: 2 });
    expect(usageFromJson(JSON.stringify(answer, null, 2))).toEqual({
      promptTokens: 5,
      completionTokens: 2,
    });
    // Usage before a later field that mentions it: the last key wins only if it is a key.
    const later = { usage: { prompt_tokens: 1, completion_tokens: 1 }, note: 'see "usage"' };
    expect(usageFromJson(JSON.stringify(later))).toEqual({ promptTokens: 1, completionTokens: 1 });
  });

  it("finds usage in the final SSE chunk across chunk boundaries", () => {
    const stream =
      'data: {"choices":[{"delta":{"content":"hé"}}]}\n\n' +
      'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n' +
      "data: [DONE]\n\n";
    const bytes = Buffer.from(stream, "utf8");
    for (const cut of [1, 7, 30, 41, 60, bytes.length - 3]) {
      const scanner = new SseUsageScanner();
      scanner.push(bytes.subarray(0, cut));
      scanner.push(bytes.subarray(cut));
      expect(scanner.finish()).toEqual({ promptTokens: 5, completionTokens: 2 });
    }
  });

  it("reads a final line without newline and ignores streams without usage", () => {
    const s = new SseUsageScanner();
    s.push('data: {"usage":{"prompt_tokens":1,"completion_tokens":1}}');
    expect(s.usage).toBeUndefined();
    expect(s.finish()).toEqual({ promptTokens: 1, completionTokens: 1 });
    const none = new SseUsageScanner();
    none.push('data: {"choices":[]}\n\ndata: [DONE]\n\n');
    expect(none.finish()).toBeUndefined();
  });

  it("bounds memory on a line that never ends", () => {
    const s = new SseUsageScanner(100);
    s.push("data: " + "x".repeat(1000));
    s.push('still the same line"usage"\n');
    s.push('data: {"usage":{"prompt_tokens":2,"completion_tokens":3}}\n');
    expect(s.finish()).toEqual({ promptTokens: 2, completionTokens: 3 });
  });
});
