// In-memory state of one InferencePool: the pool spec, its pods (as endpoints), their latest
// metrics, and the model objects that map public model names to target models. Discovery fills
// it from watches, with records from pool-records.ts.

import { InferenceGroup } from "../capabilities/api/constants";
import { isMergedLoraRead } from "./core/promtext";
import { EndpointMetrics, EndpointView, ModelResolution, PoolView } from "./core/types";
import {
  InferenceModelRecord,
  ObjectiveRecord,
  PodRecord,
  PoolSpec,
  RewriteRecord,
  labelsMatch,
} from "./pool-records";

export interface EndpointState extends EndpointView {
  ready: boolean;
  lastScrapeError?: string;
}

/**
 * Requests wait although none waits for an adapter slot: every running slot is taken, so
 * `running` is the server's running capacity (vLLM --max-num-seqs). Requests that wait for an
 * adapter to load do not show it (with --max-loras 1, one adapter can block the other while a
 * running slot is free). Nor does a read that cannot say why they wait: more adapters running
 * than the server has slots (states tied within one second and merged, see `loraInfoFrom`), or
 * more adapters of ours in flight there (`adaptersInFlight`) than slots. Learning from those
 * once took a capacity of 1 for pods of 8: flow control then held nearly every request and sent
 * it to whichever pod freed a slot first, whatever adapter that pod held.
 */
export function queuesForSlots(m: EndpointMetrics, adaptersInFlight = 0): boolean {
  if (m.waiting === 0) return false;
  const lora = m.lora;
  if (!lora) return true;
  if (isMergedLoraRead(lora) || (lora.maxLora > 0 && adaptersInFlight > lora.maxLora)) return false;
  return lora.waiting.every(a => lora.running.includes(a));
}

function adaptersInFlight(e: EndpointView): number {
  let n = 0;
  for (const count of e.sentAdapters?.values() ?? []) if (count > 0) n++;
  return n;
}

/** Adapters remembered per endpoint; more than any server's adapter slots. */
const maxSentAdapters = 16;

const byAge = <T extends { createdAtMs: number; name: string }>(a: T, b: T): number =>
  a.createdAtMs - b.createdAtMs || a.name.localeCompare(b.name);

export class Datastore implements PoolView {
  private pool: PoolSpec | undefined;
  private readonly pods = new Map<string, PodRecord>();
  private readonly models = new Map<string, InferenceModelRecord>();
  private readonly rewrites = new Map<string, RewriteRecord>();
  private readonly objectives = new Map<string, ObjectiveRecord>();
  private endpointsByAddress = new Map<string, EndpointState>();
  private ready: EndpointState[] = [];
  private resolutions: Map<string, ModelResolution> | undefined;
  private genericResolution: ModelResolution | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly capacityListeners = new Set<() => void>();

  constructor(readonly expectedPoolName: string) {}

  // PoolView
  poolName(): string {
    return this.pool?.name ?? this.expectedPoolName;
  }

  readyEndpoints(): readonly EndpointView[] {
    return this.ready;
  }

  resolveModel(model: string): ModelResolution | undefined {
    if (!this.resolutions) this.buildResolutions();
    return this.resolutions!.get(model) ?? this.genericResolution;
  }

  objectivePriority(name: string): number | undefined {
    let found: ObjectiveRecord | undefined;
    for (const o of this.objectives.values()) {
      if (o.name !== name || o.poolName !== this.poolName()) continue;
      // llm-d.ai is the successor group: it wins when both define the same name.
      if (!found || (o.group === InferenceGroup.llmd && found.group !== InferenceGroup.llmd))
        found = o;
    }
    return found?.priority;
  }

  noteDispatched(address: string, adapter?: string): void {
    const e = this.endpointsByAddress.get(address);
    if (!e) return;
    e.dispatchedSinceScrape++;
    e.inflight++;
    if (adapter) {
      const sent = (e.sentAdapters ??= new Map());
      const n = sent.get(adapter) ?? 0;
      sent.delete(adapter); // re-inserted last: the most recently sent
      sent.set(adapter, n + 1);
      if (sent.size > maxSentAdapters) {
        for (const [name, count] of sent) {
          if (count === 0) {
            sent.delete(name);
            break;
          }
        }
      }
    }
  }

  noteCompleted(address: string, adapter?: string): void {
    const e = this.endpointsByAddress.get(address);
    if (!e) return;
    if (e.inflight > 0) e.inflight--;
    e.completedSinceScrape = (e.completedSinceScrape ?? 0) + 1;
    const n = adapter ? e.sentAdapters?.get(adapter) : undefined;
    if (n !== undefined && n > 0) e.sentAdapters!.set(adapter!, n - 1);
    this.notifyCapacity();
  }

  // Pool and pods
  getPool(): PoolSpec | undefined {
    return this.pool;
  }

  setPool(pool: PoolSpec | undefined): void {
    this.pool = pool;
    this.resolutions = undefined;
    this.rebuildEndpoints();
  }

  upsertPod(pod: PodRecord): void {
    this.pods.set(pod.name, pod);
    this.rebuildEndpoints();
  }

