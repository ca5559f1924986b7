// In-memory state of one InferencePool: the pool spec, its pods (as endpoints), their latest
// metrics, and the model objects that map public model names to target models. Discovery fills
// it from watches; the mapping functions below turn API objects into records and are pure.

import { CRITICALITIES, groupOf, InferenceGroup } from "../capabilities/api/constants";
import {
  Criticality,
  EndpointMetrics,
  EndpointView,
  ModelResolution,
  PoolView,
  WeightedTarget,
} from "./core/types";

export interface PoolSpec {
  name: string;
  namespace: string;
  group: string;
  selector: Record<string, string>;
  targetPorts: number[];
}

export interface PodRecord {
  name: string;
  ip: string;
  ready: boolean;
  labels: Record<string, string>;
}

export interface InferenceModelRecord {
  name: string;
  modelName: string;
  poolName: string;
  /** Empty when the object has no targetModels: the model name itself is served. */
  targets: WeightedTarget[];
  criticality?: Criticality;
  createdAtMs: number;
}

export interface RewriteRule {
  /** Exact model names this rule matches; empty matches every model. */
  matches: string[];
  targets: WeightedTarget[];
}

export interface RewriteRecord {
  key: string;
  name: string;
  group: string;
  poolName: string;
  rules: RewriteRule[];
  createdAtMs: number;
}

export interface ObjectiveRecord {
  key: string;
  name: string;
  group: string;
  poolName: string;
  priority: number;
  createdAtMs: number;
}

// --- Mapping from API objects (plain JSON) to records ----------------------------------------

type Json = Record<string, unknown>;

function obj(value: unknown): Json | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Json)
    : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj(value) ?? {})) if (typeof v === "string") out[k] = v;
  return out;
}

function createdAt(meta: Json | undefined): number {
  const t = Date.parse(str(meta?.creationTimestamp) ?? "");
  return Number.isFinite(t) ? t : 0;
}

