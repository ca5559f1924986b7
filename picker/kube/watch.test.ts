// ListWatch against a real HTTP server that answers list and watch requests the way the
// apiserver does (pages, resourceVersions, bookmarks, 410 Gone), not against mocks of it.

import http from "node:http";
import { AddressInfo } from "node:net";
import { KubeClient } from "./client";
import { KubeObject, ListWatch, WatchEventType } from "./watch";

interface Change {
  rv: number;
  type: WatchEventType;
  object: KubeObject;
}

/** Pods of one namespace, with the history of their changes and the watches open on them. */
class FakeApiserver {
  readonly objects = new Map<string, KubeObject>();
  readonly history: Change[] = [];
  readonly requests: URL[] = [];
  readonly watches = new Set<http.ServerResponse>();
  /** Watches from before this resourceVersion get 410 Gone (etcd compacted). */
  oldest = 0;
  failNext = 0;
  private rv = 100;
  readonly server = http.createServer((req, res) => this.handle(req, res));

  async start(): Promise<string> {
    await new Promise<void>(r => this.server.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.closeWatches();
    this.server.closeAllConnections();
    await new Promise(r => this.server.close(r));
  }

  put(name: string, labels: Record<string, string>, extra: Record<string, unknown> = {}): void {
    const rv = ++this.rv;
    const type = this.objects.has(name) ? "MODIFIED" : "ADDED";
    const object = {
      metadata: { name, uid: `uid-${name}`, resourceVersion: String(rv), labels },
      ...extra,
    };
    this.objects.set(name, object);
    this.record({ rv, type, object: { apiVersion: "v1", kind: "Pod", ...object } });
  }

  remove(name: string): void {
    const object = this.objects.get(name);
    if (!object) return;
    this.objects.delete(name);
    const rv = ++this.rv;
    this.record({ rv, type: "DELETED", object: { apiVersion: "v1", kind: "Pod", ...object } });
  }

  bookmark(): void {
    const rv = ++this.rv;
    for (const res of this.watches) {
      res.write(
        `${JSON.stringify({ type: "BOOKMARK", object: { kind: "Pod", metadata: { resourceVersion: String(rv) } } })}\n`,
      );
    }
  }

  closeWatches(): void {
    for (const res of this.watches) res.end();
    this.watches.clear();
  }

  private record(change: Change): void {
    this.history.push(change);
    for (const res of this.watches) this.send(res, change);
  }

  private send(res: http.ServerResponse, change: Change): void {
    const selector = new URL(`http://x${res.req.url}`).searchParams.get("labelSelector");
    if (!this.matches(change.object, selector)) return;
    res.write(`${JSON.stringify({ type: change.type, object: change.object })}\n`);
  }

  private matches(o: KubeObject, selector: string | null): boolean {
    const labels = (o.metadata as { labels?: Record<string, string> }).labels ?? {};
    return (selector ?? "")
      .split(",")
      .filter(s => s !== "")
      .every(term => labels[term.split("=")[0]] === term.split("=")[1]);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(`http://x${req.url}`);
    this.requests.push(url);
    const q = url.searchParams;
    if (this.failNext > 0) {
      this.failNext--;
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Status", code: 500, message: "etcd is sulking" }));
      return;
    }
    if (q.get("watch") !== "true") return this.list(res, q);
    res.writeHead(200, { "content-type": "application/json" });
    const from = Number(q.get("resourceVersion"));
    if (from < this.oldest) {
      const status = {
        kind: "Status",
        code: 410,
        reason: "Expired",
        message: "too old resource version",
      };
      res.end(`${JSON.stringify({ type: "ERROR", object: status })}\n`);
      return;
    }
    for (const change of this.history) if (change.rv > from) this.send(res, change);
    this.watches.add(res);
    res.on("close", () => this.watches.delete(res));
  }

  private list(res: http.ServerResponse, q: URLSearchParams): void {
    const all = [...this.objects.values()].filter(o => this.matches(o, q.get("labelSelector")));
    const start = Number(q.get("continue") ?? "0");
    const limit = Number(q.get("limit") ?? "500");
    const items = all.slice(start, start + limit);
    const more = start + limit < all.length;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        apiVersion: "v1",
        kind: "PodList",
        metadata: {
          resourceVersion: String(this.rv),
          ...(more ? { continue: String(start + limit) } : {}),
        },
        items,
      }),
    );
  }
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 5));
  }
}

