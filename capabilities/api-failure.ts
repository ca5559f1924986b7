// What went wrong with a call to the apiserver, named for what it is: a transport failure
// (connection refused, timed out, reset, host not found — the apiserver never answered) or an
// HTTP status with the apiserver's own message. kubernetes-fluent-client reports a transport
// failure as `status: 400, statusText: "fetch failed"` with the real cause nested in `e.cause`;
// read as a 400 it would look like a bad request, i.e. a problem with the object.

export interface ApiFailure {
  /** HTTP status of the apiserver's answer; undefined when it never answered. */
  status?: number;
  message: string;
  /** The request never got an answer (network, TLS, timeout): transient by nature. */
  transport?: boolean;
}

const CODE_NAMES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  UND_ERR_CONNECT_TIMEOUT: "connection timed out",
  UND_ERR_HEADERS_TIMEOUT: "no answer in time (headers timeout)",
  UND_ERR_BODY_TIMEOUT: "no answer in time (body timeout)",
  UND_ERR_SOCKET: "connection closed by the other side",
  UND_ERR_CLOSED: "connection closed",
};

/** The transport failure inside `err` (undici nests it under `cause`), if that is what it is. */
function transportFailure(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && current && typeof current === "object"; depth++) {
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (typeof code === "string" && (CODE_NAMES[code] || code.startsWith("UND_ERR"))) {
      const name = CODE_NAMES[code] ?? "connection failed";
      const detail = typeof message === "string" && message ? `: ${message}` : "";
      return `${name} (${code}${detail})`;
    }
    current = (current as { cause?: unknown }).cause;
  }
  if (err instanceof TypeError && err.message === "fetch failed") return "connection failed";
  return undefined;
}

/** The HTTP status and the apiserver's message of an error thrown by the fluent client. */
export function apiFailure(err: unknown): ApiFailure {
  const e = err as {
    status?: number;
    statusText?: string;
    data?: { message?: string } | string;
    message?: string;
    e?: unknown;
  };
  const transport =
    transportFailure(e?.e) ??
    transportFailure(err) ??
    (e?.statusText === "fetch failed" && e?.data === undefined ? "connection failed" : undefined);
  if (transport) return { message: `apiserver not reachable: ${transport}`, transport: true };
  const data = typeof e?.data === "string" ? e.data : e?.data?.message;
  return { status: e?.status, message: data ?? e?.message ?? e?.statusText ?? String(err) };
}
