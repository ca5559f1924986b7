import { findTopLevelValue, parseInferenceRequest, rewriteModel } from "./request";
import { seededRng } from "./rng";

const buf = (s: string) => Buffer.from(s, "utf8");

describe("parseInferenceRequest", () => {
  it("reads model, stream and the chat prompt", () => {
    const r = parseInferenceRequest(
      buf('{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}'),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.request.model).toBe("m1");
    expect(r.request.stream).toBe(true);
    expect(r.request.promptText).toBe('[{"role":"user","content":"hi"}]');
  });

  it("reads a completions prompt, string or list, and the cache salt", () => {
    const a = parseInferenceRequest(buf('{"model":"m","prompt":"abc","cache_salt":"s1"}'));
    const b = parseInferenceRequest(buf('{"model":"m","prompt":["ab","c"]}'));
    expect(a.ok && a.request.promptText).toBe("abc");
    expect(a.ok && a.request.cacheSalt).toBe("s1");
    expect(b.ok && b.request.promptText).toBe("abc");
    expect(a.ok && a.request.stream).toBe(false);
  });

  it.each([
    ["", "empty"],
    ["{", "not valid JSON"],
    ["[1,2]", "must be a JSON object"],
    ["null", "must be a JSON object"],
    ['"model"', "must be a JSON object"],
    ["{}", "missing required field 'model'"],
    ['{"model":5}', "'model' must be a string"],
    ['{"model":""}', "'model' must not be empty"],
    ['{"model":"m","stream":"yes"}', "'stream' must be a boolean"],
    ['{"model":"m","messages":{}}', "'messages' must be an array"],
    ['{"model":"m","prompt":3}', "'prompt' must be a string or an array"],
    ['\uFEFF{"model":"m"}', "not valid JSON"],
  ])("rejects %j with a 400 that says %s", (body, says) => {
    const r = parseInferenceRequest(buf(body));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.status).toBe(400);
    expect(r.error.code).toBe("BadRequest");
    expect(r.error.message).toContain(says);
  });

  it("does not take an inherited 'model' from the prototype", () => {
    const r = parseInferenceRequest(buf('{"__proto__":{"model":"x"}}'));
    expect(r.ok).toBe(false);
  });
});

describe("rewriteModel", () => {
  it("changes only the model value and keeps every other byte", () => {
    const original = '{ "seed": 12345678901234567890, "model" : "base",\n "temperature": 1.0 }';
    const r = parseInferenceRequest(buf(original));
    if (!r.ok) throw new Error("parse failed");
    const out = rewriteModel(buf(original), r.request.modelSpan, "lora-v2").toString("utf8");
    expect(out).toBe('{ "seed": 12345678901234567890, "model" : "lora-v2",\n "temperature": 1.0 }');
  });

  it("finds model after nested objects, strings with braces and escaped keys", () => {
    const body = buf(
      '{"messages":[{"content":"{\\"model\\": \\"no\\"} ]"}],"m\\u006fdel":"yes","x":[1,{"model":"deep"}]}',
    );
    const span = findTopLevelValue(body, "model");
    expect(span).toBeDefined();
    expect(body.toString("utf8", span!.start, span!.end)).toBe('"yes"');
  });

  it("takes the last duplicate key, as JSON.parse does", () => {
    const body = buf('{"model":"a","model":"b"}');
    const r = parseInferenceRequest(body);
    expect(r.ok && r.request.model).toBe("b");
    if (!r.ok) return;
    expect(JSON.parse(rewriteModel(body, r.request.modelSpan, "c").toString()).model).toBe("c");
  });

  it("handles multi-byte characters before the model field", () => {
    const body = buf('{"messages":[{"content":"héllo ✓ 𝄞"}],"model":"m"}');
    const r = parseInferenceRequest(body);
    if (!r.ok) throw new Error("parse failed");
    const out = JSON.parse(rewriteModel(body, r.request.modelSpan, "n-é").toString("utf8"));
    expect(out).toEqual({ messages: [{ content: "héllo ✓ 𝄞" }], model: "n-é" });
  });
});

describe("request parsing fuzz", () => {
  const seeds = [
    '{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}',
    '{"model":"m","prompt":"abc","max_tokens":5}',
    '{"model":"m","prompt":[1,2,3]}',
  ];
  const alphabet = '{}[]":,\\ \n\tabcmodel0123456789-.eE+truefalsenull\u00e9\u2713';

  function mutate(s: string, rng: () => number): string {
    const chars = [...s];
    const edits = 1 + Math.floor(rng() * 4);
    for (let k = 0; k < edits; k++) {
      const at = Math.floor(rng() * (chars.length + 1));
      const op = rng();
      const ch = alphabet[Math.floor(rng() * alphabet.length)];
      if (op < 0.4) chars.splice(at, 0, ch);
      else if (op < 0.7) chars.splice(at, 1);
      else chars[at] = ch;
    }
    return chars.join("");
  }

  function randomBytes(rng: () => number): Buffer {
    const n = Math.floor(rng() * 64);
    return Buffer.from(Array.from({ length: n }, () => Math.floor(rng() * 256)));
  }

  it("never throws: every body is either parsed (and rewritable) or a 400", () => {
    const rng = seededRng(20240607);
    let parsed = 0;
    let rejected = 0;
    for (let i = 0; i < 20000; i++) {
      const body =
        i % 5 === 0 ? randomBytes(rng) : Buffer.from(mutate(seeds[i % seeds.length], rng), "utf8");
      const r = parseInferenceRequest(body);
      if (r.ok) {
        parsed++;
        const rewritten = rewriteModel(body, r.request.modelSpan, "target");
        const again = JSON.parse(rewritten.toString("utf8"));
        expect(again.model).toBe("target");
      } else {
        rejected++;
        expect(r.error.status).toBe(400);
        expect(r.error.message.length).toBeGreaterThan(0);
      }
    }
    expect(parsed).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
  });

  it("survives pathological nesting", () => {
    const deep = '{"model":"m","messages":' + "[".repeat(200000) + "]".repeat(200000) + "}";
    const r = parseInferenceRequest(buf(deep));
    // Either way is fine as long as it is an answer, not an exception.
    if (r.ok) expect(r.request.model).toBe("m");
    else expect(r.error.status).toBe(400);
  });
});
