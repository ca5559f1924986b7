// The benchmark's own traffic to the apiserver (creates, watches, /metrics) through
// @kubernetes/client-node with the local environment's admin kubeconfig. A client of its own, not
// the fluent client the operator uses, so the benchmark's requests are easy to account for
// (isOperatorWrite counts the operator's user only).
import * as https from "node:https";
import * as k8s from "@kubernetes/client-node";

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: T;
}

export interface WatchHandle {
  close(): void;
}

type Versioned = k8s.KubernetesObject & { metadata?: { resourceVersion?: string } };

export class KubeClient {
  readonly #kc = new k8s.KubeConfig();
  readonly #objects: k8s.KubernetesObjectApi;

  constructor(kubeconfig: string) {
    this.#kc.loadFromFile(kubeconfig);
    this.#objects = k8s.KubernetesObjectApi.makeApiClient(this.#kc);
  }

  /** Creates an object. */
  create<T extends k8s.KubernetesObject>(object: T): Promise<T> {
    return whileInitializing(() => this.#objects.create(object));
  }

  /** The collection's current resourceVersion: where a watch of what comes next starts. */
  async resourceVersion(apiVersion: string, kind: string, labelSelector: string): Promise<string> {
    const list = await whileInitializing(() =>
      this.#objects.list(
        apiVersion,
        kind,
        undefined,
        undefined,
        undefined,
        undefined,
        undefined,
        labelSelector,
        1,
      ),
    );
    return list.metadata?.resourceVersion ?? "0";
  }

  /** The apiserver's own /metrics (text exposition format). */
  async metrics(): Promise<string> {
    const cluster = this.#kc.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig names no current cluster");
    const options: https.RequestOptions = { method: "GET", timeout: 60_000 };
    await this.#kc.applyToHTTPSOptions(options);
    return new Promise((resolve, reject) => {
      const req = https.request(new URL("/metrics", cluster.server), options, res => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode === 200) resolve(text);
          else reject(new Error(`GET /metrics: ${res.statusCode} ${text.slice(0, 300)}`));
        });
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error("GET /metrics timed out")));
      req.on("error", reject);
      req.end();
    });
  }

  /**
   * Watches a collection from `resourceVersion`, calling `onEvent` with the arrival time of each
   * event. Reconnects from the last seen resourceVersion when the stream ends or fails (a 410
   * Gone — history compacted — is reported through onError: events may have been missed).
   */
  watch<T extends Versioned>(
    collectionPath: string,
    labelSelector: string,
    resourceVersion: string,
    onEvent: (event: WatchEvent<T>, atMs: number) => void,
    onError: (err: Error) => void,
  ): WatchHandle {
    const watch = new k8s.Watch(this.#kc);
    let closed = false;
    let rv = resourceVersion;
    let current: AbortController | undefined;
    const connect = () => {
      if (closed) return;
      let ended = false;
      // Once per connection, however it ended.
      const reconnect = (err: unknown) => {
        if (ended || closed) return;
        ended = true;
        if (err) onError(err instanceof Error ? err : new Error(String(err)));
        setTimeout(connect, err ? 1000 : 0).unref();
      };
      watch
        .watch(
          collectionPath,
          { allowWatchBookmarks: true, resourceVersion: rv, labelSelector },
          (type: string, object: T) => {
            const atMs = Date.now();
            if (type === "ERROR") {
              onError(
                new Error(`watch ${collectionPath}: ${JSON.stringify(object).slice(0, 300)}`),
              );
              return;
            }
            rv = object.metadata?.resourceVersion ?? rv;
            if (type !== "BOOKMARK") onEvent({ type: type as WatchEvent<T>["type"], object }, atMs);
          },
          reconnect,
        )
        .then(
          controller => (current = controller),
          err => reconnect(err ?? new Error(`watch ${collectionPath} failed`)),
        );
    };
    connect();
    return {
      close() {
        closed = true;
        current?.abort();
      },
    };
  }
}

/** Retries a 429 "storage is (re)initializing": a CRD's watch cache right after (re)install. */
async function whileInitializing<T>(request: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (!(err instanceof k8s.ApiException && err.code === 429) || attempt >= 60) throw err;
      await new Promise(resolve => setTimeout(resolve, 500));
    }
  }
}