describe("ListWatch against an HTTP server that speaks list and watch", () => {
  let api: FakeApiserver;
  let client: KubeClient;
  let watch: ListWatch | undefined;
  const events: string[] = [];
  const errors: string[] = [];
  let listed = 0;
  let watching = 0;

  beforeEach(async () => {
    api = new FakeApiserver();
    const server = await api.start();
    client = new KubeClient({
      server,
      insecureSkipTlsVerify: false,
      authorization: () => "Bearer t",
      source: "test",
    });
    events.length = 0;
    errors.length = 0;
    listed = 0;
    watching = 0;
  });

  afterEach(async () => {
    watch?.close();
    client.close();
    await api.stop();
  });

  function startWatch(pageSize = 500): Promise<void> {
    watch = new ListWatch(client, {
      path: "/api/v1/namespaces/ns/pods",
      labelSelector: { app: "sim", pool: "p1" },
      pageSize,
      backoffMs: { initial: 10, max: 40 },
      onEvent: (type, o) => events.push(`${type} ${o.kind} ${o.metadata?.name}`),
      onListed: () => listed++,
      onWatching: () => watching++,
      onError: err => errors.push(err.message),
    });
    return watch.start();
  }

  const ours = { app: "sim", pool: "p1" };

  it("lists in pages, then watches from the list's version with bookmarks and the label selector", async () => {
    api.put("a", ours);
    api.put("b", ours);
    api.put("other", { app: "sim", pool: "p2" });
    api.put("c", ours);
    await startWatch(2);
    expect(listed).toBe(1);
    expect(events).toEqual(["ADDED Pod a", "ADDED Pod b", "ADDED Pod c"]);
    await waitFor(() => api.watches.size === 1, "the watch");
    const lists = api.requests.filter(u => u.searchParams.get("watch") === null);
    expect(lists.map(u => u.searchParams.get("continue"))).toEqual([null, "2"]);
    const w = api.requests.find(u => u.searchParams.get("watch") === "true")!;
    expect(Object.fromEntries(w.searchParams)).toMatchObject({
      labelSelector: "app=sim,pool=p1",
      allowWatchBookmarks: "true",
      resourceVersion: "104",
    });
    api.put("b", ours, { status: { podIP: "10.0.0.2" } });
    api.remove("a");
    api.put("d", ours);
    api.put("other", { app: "sim", pool: "p2" }, { status: {} });
    await waitFor(() => events.length === 6, "three watch events");
    expect(events.slice(3)).toEqual(["MODIFIED Pod b", "DELETED Pod a", "ADDED Pod d"]);
    expect(errors).toEqual([]);
  });

  it("reconnects from the last version seen (a bookmark's too) when the server ends the watch", async () => {
    api.put("a", ours);
    await startWatch();
    await waitFor(() => api.watches.size === 1, "the watch");
    api.put("b", ours);
    api.bookmark();
    await waitFor(() => events.length === 2, "b");
    api.closeWatches();
    api.put("c", ours);
    await waitFor(() => events.length === 3, "c after the reconnect");
    expect(events).toEqual(["ADDED Pod a", "ADDED Pod b", "ADDED Pod c"]);
    const watches = api.requests.filter(u => u.searchParams.get("watch") === "true");
    expect(watches.map(u => u.searchParams.get("resourceVersion"))).toEqual(["101", "103"]);
    expect(listed).toBe(1);
    expect(watching).toBe(2);
  });

  it("lists again after 410 Gone: reports what disappeared, changed or came meanwhile, nothing else", async () => {
    api.put("a", ours);
    api.put("b", ours);
    api.put("c", ours);
    await startWatch();
    await waitFor(() => api.watches.size === 1, "the watch");
    // Changes the watch misses (it is down), then the history it would resume from is compacted.
    const missed = [...api.watches];
    api.watches.clear();
    api.remove("a");
    api.put("b", ours, { status: { podIP: "10.0.0.2" } });
    api.put("d", ours);
    api.oldest = Infinity;
    for (const res of missed) res.end();
    await waitFor(() => listed === 2, "the second list");
    api.oldest = 0;
    expect(events.slice(3).sort()).toEqual(["ADDED Pod d", "DELETED Pod a", "MODIFIED Pod b"]);
    expect(errors).toEqual([]);
  });

  it("reports a failing request and retries it with backoff", async () => {
    api.put("a", ours);
    api.failNext = 3;
    await startWatch();
    expect(errors[0]).toBe("GET /api/v1/namespaces/ns/pods: 500 etcd is sulking");
    await waitFor(() => listed === 1, "the list after the failures");
    expect(errors).toHaveLength(3);
    expect(events).toEqual(["ADDED Pod a"]);
  });

  it("sends no request once closed", async () => {
    await startWatch();
    await waitFor(() => api.watches.size === 1, "the watch");
    watch!.close();
    await waitFor(() => api.watches.size === 0, "the watch to end");
    const before = api.requests.length;
    await new Promise(r => setTimeout(r, 100)); // several backoffs' worth: nothing may follow
    expect(api.requests.length).toBe(before);
  });
});
