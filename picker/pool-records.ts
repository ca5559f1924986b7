// The picker's records of one InferencePool's API objects (the pool spec, its pods, and the model
// objects that map public model names to target models), and the pure mapping from API objects
// (plain JSON, as discovery.ts receives them) to records.

import { CRITICALITIES, groupOf } from "../capabilities/api/constants";
import { Criticality, WeightedTarget } from "./core/types";

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

/** The fields every pool-scoped object of a named API group has (rewrites, objectives). */
function poolScoped(o: unknown) {
  const root = obj(o);
  const meta = obj(root?.metadata);
  const name = str(meta?.name);
  const spec = obj(root?.spec);
  const poolName = str(obj(spec?.poolRef)?.name);
  if (!name || !poolName) return undefined;
  const group = groupOf(str(root?.apiVersion));
  return {
    spec,
    common: { key: `${group}/${name}`, name, group, poolName, createdAtMs: createdAt(meta) },
  };
}

export function rewriteFromObject(o: unknown): RewriteRecord | undefined {
  const scoped = poolScoped(o);
  if (!scoped) return undefined;
  const { spec, common } = scoped;
  const rules: RewriteRule[] = (Array.isArray(spec?.rules) ? spec.rules : []).map(r => {
    const rule = obj(r);
    const matches = (Array.isArray(rule?.matches) ? rule.matches : [])
      .map(m => str(obj(obj(m)?.model)?.value))
      .filter((v): v is string => v !== undefined && v !== "");
    return { matches, targets: weightedTargets(rule?.targets, "modelRewrite") };
  });
  return { ...common, rules };
}

export function objectiveFromObject(o: unknown): ObjectiveRecord | undefined {
  const scoped = poolScoped(o);
  if (!scoped) return undefined;
  const priority = typeof scoped.spec?.priority === "number" ? scoped.spec.priority : 0;
  return { ...scoped.common, priority };
}
