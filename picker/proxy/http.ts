// HTTP plumbing of the proxy: which headers are forwarded, error replies, reading a bounded
// request body, and the network error codes that mean "this endpoint never answered".
import http from "node:http";
import { PickerError, errorBody, pickerError } from "../core/types";

/** Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1). */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

/** Not forwarded either: the proxy sets its own Host, length (the body may change) and Expect. */
const hopByHop = new Set([...HOP_BY_HOP_HEADERS, "host", "content-length", "expect"]);

/** Errors that prove no request reached a model server's application: safe to retry. */
export const connectErrors = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

export function errorCode(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 3 && e; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return "";
}

export function sendError(
  res: http.ServerResponse,
  err: PickerError,
  extra: http.OutgoingHttpHeaders = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(err);
  res.writeHead(err.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...extra,
  });
  res.end(body);
}

export function forwardHeaders(
  req: http.IncomingMessage,
  destinationHeader: string,
  bodyLength: number,
) {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value === undefined || hopByHop.has(key) || key.startsWith(destinationHeader)) continue;
    out[key] = value;
  }
  if (bodyLength > 0) out["content-length"] = String(bodyLength);
  return out;
}

export function responseHeaders(headers: Record<string, string | string[] | undefined>) {
  const out: http.OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) {
    if (value !== undefined && !hopByHop.has(key)) out[key] = value;
  }
  const length = headers["content-length"];
  if (typeof length === "string") out["content-length"] = length;
  return out;
}

export function readBody(
  req: http.IncomingMessage,
  limit: number,
): Promise<{ ok: true; body: Buffer } | { ok: false; error: PickerError }> {
  return new Promise(resolve => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      resolve({
        ok: false,
        error: pickerError(
          "PayloadTooLarge",
          `request body of ${declared} bytes exceeds the limit of ${limit}`,
        ),
      });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        resolve({
          ok: false,
          error: pickerError("PayloadTooLarge", `request body exceeds the limit of ${limit} bytes`),
        });
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (done) return;
      done = true;
      resolve({ ok: true, body: Buffer.concat(chunks, size) });
    });
    req.on("error", () => {
      if (done) return;
      done = true;
      resolve({
        ok: false,
        error: pickerError("BadRequest", "the request body could not be read"),
      });
    });
  });
}
