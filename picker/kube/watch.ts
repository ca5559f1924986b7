// List then watch one collection, as client-go's reflector does: list (in pages), hand every
// object over, watch from the list's resourceVersion with bookmarks (newline-delimited JSON
// events), reconnect from the last resourceVersion seen when the server ends the watch or a
// request fails (with backoff), and list again when that version is gone (410). A list that
// follows another reports what changed in between: objects that disappeared as DELETED, changed
// ones as MODIFIED, unchanged ones not at all.

import { setTimeout as sleep } from "node:timers/promises";
import { KubeClient, KubeStatusError } from "./client";

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED";

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
  [field: string]: unknown;
}

export interface ListWatchOptions {
  /** e.g. /api/v1/namespaces/default/pods */
  path: string;
  labelSelector?: Readonly<Record<string, string>>;
  onEvent(type: WatchEventType, object: KubeObject): void;
  /** After every complete list: the first one means the collection is synced. */
  onListed?(): void;
  /** After every watch request the server accepted (a reconnect without a list included). */
  onWatching?(): void;
  onError?(err: Error): void;
  /** Delay before reconnecting: initial, doubled after each failure up to max. */
  backoffMs?: { initial: number; max: number };
  /** Seconds the server keeps one watch open (client-go: 5–10 min at random). */
  watchTimeoutSeconds?: () => number;
  pageSize?: number;
}

interface Known {
  resourceVersion: string | undefined;
  /** Enough of the object to report its deletion (name, namespace, kind). */
  stub: KubeObject;
}

interface ObjectList {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: KubeObject[];
}

/** The apiserver's 410: the resourceVersion asked for is no longer in its history. */
class Gone extends Error {}

