// Reading answers: only an OpenAI answer's content is kept (status must not become a way to read
// other services), streamed events give the TTFT, and every body is bounded.
import { describe, expect, it } from "@jest/globals";
import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { readAnswer } from "./answer";

const body = (...parts: string[]) =>
  Readable.from(parts.map(p => Buffer.from(p))) as unknown as Dispatcher.ResponseData["body"];
const clock = () => {
  let t = 0;
  return () => (t += 10);
};

describe("readAnswer", () => {
  it("keeps an OpenAI answer's model and content (chat or completions)", async () => {
    const chat = JSON.stringify({ model: "m", choices: [{ message: { content: "Paris" } }] });
    expect(await readAnswer(body(chat), false, clock())).toEqual({ model: "m", content: "Paris" });
    const text = JSON.stringify({ model: "m", choices: [{ text: "Rome" }] });
    expect(await readAnswer(body(text), false, clock())).toEqual({ model: "m", content: "Rome" });
  });

  it("never keeps another body: an error's type token only, anything else not recorded", async () => {
    const error = JSON.stringify({
      error: { message: "The model `x` does not exist.", type: "NotFoundError" },
    });
    expect(await readAnswer(body(error), false, clock())).toEqual({
      content: "",
      errorType: "NotFoundError",
    });
    const page = "<html>secret admin page</html>";
    const read = await readAnswer(body(page), false, clock());
    expect(read).toEqual({
      content: "",
      error: `not an OpenAI answer (${page.length} bytes, not recorded)`,
    });
    expect(JSON.stringify(read)).not.toContain("secret");
  });

  it("joins streamed content and times the first content chunk, across split chunks", async () => {
    const event = (o: object) => `data: ${JSON.stringify(o)}\n\n`;
    const role = event({ model: "m", choices: [{ delta: { role: "assistant" } }] });
    const hello = event({ model: "m", choices: [{ delta: { content: "hello " } }] });
    const world = event({ model: "m", choices: [{ delta: { content: "world" } }] });
    const read = await readAnswer(
      body(role, hello.slice(0, 20), hello.slice(20), world, "data: [DONE]\n\n"),
      true,
      clock(),
    );
    expect(read).toEqual({ model: "m", content: "hello world", ttftMs: 30 });
  });

  it("ignores streamed events that are not OpenAI chunks (no `choices`)", async () => {
    const event = (o: object) => `data: ${JSON.stringify(o)}\n\n`;
    const other = event({ model: "secret-internal", text: "secret" });
    const chunk = event({ model: "m", choices: [{ delta: { content: "ok" } }] });
    const read = await readAnswer(body(other, chunk), true, clock());
    expect(read).toEqual({ model: "m", content: "ok", ttftMs: 20 });
    const only = await readAnswer(body(other, "data: [DONE]\n\n"), true, clock());
    expect(only).toEqual({ model: undefined, content: "", ttftMs: undefined });
    expect(JSON.stringify(only)).not.toContain("secret");
  });

  it("stops reading past the byte bound", async () => {
    const big = "x".repeat(300 * 1024);
    expect(await readAnswer(body(big), false, clock())).toEqual({
      content: "",
      error: "answer larger than 262144 bytes",
    });
  });
});
