// GET requests to the apiserver on node:http(s) (http-get.ts): one keep-alive connection pool
// with the kubeconfig's TLS material, the Authorization header read per request.

import http from "node:http";
import https from "node:https";
import { GetResponse, get } from "../http-get";
import type { KubeConnection } from "./kubeconfig";

export type KubeResponse = GetResponse;

export interface GetOptions {
  query?: Record<string, string | undefined>;
  signal?: AbortSignal;
  /** Longest silence between body chunks before the request fails (watches: beyond their timeout). */
  bodyTimeoutMs?: number;
}

/** An error response of the apiserver: its status code and its Status message. */
export class KubeStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = "KubeStatusError";
  }
}

export class KubeClient {
  private readonly agent: http.Agent;

  constructor(readonly connection: KubeConnection) {
    this.agent = connection.server.startsWith("https:")
      ? new https.Agent({
          keepAlive: true,
          ca: connection.ca,
          cert: connection.cert,
          key: connection.key,
          rejectUnauthorized: !connection.insecureSkipTlsVerify,
          servername: connection.tlsServerName,
        })
      : new http.Agent({ keepAlive: true });
  }

  async get(apiPath: string, options: GetOptions = {}): Promise<KubeResponse> {
    const url = new URL(this.connection.server + apiPath);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, v);
    }
    const authorization = this.connection.authorization();
    return get(url, {
      agent: this.agent,
      headers: {
        accept: "application/json",
        ...(authorization ? { authorization } : {}),
      },
      signal: options.signal,
      headersTimeoutMs: 30_000,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 30_000,
    });
  }

  /** Throws KubeStatusError for a status ≥ 400, with the apiserver's message. */
  async getOk(apiPath: string, options: GetOptions = {}): Promise<KubeResponse> {
    const response = await this.get(apiPath, options);
    if (response.statusCode < 400) return response;
    const text = await response.body.text().catch(() => "");
    let message = text.slice(0, 300);
    try {
      const status = JSON.parse(text) as { message?: unknown };
      if (typeof status.message === "string") message = status.message;
    } catch {
      // not a Status object: keep the text
    }
    throw new KubeStatusError(
      response.statusCode,
      `GET ${apiPath}: ${response.statusCode} ${message}`.trim(),
    );
  }

  close(): void {
    this.agent.destroy();
  }
}
