// A stand-in Prometheus that misbehaves on purpose, for the hostile-spec corpus. The address
// `${base}/${mode}/${tag}` selects how it answers (the operator appends /api/v1/query); every
// request is recorded with its tag, query and Authorization header. Every reply body and status
// text carries `leak`, a marker that must never show up in a rollout's status or Events.
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export const FAKE_MODES = [
  /** 400 errorType bad_data: a query Prometheus refuses (permanent). */
  "bad-data",
  /** 302 to the cloud metadata address: redirects are never followed (permanent). */
  "redirect",
  /** 401 / 403 (permanent). */
  "unauthorized",
  "forbidden",
  /** 200 whose body is no Prometheus answer (permanent). */
  "not-json",
  "wrong-shape",
  /** 500 / 429 (transient). */
  "server-error",
  "rate-limited",
  /** Never answers (transient: the request times out). */
  "hang",
  /** 200 with a body larger than the operator reads (20 MiB). */
  "huge",
] as const;
export type FakeMode = (typeof FAKE_MODES)[number];

export interface FakeRequest {
  mode: string;
  tag: string;
  query?: string;
  authorization?: string;
}

export interface HostilePrometheus {
  base: string;
  address(mode: FakeMode, tag: string): string;
  requests: FakeRequest[];
  leak: string;
  close(): Promise<void>;
}

export async function startHostilePrometheus(): Promise<HostilePrometheus> {
  const leak = `LEAKED-REPLY-${randomBytes(4).toString("hex")}`;
  const requests: FakeRequest[] = [];
  const json = (res: http.ServerResponse, status: number, body: unknown, text?: string) => {
    res.writeHead(status, text ?? `${leak}`, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://fake");
      const [mode = "", tag = ""] = url.pathname.split("/").filter(Boolean);
      const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      requests.push({
        mode,
        tag,
        query: form.get("query") ?? url.searchParams.get("query") ?? undefined,
        authorization: req.headers.authorization,
      });
      switch (mode as FakeMode) {
        case "bad-data":
          return json(res, 400, { status: "error", errorType: "bad_data", error: leak });
        case "redirect":
          res.writeHead(302, leak, { location: "http://169.254.169.254/latest/meta-data/" });
          return res.end(leak);
        case "unauthorized":
          return json(res, 401, { message: leak });
        case "forbidden":
          return json(res, 403, { message: leak });
        case "not-json":
          res.writeHead(200, { "content-type": "text/plain" });
          return res.end(`<html>${leak}</html>`);
        case "wrong-shape":
          return json(res, 200, {
            status: "success",
            data: { resultType: "matrix", result: leak },
          });
        case "server-error":
          return json(res, 500, { status: "error", errorType: "internal", error: leak });
        case "rate-limited":
          return json(res, 429, { status: "error", error: leak });
        case "hang":
          return; // never answers; close() drops the connection
        case "huge": {
          res.writeHead(200, { "content-type": "application/json" });
          res.write(`{"status":"success","data":{"resultType":"vector","result":[]},"pad":"`);
          const mib = Buffer.alloc(1024 * 1024, "x");
          let sent = 0;
          const more = () => {
            while (sent < 20) {
              sent++;
              if (!res.write(mib)) return void res.once("drain", more);
            }
            res.end(`${leak}"}`);
          };
          res.on("error", () => undefined);
          return more();
        }
        default:
          return json(res, 404, { message: `unknown mode ${mode}` });
      }
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    address: (mode, tag) => `${base}/${mode}/${tag}`,
    requests,
    leak,
    async close() {
      server.closeAllConnections();
      await new Promise(resolve => server.close(resolve));
    },
  };
}
