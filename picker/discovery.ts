// Keeps the datastore in sync with the apiserver through watches (kubernetes-fluent-client,
// kubeconfig from $KUBECONFIG or in-cluster): the InferencePool (GA v1 and v1alpha2), the pods its
// selector matches, and the pool's InferenceModels, InferenceModelRewrites and
// InferenceObjectives (groups inference.networking.x-k8s.io and llm-d.ai). Watch events apply
// at once, so a weight or pod change reaches the scheduler within the watch latency. The
// mapping from objects to records lives in pool-records.ts (pure, unit-tested).

import { GenericKind, K8s, WatchEvent, kind } from "kubernetes-fluent-client";
import {
  type GroupVersionKind,
  gvk,
  InferenceGroup,
  inferencePoolGvk,
  type PoolGroup,
  SUCCESSOR_GROUPS,
} from "../capabilities/api/constants";
import type { WeightedTarget } from "./core/types";
import { Datastore } from "./datastore";
import {
  PoolSpec,
  inferenceModelFromObject,
  objectiveFromObject,
  podRecordFromObject,
  poolSpecFromObject,
  rewriteFromObject,
} from "./pool-records";

/** "a 90, b 10" for logs: every weight change shows up in the picker's log. */
function targetsText(targets: readonly WeightedTarget[]): string {
  return targets.length === 0 ? "(itself)" : targets.map(t => `${t.name} ${t.weight}`).join(", ");
}

export type PoolGroupChoice = "auto" | PoolGroup;

export interface DiscoveryOptions {
  namespace: string;
  poolName: string;
  /** Which InferencePool API to follow; "auto" prefers GA when both exist. */
  poolGroup: PoolGroupChoice;
  log: (message: string) => void;
}

interface Watching {
  close(): void;
}

type ObjectWithMeta = { metadata?: { name?: string } };
type Callback = (obj: ObjectWithMeta, deleted: boolean) => void;

const watchCfg = { resyncDelaySec: 1, relistIntervalSec: 300, lastSeenLimitSeconds: 600 };

export class Discovery {
  private readonly watchers: Watching[] = [];
  private podWatcher: Watching | undefined;
  private podSelectorKey = "";
  private readonly pools = new Map<string, PoolSpec>();
  private readonly connected = new Set<string>();
  private readonly failing = new Set<string>();
  private stopped = false;

  constructor(
    private readonly ds: Datastore,
    private readonly options: DiscoveryOptions,
  ) {}

  /** Synced: the pool is known and the pod watch has listed. */
  synced(): boolean {
    return this.ds.getPool() !== undefined && this.connected.has("pods");
  }

  async start(): Promise<void> {
    const { namespace } = this.options;
    const poolGroups: PoolGroup[] =
      this.options.poolGroup === "auto"
        ? [InferenceGroup.k8s, InferenceGroup.xK8s]
        : [this.options.poolGroup];
    const starts: Promise<void>[] = [];
    for (const group of poolGroups) {
      const pool = inferencePoolGvk(group);
      starts.push(
        this.watchKind(`InferencePool ${group}/${pool.version}`, pool, (o, deleted) =>
          this.onPool(group, o, deleted),
        ),
      );
    }
    starts.push(
      this.watchKind("InferenceModel", gvk.inferenceModel, (o, deleted) => {
        const name = o.metadata?.name;
        if (!name) return;
        const record = deleted ? undefined : inferenceModelFromObject(o);
        if (record) this.ds.upsertModel(record);
        else this.ds.deleteModel(name);
        this.options.log(
          record
            ? `discovery: InferenceModel ${name}: ${record.modelName} → ${targetsText(record.targets)}`
            : `discovery: InferenceModel ${name} removed`,
        );
      }),
    );
    // The same kinds in both groups (one schema); the llm-d.ai ones are the successors.
    for (const group of SUCCESSOR_GROUPS) {
      starts.push(
        this.watchKind(
          `InferenceModelRewrite ${group}`,
          { ...gvk.inferenceModelRewrite, group },
          (o, deleted) => {
            const name = o.metadata?.name;
            if (!name) return;
            const record = deleted ? undefined : rewriteFromObject(o);
            if (record) this.ds.upsertRewrite(record);
            else this.ds.deleteRewrite(`${group}/${name}`);
            this.options.log(
              record
                ? `discovery: InferenceModelRewrite ${group}/${name}: ${record.rules.map(r => `${r.matches.join("|") || "*"} → ${targetsText(r.targets)}`).join("; ")}`
                : `discovery: InferenceModelRewrite ${group}/${name} removed`,
            );
          },
        ),
        this.watchKind(
          `InferenceObjective ${group}`,
          { ...gvk.inferenceObjective, group },
          (o, deleted) => {
            const name = o.metadata?.name;
            if (!name) return;
            const record = deleted ? undefined : objectiveFromObject(o);
            if (record) this.ds.upsertObjective(record);
            else this.ds.deleteObjective(`${group}/${name}`);
          },
        ),
      );
    }
    // All watches start together: a slow or missing kind must not delay the others.
    await Promise.all(starts);
    this.options.log(
      `discovery: watching pool ${namespace}/${this.options.poolName} and its models`,
    );
  }