  deletePod(name: string): void {
    if (this.pods.delete(name)) this.rebuildEndpoints();
  }

  clearPods(): void {
    this.pods.clear();
    this.rebuildEndpoints();
  }

  /** Every endpoint of a pod that matches the selector and has an IP, ready or not. */
  endpoints(): EndpointState[] {
    return [...this.endpointsByAddress.values()];
  }

  /** Addresses to scrape: every endpoint with an IP (readiness can flip between scrapes). */
  scrapeAddresses(): string[] {
    return [...this.endpointsByAddress.keys()];
  }

  setMetrics(address: string, metrics: EndpointMetrics): void {
    const e = this.endpointsByAddress.get(address);
    if (!e) return;
    e.metrics = metrics;
    e.dispatchedSinceScrape = 0;
    e.completedSinceScrape = 0;
    e.lastScrapeError = undefined;
    if (
      metrics.running > (e.learntMaxRunning ?? 0) &&
      queuesForSlots(metrics, adaptersInFlight(e))
    ) {
      e.learntMaxRunning = metrics.running;
    }
    this.notifyCapacity();
  }

  noteScrapeError(address: string, message: string): void {
    const e = this.endpointsByAddress.get(address);
    if (e) e.lastScrapeError = message;
  }

  // Models
  upsertModel(m: InferenceModelRecord): void {
    this.models.set(m.name, m);
    this.modelsChanged();
  }

  deleteModel(name: string): void {
    if (this.models.delete(name)) this.modelsChanged();
  }

  upsertRewrite(r: RewriteRecord): void {
    this.rewrites.set(r.key, r);
    this.modelsChanged();
  }

  deleteRewrite(key: string): void {
    if (this.rewrites.delete(key)) this.modelsChanged();
  }

  upsertObjective(o: ObjectiveRecord): void {
    this.objectives.set(o.key, o);
    this.notify();
  }

  deleteObjective(key: string): void {
    if (this.objectives.delete(key)) this.notify();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Called when an endpoint may have room for another request: one of ours finished, a scrape
   * arrived, or the endpoints changed (flow control dispatches held requests then).
   */
  onCapacity(listener: () => void): () => void {
    this.capacityListeners.add(listener);
    return () => this.capacityListeners.delete(listener);
  }

  private notifyCapacity(): void {
    for (const l of this.capacityListeners) l();
  }

  private modelsChanged(): void {
    this.resolutions = undefined;
    this.notify();
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  private rebuildEndpoints(): void {
    const next = new Map<string, EndpointState>();
    const pool = this.pool;
    if (pool) {
      const multiPort = pool.targetPorts.length > 1;
      for (const pod of this.pods.values()) {
        if (!pod.ip || !labelsMatch(pod.labels, pool.selector)) continue;
        pool.targetPorts.forEach((port, rank) => {
          const address = pod.ip.includes(":") ? `[${pod.ip}]:${port}` : `${pod.ip}:${port}`;
          const name = multiPort ? `${pod.name}-rank-${rank}` : pod.name;
          const previous = this.endpointsByAddress.get(address);
          // Keep the state object (and its metrics and counters) when only readiness changed.
          const state: EndpointState =
            previous && previous.name === name
              ? previous
              : {
                  name,
                  address,
                  podName: pod.name,
                  dispatchedSinceScrape: 0,
                  inflight: 0,
                  ready: false,
                };
          state.ready = pod.ready;
          next.set(address, state);
        });
      }
    }
    this.endpointsByAddress = next;
    this.ready = [...next.values()]
      .filter(e => e.ready)
      .sort((a, b) => a.name.localeCompare(b.name));
    this.notify();
    this.notifyCapacity();
  }

  private buildResolutions(): void {
    const poolName = this.poolName();
    const resolutions = new Map<string, ModelResolution>();
    const rewrites = [...this.rewrites.values()].filter(r => r.poolName === poolName).sort(byAge);
    // Precedence: an exact rewrite rule (oldest object first) > an InferenceModel (oldest
    // first) > a rewrite rule without matches, which catches every other model name.
    for (const r of rewrites) {
      for (const rule of r.rules) {
        for (const model of rule.matches) {
          if (!resolutions.has(model)) {
            resolutions.set(model, {
              source: "InferenceModelRewrite",
              objectName: r.key,
              targets: rule.targets,
              adapters: true,
            });
          }
        }
      }
    }
    const models = [...this.models.values()].filter(m => m.poolName === poolName).sort(byAge);
    for (const m of models) {
      if (resolutions.has(m.modelName)) continue;
      const split = m.targets.length > 0;
      resolutions.set(m.modelName, {
        source: "InferenceModel",
        objectName: m.name,
        targets: split ? m.targets : [{ name: m.modelName, weight: 1 }],
        criticality: m.criticality,
        adapters: split,
      });
    }
    this.genericResolution = undefined;
    for (const r of rewrites) {
      const rule = r.rules.find(x => x.matches.length === 0);
      if (rule) {
        this.genericResolution = {
          source: "InferenceModelRewrite",
          objectName: r.key,
          targets: rule.targets,
          adapters: true,
        };
        break;
      }
    }
    this.resolutions = resolutions;
  }
}