function keyOf(o: KubeObject): string {
  return o.metadata?.uid ?? `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;
}

function stubOf(o: KubeObject): KubeObject {
  const { name, namespace, uid, resourceVersion } = o.metadata ?? {};
  return {
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: { name, namespace, uid, resourceVersion },
  };
}

export function labelSelectorText(selector: Readonly<Record<string, string>>): string {
  return Object.entries(selector)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

export class ListWatch {
  private readonly abort = new AbortController();
  private readonly known = new Map<string, Known>();
  private resourceVersion: string | undefined;
  private backoffMs: number;
  private readonly backoff: { initial: number; max: number };

  constructor(
    private readonly client: KubeClient,
    private readonly options: ListWatchOptions,
  ) {
    this.backoff = options.backoffMs ?? { initial: 200, max: 5000 };
    this.backoffMs = this.backoff.initial;
  }

  /** Starts the loop; resolves once the first list succeeded or failed (it goes on either way). */
  start(): Promise<void> {
    return new Promise(resolve => void this.run(resolve));
  }

  close(): void {
    this.abort.abort();
  }

  private get closed(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(firstAttemptDone: () => void): Promise<void> {
    while (!this.closed) {
      try {
        if (this.resourceVersion === undefined) {
          await this.list();
          this.backoffMs = this.backoff.initial;
          this.options.onListed?.();
          firstAttemptDone();
        }
        if (await this.watch()) this.backoffMs = this.backoff.initial;
      } catch (err) {
        firstAttemptDone();
        if (this.closed) return;
        this.options.onError?.(err instanceof Error ? err : new Error(String(err)));
        this.backoffMs = Math.min(this.backoffMs * 2, this.backoff.max);
      }
      try {
        await sleep(this.backoffMs * (0.5 + Math.random() / 2), undefined, {
          signal: this.abort.signal,
        });
      } catch {
        return; // closed
      }
    }
  }

  private query(extra: Record<string, string | undefined>): Record<string, string | undefined> {
    const selector = this.options.labelSelector;
    return {
      ...(selector ? { labelSelector: labelSelectorText(selector) } : {}),
      ...extra,
    };
  }

  /** Lists every page, then reports the differences to what was known. */
  private async list(): Promise<void> {
    const items: KubeObject[] = [];
    let resourceVersion: string | undefined;
    let continueToken: string | undefined;
    do {
      const response = await this.client.getOk(this.options.path, {
        query: this.query({
          limit: String(this.options.pageSize ?? 500),
          continue: continueToken,
        }),
        signal: this.abort.signal,
      });
      const list = (await response.body.json()) as ObjectList;
      const kind = list.kind?.replace(/List$/, "");
      // Items of core lists carry no apiVersion/kind; the records need them.
      for (const item of list.items ?? []) {
        items.push({
          ...item,
          apiVersion: item.apiVersion ?? list.apiVersion,
          kind: item.kind ?? kind,
        });
      }
      resourceVersion = list.metadata?.resourceVersion;
      continueToken = list.metadata?.continue || undefined;
    } while (continueToken);
    this.applyList(items);
    this.resourceVersion = resourceVersion ?? "";
  }

  private applyList(items: readonly KubeObject[]): void {
    const listed = new Set<string>();
    for (const item of items) {
      const key = keyOf(item);
      listed.add(key);
      const before = this.known.get(key);
      const rv = item.metadata?.resourceVersion;
      if (before && before.resourceVersion === rv) continue;
      this.known.set(key, { resourceVersion: rv, stub: stubOf(item) });
      this.deliver(before ? "MODIFIED" : "ADDED", item);
    }
    for (const [key, { stub }] of this.known) {
      if (listed.has(key)) continue;
      this.known.delete(key);
      this.deliver("DELETED", stub);
    }
  }

  /** One watch request; true when it delivered anything (bookmarks count). */
  private async watch(): Promise<boolean> {
    const timeoutSeconds = this.options.watchTimeoutSeconds?.() ?? 300 + Math.random() * 300;
    let response;
    try {
      response = await this.client.getOk(this.options.path, {
        query: this.query({
          watch: "true",
          resourceVersion: this.resourceVersion,
          allowWatchBookmarks: "true",
          timeoutSeconds: String(Math.round(timeoutSeconds)),
        }),
        signal: this.abort.signal,
        // The server sends bookmarks while the watch is open; silence past its timeout is a dead connection.
        bodyTimeoutMs: (timeoutSeconds + 60) * 1000,
      });
    } catch (err) {
      if (err instanceof KubeStatusError && err.statusCode === 410) return this.gone();
      throw err;
    }
    this.options.onWatching?.();
    let delivered = false;
    let buffer = "";
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line !== "") this.onLine(line);
          delivered ||= line !== "";
        }
      }
    } catch (err) {
      if (err instanceof Gone) return this.gone();
      throw err;
    }
    return delivered;
  }

  private gone(): true {
    this.resourceVersion = undefined;
    return true;
  }

  private onLine(line: string): void {
    const event = JSON.parse(line) as { type?: string; object?: KubeObject };
    const object = event.object ?? {};
    const rv = object.metadata?.resourceVersion;
    switch (event.type) {
      case "BOOKMARK":
        break;
      case "ERROR": {
        const status = object as { code?: number; message?: string };
        if (status.code === 410) throw new Gone(status.message);
        throw new Error(
          `watch ${this.options.path}: ${status.code ?? ""} ${status.message ?? line}`,
        );
      }
      case "ADDED":
      case "MODIFIED":
        this.known.set(keyOf(object), { resourceVersion: rv, stub: stubOf(object) });
        this.deliver(event.type, object);
        break;
      case "DELETED":
        this.known.delete(keyOf(object));
        this.deliver("DELETED", object);
        break;
      default:
        throw new Error(`watch ${this.options.path}: unknown event type ${event.type}`);
    }
    if (rv) this.resourceVersion = rv;
  }

  /** A failing handler is reported, not allowed to end the watch. */
  private deliver(type: WatchEventType, object: KubeObject): void {
    try {
      this.options.onEvent(type, object);
    } catch (err) {
      this.options.onError?.(err instanceof Error ? err : new Error(String(err)));
    }
  }
}