  stop(): void {
    this.stopped = true;
    this.podWatcher?.close();
    for (const w of this.watchers) w.close();
  }

  private onPool(group: string, o: ObjectWithMeta, deleted: boolean): void {
    if (o.metadata?.name !== this.options.poolName) return;
    if (deleted) {
      this.pools.delete(group);
    } else {
      const spec = poolSpecFromObject(o);
      if (spec instanceof Error) {
        this.options.log(`discovery: ignoring InferencePool: ${spec.message}`);
        this.pools.delete(group);
      } else {
        this.pools.set(group, spec);
      }
    }
    const effective = this.pools.get(InferenceGroup.k8s) ?? this.pools.get(InferenceGroup.xK8s);
    this.ds.setPool(effective);
    void this.followPods(effective);
  }

  /** (Re)starts the pod watch when the pool's selector changes. */
  private async followPods(pool: PoolSpec | undefined): Promise<void> {
    const key = pool ? JSON.stringify(Object.entries(pool.selector).sort()) : "";
    if (key === this.podSelectorKey || this.stopped) return;
    this.podSelectorKey = key;
    this.podWatcher?.close();
    this.podWatcher = undefined;
    this.connected.delete("pods");
    this.ds.clearPods();
    if (!pool) return;
    let query = K8s(kind.Pod).InNamespace(this.options.namespace);
    for (const [k, v] of Object.entries(pool.selector)) query = query.WithLabel(k, v);
    const watcher = query.Watch((pod, phase) => {
      const record = podRecordFromObject(pod);
      if (!record) return;
      if (String(phase) === "DELETED") this.ds.deletePod(record.name);
      else this.ds.upsertPod(record);
    }, watchCfg);
    this.instrument("pods", watcher.events);
    this.podWatcher = watcher;
    await watcher.start();
    this.options.log(`discovery: watching pods with selector ${key}`);
  }

  private async watchKind(
    label: string,
    kindOverride: GroupVersionKind,
    callback: Callback,
  ): Promise<void> {
    const watcher = K8s(GenericKind, { kindOverride })
      .InNamespace(this.options.namespace)
      .Watch(
        (obj, phase) => callback(obj as ObjectWithMeta, String(phase) === "DELETED"),
        watchCfg,
      );
    this.instrument(label, watcher.events);
    this.watchers.push(watcher);
    await watcher.start();
  }

  /** Logs the first failure of a watch (e.g. a CRD that is not installed) and its recovery. */
  private instrument(label: string, events: NodeJS.EventEmitter): void {
    events.on(WatchEvent.CONNECT, () => {
      this.connected.add(label);
      if (this.failing.delete(label)) this.options.log(`discovery: ${label} watch recovered`);
    });
    const onError = (err: unknown) => {
      if (this.failing.has(label)) return;
      this.failing.add(label);
      const message = (err instanceof Error ? err.message : String(err)).split(" [[")[0];
      const hint = message.includes("404") ? " (is the CRD installed?)" : "";
      this.options.log(`discovery: ${label} watch failing, retrying${hint}: ${message}`);
    };
    events.on(WatchEvent.LIST_ERROR, onError);
    events.on(WatchEvent.WATCH_ERROR, onError);
    events.on(WatchEvent.NETWORK_ERROR, onError);
    events.on(WatchEvent.DATA_ERROR, onError);
  }
}