function isPort(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/**
 * InferencePool of either API: v1alpha2 (`spec.selector` map, `spec.targetPortNumber`) or GA v1
 * (`spec.selector.matchLabels`, `spec.targetPorts[].number`).
 */
export function poolSpecFromObject(o: unknown): PoolSpec | Error {
  const root = obj(o);
  const meta = obj(root?.metadata);
  const spec = obj(root?.spec);
  const name = str(meta?.name);
  if (!root || !name || !spec) return new Error("InferencePool without metadata.name or spec");
  const group = groupOf(str(root.apiVersion));
  const selectorObj = obj(spec.selector);
  let selector: Record<string, string>;
  let targetPorts: number[];
  if (Array.isArray(spec.targetPorts) || obj(selectorObj?.matchLabels)) {
    selector = stringMap(selectorObj?.matchLabels);
    targetPorts = (Array.isArray(spec.targetPorts) ? spec.targetPorts : [])
      .map(p => obj(p)?.number)
      .filter(isPort);
  } else {
    selector = stringMap(selectorObj);
    targetPorts = isPort(spec.targetPortNumber) ? [spec.targetPortNumber] : [];
  }
  if (Object.keys(selector).length === 0) {
    return new Error(`InferencePool ${name}: empty selector would match every pod`);
  }
  if (targetPorts.length === 0) return new Error(`InferencePool ${name}: no target port`);
  return { name, namespace: str(meta?.namespace) ?? "", group, selector, targetPorts };
}

export function labelsMatch(
  labels: Record<string, string>,
  selector: Record<string, string>,
): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** A pod is ready when its Ready condition is True, it has an IP and is not being deleted. */
export function podRecordFromObject(o: unknown): PodRecord | undefined {
  const root = obj(o);
  const meta = obj(root?.metadata);
  const name = str(meta?.name);
  if (!name) return undefined;
  const status = obj(root?.status);
  const ip = str(status?.podIP) ?? "";
  const conditions = Array.isArray(status?.conditions) ? status.conditions : [];
  const readyCondition = conditions.some(
    c => obj(c)?.type === "Ready" && obj(c)?.status === "True",
  );
  const deleting = meta?.deletionTimestamp !== undefined && meta?.deletionTimestamp !== null;
  return {
    name,
    ip,
    ready: readyCondition && ip !== "" && !deleting,
    labels: stringMap(meta?.labels),
  };
}

function weightedTargets(list: unknown, nameField: string): WeightedTarget[] {
  if (!Array.isArray(list)) return [];
  const entries = list
    .map(obj)
    .filter((e): e is Json => e !== undefined && typeof e[nameField] === "string");
  // CEL on both CRDs: weights on all entries or on none; none means equal shares.
  const anyWeight = entries.some(e => typeof e.weight === "number");
  return entries.map(e => ({
    name: e[nameField] as string,
    weight: anyWeight ? (typeof e.weight === "number" ? e.weight : 0) : 1,
  }));
}

export function inferenceModelFromObject(o: unknown): InferenceModelRecord | undefined {
  const root = obj(o);
  const meta = obj(root?.metadata);
  const spec = obj(root?.spec);
  const name = str(meta?.name);
  const modelName = str(spec?.modelName);
  const poolName = str(obj(spec?.poolRef)?.name);
  if (!name || !modelName || !poolName) return undefined;
  const criticality = str(spec?.criticality);
  return {
    name,
    modelName,
    poolName,
    targets: weightedTargets(spec?.targetModels, "name"),
    criticality:
      criticality && (CRITICALITIES as readonly string[]).includes(criticality)
        ? (criticality as Criticality)
        : undefined,
    createdAtMs: createdAt(meta),
  };
}

export function rewriteFromObject(o: unknown): RewriteRecord | undefined {
  const root = obj(o);
  const meta = obj(root?.metadata);
  const spec = obj(root?.spec);
  const name = str(meta?.name);
  const poolName = str(obj(spec?.poolRef)?.name);
  if (!name || !poolName) return undefined;
  const group = groupOf(str(root?.apiVersion));
  const rules: RewriteRule[] = (Array.isArray(spec?.rules) ? spec.rules : []).map(r => {
    const rule = obj(r);
    const matches = (Array.isArray(rule?.matches) ? rule.matches : [])
      .map(m => str(obj(obj(m)?.model)?.value))
      .filter((v): v is string => v !== undefined && v !== "");
    return { matches, targets: weightedTargets(rule?.targets, "modelRewrite") };
  });
  return { key: `${group}/${name}`, name, group, poolName, rules, createdAtMs: createdAt(meta) };
}

export function objectiveFromObject(o: unknown): ObjectiveRecord | undefined {
  const root = obj(o);
  const meta = obj(root?.metadata);
  const spec = obj(root?.spec);
  const name = str(meta?.name);
  const poolName = str(obj(spec?.poolRef)?.name);
  if (!name || !poolName) return undefined;
  const group = groupOf(str(root?.apiVersion));
  const priority = typeof spec?.priority === "number" ? spec.priority : 0;
  return { key: `${group}/${name}`, name, group, poolName, priority, createdAtMs: createdAt(meta) };
}

// --- The store -------------------------------------------------------------------------------

export interface EndpointState extends EndpointView {
  ready: boolean;
  lastScrapeError?: string;
}

/**
 * Requests wait although none waits for an adapter slot: every running slot is taken, so
 * `running` is the server's running capacity (vLLM --max-num-seqs). Requests that wait for an
 * adapter to load do not show it (with --max-loras 1, one adapter can block the other while a
 * running slot is free).
 */
export function queuesForSlots(m: EndpointMetrics): boolean {
  if (m.waiting === 0) return false;
  const lora = m.lora;
  return !lora || lora.waiting.every(a => lora.running.includes(a));
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
    if (metrics.running > (e.learntMaxRunning ?? 0) && queuesForSlots(metrics)) {
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
