// Every object a ModelRollout could change (HTTPRoutes, InferencePools of both API groups,
// InferenceModels, InferenceObjectives, InferenceModelRewrites) in some namespaces, keyed by kind
// and name with its resourceVersion and spec: two snapshots compare equal only if nothing was
// created, deleted or written in between.
import { env } from "./env";

export const TARGET_KINDS = [
  "httproutes.gateway.networking.k8s.io",
  "inferencepools.inference.networking.x-k8s.io",
  "inferencepools.inference.networking.k8s.io",
  "inferencemodels.inference.networking.x-k8s.io",
  "inferenceobjectives.inference.networking.x-k8s.io",
  "inferenceobjectives.llm-d.ai",
  "inferencemodelrewrites.inference.networking.x-k8s.io",
  "inferencemodelrewrites.llm-d.ai",
];

export interface SnapshotEntry {
  resourceVersion: string;
  spec: unknown;
  labels?: Record<string, string>;
}

/** "namespace/kind.group/name" → entry. */
export type TargetSnapshot = Map<string, SnapshotEntry>;

interface Listed {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    resourceVersion: string;
    labels?: Record<string, string>;
  };
  spec?: unknown;
}

export function snapshotTargets(namespaces: string[]): TargetSnapshot {
  const { kubectl } = env();
  const existing = new Set(kubectl(["api-resources", "-o", "name"]).split("\n"));
  const kinds = TARGET_KINDS.filter(k => existing.has(k));
  const snap: TargetSnapshot = new Map();
  for (const ns of namespaces) {
    const list = JSON.parse(kubectl(["-n", ns, "get", kinds.join(","), "-o", "json"])) as {
      items: Listed[];
    };
    for (const o of list.items) {
      const group = o.apiVersion.split("/")[0];
      snap.set(`${ns}/${o.kind}.${group}/${o.metadata.name}`, {
        resourceVersion: o.metadata.resourceVersion,
        spec: o.spec,
        ...(o.metadata.labels ? { labels: o.metadata.labels } : {}),
      });
    }
  }
  return snap;
}

/** What changed between two snapshots, one readable line per object (empty: nothing). */
export function diffSnapshots(before: TargetSnapshot, after: TargetSnapshot): string[] {
  const out: string[] = [];
  for (const [key, entry] of before) {
    const now = after.get(key);
    if (!now) out.push(`deleted: ${key}`);
    else if (now.resourceVersion !== entry.resourceVersion)
      out.push(
        `written: ${key}: spec ${JSON.stringify(entry.spec)} -> ${JSON.stringify(now.spec)}` +
          (JSON.stringify(entry.labels) !== JSON.stringify(now.labels)
            ? `; labels ${JSON.stringify(entry.labels)} -> ${JSON.stringify(now.labels)}`
            : ""),
      );
  }
  for (const [key, entry] of after) {
    if (!before.has(key))
      out.push(
        `created: ${key}: labels ${JSON.stringify(entry.labels)} spec ${JSON.stringify(entry.spec)}`,
      );
  }
  return out;
}
