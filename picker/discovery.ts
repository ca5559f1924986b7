// Keeps the datastore in sync with the apiserver through watches (the picker's own small client,
// kube/: kubeconfig from $KUBECONFIG, ~/.kube/config or in-cluster): the InferencePool (GA v1 and v1alpha2), the pods its
// selector matches, and the pool's InferenceModels, InferenceModelRewrites and
// InferenceObjectives (groups inference.networking.x-k8s.io and llm-d.ai). Watch events apply
// at once, so a weight or pod change reaches the scheduler within the watch latency. The
// mapping from objects to records lives in pool-records.ts (pure, unit-tested).

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
import { KubeClient } from "./kube/client";
import { loadConnection } from "./kube/kubeconfig";
import { KubeObject, ListWatch, labelSelectorText } from "./kube/watch";
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
  /** The apiserver connection; default: loadConnection() ($KUBECONFIG, ~/.kube/config, in-cluster). */
  client?: KubeClient;
}

type Callback = (obj: KubeObject, deleted: boolean) => void;

export class Discovery {
  private readonly watchers: ListWatch[] = [];
  private readonly client: KubeClient;
  private podWatcher: ListWatch | undefined;
  private podSelectorKey = "";
  private readonly pools = new Map<string, PoolSpec>();
  private readonly connected = new Set<string>();
  private readonly failing = new Set<string>();
  private stopped = false;

  constructor(
    private readonly ds: Datastore,
    private readonly options: DiscoveryOptions,
  ) {
    this.client = options.client ?? new KubeClient(loadConnection());
  }

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
    this.client.close();
  }

  private onPool(group: string, o: KubeObject, deleted: boolean): void {
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
    const watcher = new ListWatch(this.client, {
      path: `/api/v1/namespaces/${encodeURIComponent(this.options.namespace)}/pods`,
      labelSelector: pool.selector,
      onEvent: (type, pod) => {
        const record = podRecordFromObject(pod);
        if (!record) return;
        if (type === "DELETED") this.ds.deletePod(record.name);
        else this.ds.upsertPod(record);
      },
      ...this.reporting("pods"),
    });
    this.podWatcher = watcher;
    await watcher.start();
    this.options.log(`discovery: watching pods with selector ${labelSelectorText(pool.selector)}`);
  }

  private async watchKind(
    label: string,
    kind: GroupVersionKind,
    callback: Callback,
  ): Promise<void> {
    const { group, version, plural } = kind;
    const namespace = encodeURIComponent(this.options.namespace);
    const watcher = new ListWatch(this.client, {
      path: `/apis/${group}/${version}/namespaces/${namespace}/${plural}`,
      onEvent: (type, obj) => callback(obj, type === "DELETED"),
      ...this.reporting(label),
    });
    this.watchers.push(watcher);
    await watcher.start();
  }

  /** Marks a watch listed, logs its first failure (e.g. a CRD that is not installed) and its recovery. */
  private reporting(label: string) {
    const recovered = () => {
      if (this.failing.delete(label)) this.options.log(`discovery: ${label} watch recovered`);
    };
    return {
      onListed: () => {
        this.connected.add(label);
        recovered();
      },
      onWatching: recovered,
      onError: (err: Error) => {
        if (this.failing.has(label)) return;
        this.failing.add(label);
        const hint = err.message.includes(": 404 ") ? " (is the CRD installed?)" : "";
        this.options.log(`discovery: ${label} watch failing, retrying${hint}: ${err.message}`);
      },
    };
  }
}
