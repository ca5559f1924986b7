// A minimal HTTPS client for the benchmark's own traffic to the apiserver (creates, watches,
// /metrics), authenticated with the local environment's admin certificate. Kept apart from the
// fluent client the operator uses so the benchmark's requests are easy to account for.
import * as fs from "node:fs";
import * as https from "node:https";
import type { ClusterInfo } from "../../hack/env/cluster";

export interface KubeResponse<T> {
  status: number;
  body: T;
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export interface WatchHandle {
  close(): void;
}

export class KubeClient {
  readonly #base: URL;
  readonly #agent: https.Agent;
  readonly #tls: { ca: Buffer; cert: Buffer; key: Buffer };

  constructor(info: Pick<ClusterInfo, "apiserverUrl" | "pki">, maxSockets = 32) {
    this.#base = new URL(info.apiserverUrl);
    this.#tls = {
      ca: fs.readFileSync(info.pki.caCert),
      cert: fs.readFileSync(info.pki.admin.cert),
      key: fs.readFileSync(info.pki.admin.key),
    };
    this.#agent = new https.Agent({ keepAlive: true, maxSockets, ...this.#tls });
  }

  #options(method: string, path: string, headers: Record<string, string>): https.RequestOptions {
    return {
      method,
      host: this.#base.hostname,
      port: this.#base.port,
      path,
      headers: { accept: "application/json", ...headers },
      agent: this.#agent,
    };
  }

  /** One request; resolves with the status and the parsed (or raw, for non-JSON) body. */
  request<T>(method: string, path: string, body?: unknown, contentType = "application/json") {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = payload
      ? { "content-type": contentType, "content-length": String(Buffer.byteLength(payload)) }
      : {};
    return new Promise<KubeResponse<T>>((resolve, reject) => {
      const req = https.request(this.#options(method, path, headers), res => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          if ((res.headers["content-type"] ?? "").includes("json")) {
            try {
              parsed = JSON.parse(text);
            } catch {
              /* keep the text */
            }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T });
        });
        res.on("error", reject);
      });
      req.on("error", reject);
      req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** Like request, but throws unless the status is 2xx. */
  async must<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    let res = await this.request<T>(method, path, body, contentType);
    // 429 "storage is (re)initializing": a CRD's watch cache right after (re)install; retry.
    for (let attempt = 0; res.status === 429 && attempt < 60; attempt++) {
      await new Promise(resolve => setTimeout(resolve, 500));
      res = await this.request<T>(method, path, body, contentType);
    }
    if (res.status < 200 || res.status >= 300) {
      const message = (res.body as { message?: string })?.message ?? JSON.stringify(res.body);
      throw new Error(`${method} ${path}: ${res.status} ${message}`);
    }
    return res.body;
  }

  metrics(): Promise<string> {
    return this.must<string>("GET", "/metrics");
  }

  /**
   * Watches a collection from `resourceVersion`, calling `onEvent` with the arrival time of each
   * event. Reconnects from the last seen resourceVersion when the stream ends or fails (a 410
   * Gone — history compacted — is reported through onError: events may have been missed).
   */
  watch<T extends { metadata?: { resourceVersion?: string } }>(
    collectionPath: string,
    resourceVersion: string,
    onEvent: (event: WatchEvent<T>, atMs: number) => void,
    onError: (err: Error) => void,
  ): WatchHandle {
    let closed = false;
    let rv = resourceVersion;
    let current: import("node:http").ClientRequest | undefined;
    const sep = collectionPath.includes("?") ? "&" : "?";
    let attempt = 0;
    const connect = () => {
      if (closed) return;
      const mine = ++attempt;
      // Once per connection, however it ended (end, error, bad status).
      const reconnect = (delayMs: number) => {
        if (!closed && mine === attempt) {
          attempt++;
          setTimeout(connect, delayMs).unref();
        }
      };
      const path = `${collectionPath}${sep}watch=true&allowWatchBookmarks=true&resourceVersion=${rv}`;
      const req = https.request(
        { ...this.#options("GET", path, {}), agent: false, ...this.#tls },
        res => {
          if (res.statusCode !== 200) {
            onError(new Error(`watch ${collectionPath}: HTTP ${res.statusCode}`));
            res.resume();
            reconnect(1000);
            return;
          }
          let buffer = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            const atMs = Date.now();
            buffer += chunk;
            let nl: number;
            while ((nl = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, nl);
              buffer = buffer.slice(nl + 1);
              if (!line.trim()) continue;
              const event = JSON.parse(line) as WatchEvent<T>;
              if (event.type === "ERROR") {
                onError(new Error(`watch ${collectionPath}: ${line.slice(0, 300)}`));
                continue;
              }
              rv = event.object.metadata?.resourceVersion ?? rv;
              if (event.type !== "BOOKMARK") onEvent(event, atMs);
            }
          });
          res.on("end", () => reconnect(0));
        },
      );
      req.on("error", err => {
        if (closed) return;
        onError(err);
        reconnect(1000);
      });
      req.end();
      current = req;
    };
    connect();
    return {
      close() {
        closed = true;
        current?.destroy();
      },
    };
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** Runs `work` over `items` with at most `limit` in flight. */
export async function inParallel<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
