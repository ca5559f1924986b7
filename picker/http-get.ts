// GET requests on node:http / node:https, for the picker's own reads: scraping the pods and the
// Kubernetes client's lists and watches. Why not undici (which the HTTP proxy door uses): its
// HTTP parser is WebAssembly, and compiling it with undici's modules costs ~8 MiB of resident
// memory in every picker, proxy door in use or not (bench/picker/README.md, "Memory (issue 19)");
// Node's own client parses with the llhttp already in the binary. Timeouts as undici's — one for
// the answer's headers (connecting included), one for the longest silence within the body — and
// one for the whole GET (the scraper's: a page must arrive within it, however it trickles).
import * as http from "node:http";
import * as https from "node:https";

/** A timeout of a GET: no headers or no whole answer in time, or the body went silent too long. */
export class HttpTimeoutError extends Error {
  constructor(
    readonly stage: "headers" | "body" | "whole",
    readonly ms: number,
  ) {
    super(stage === "body" ? `the body went silent for ${ms} ms` : `no answer in ${ms} ms`);
    this.name = "HttpTimeoutError";
  }
}

export interface GetOptions {
  /** Keep-alive connections (and, for https, the TLS material) of this client. */
  agent: http.Agent;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  /** The whole GET, headers and body. */
  timeoutMs?: number;
}

/** The body as chunks (read once: by iterating, or by one of the helpers). */
export interface ResponseBody extends AsyncIterable<Buffer> {
  text(): Promise<string>;
  json(): Promise<unknown>;
  /** Reads and drops the rest, so that the connection can be reused. */
  dump(): Promise<void>;
  /** Ends the request at once; iterating then throws `err`. */
  destroy(err?: Error): void;
}

export interface GetResponse {
  statusCode: number;
  body: ResponseBody;
}

export function get(url: string | URL, o: GetOptions): Promise<GetResponse> {
  const target = typeof url === "string" ? new URL(url) : url;
  const client = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(target, {
      method: "GET",
      agent: o.agent,
      headers: o.headers,
      signal: o.signal,
    });
    // What a timeout ends: the request until the headers arrive, then the response.
    let current: { destroy(err: Error): void } = req;
    const after = (ms: number | undefined, stage: HttpTimeoutError["stage"]) =>
      ms === undefined
        ? undefined
        : setTimeout(() => current.destroy(new HttpTimeoutError(stage, ms)), ms);
    const whole = after(o.timeoutMs, "whole");
    const headers = after(o.headersTimeoutMs, "headers");
    req.once("error", err => {
      clearTimeout(whole);
      clearTimeout(headers);
      reject(err);
    });
    req.once("response", res => {
      clearTimeout(headers);
      current = res;
      const silence = after(o.bodyTimeoutMs, "body");
      res.once("close", () => {
        clearTimeout(whole);
        clearTimeout(silence);
      });
      resolve({ statusCode: res.statusCode ?? 0, body: bodyOf(res, silence) });
    });
    req.end();
  });
}

function bodyOf(res: http.IncomingMessage, silence: NodeJS.Timeout | undefined): ResponseBody {
  res.on("error", () => undefined); // surfaces where the body is read
  async function* chunks(): AsyncGenerator<Buffer> {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      silence?.refresh();
      yield chunk;
    }
  }
  const text = async () => {
    const parts: Buffer[] = [];
    for await (const chunk of chunks()) parts.push(chunk);
    return Buffer.concat(parts).toString("utf8");
  };
  return {
    [Symbol.asyncIterator]: chunks,
    text,
    json: async () => JSON.parse(await text()) as unknown,
    dump: async () => {
      for await (const _ of chunks());
    },
    destroy: err => res.destroy(err),
  };
}
