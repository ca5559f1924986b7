// The model-server endpoints of an InferencePool, pure: the pool's selector and target port(s)
// applied to the namespace's Pods (adapter readiness asks each endpoint which adapters it serves),
// and what vLLM's GET /v1/models says about an adapter. Both pool APIs: v1alpha2 (`spec.selector`
// map, `spec.targetPortNumber`) and v1 (`spec.selector.matchLabels`, `spec.targetPorts[].number`).
import { isRecord } from "../../api/objects";

/** A pod as far as readiness needs it (the wire shape of core/v1 Pod). */
export interface PodLike {
  metadata?: { name?: string; labels?: Record<string, string>; deletionTimestamp?: unknown };
  status?: { podIP?: string; conditions?: { type?: string; status?: string }[] };
}

/** One model server: a Ready pod's IP at one of the pool's target ports. */
export interface PoolEndpoint {
  /** The pod's name, or name:port when the pool has several target ports. */
  key: string;
  pod: string;
  /** http://podIP:port (IPv6 in brackets). */
  url: string;
}

export interface PoolSelection {
  selector: Record<string, string>;
  ports: number[];
}

const isPort = (n: unknown): n is number =>
  Number.isInteger(n) && (n as number) > 0 && (n as number) < 65536;

function stringMap(value: unknown): Record<string, string> {
  if (!isRecord(value)) return {};
  return Object.fromEntries(
    Object.entries(value).filter((e): e is [string, string] => typeof e[1] === "string"),
  );
}

/** The pool's label selector and target ports, or why they cannot be used. */
export function poolSelection(pool: unknown): PoolSelection | { problem: string } {
  const spec = isRecord(pool) && isRecord(pool.spec) ? pool.spec : {};
  const selector = isRecord(spec.selector) ? spec.selector : {};
  const v1 = Array.isArray(spec.targetPorts) || isRecord(selector.matchLabels);
  const labels = stringMap(v1 ? selector.matchLabels : selector);
  const ports = v1
    ? (spec.targetPorts as unknown[]).flatMap(p =>
        isRecord(p) && isPort(p.number) ? [p.number] : [],
      )
    : isPort(spec.targetPortNumber)
      ? [spec.targetPortNumber]
      : [];
  // An empty selector would match every pod of the namespace: never ask pods the pool does not name.
  if (Object.keys(labels).length === 0) return { problem: "its selector is empty" };
  if (ports.length === 0) return { problem: "it has no target port" };
  return { selector: labels, ports };
}

/** A pod is ready when its Ready condition is True, it has an IP and is not being deleted. */
export function isReadyPod(pod: PodLike): boolean {
  return (
    !!pod.status?.podIP &&
    !pod.metadata?.deletionTimestamp &&
    (pod.status.conditions ?? []).some(c => c.type === "Ready" && c.status === "True")
  );
}

/** The endpoints of the Ready pods `selection` matches, sorted by key. */
export function poolEndpoints(selection: PoolSelection, pods: readonly PodLike[]): PoolEndpoint[] {
  const matches = (pod: PodLike) =>
    Object.entries(selection.selector).every(([k, v]) => pod.metadata?.labels?.[k] === v);
  const several = selection.ports.length > 1;
  return pods
    .filter(p => p.metadata?.name && matches(p) && isReadyPod(p))
    .flatMap(p => {
      const pod = p.metadata!.name!;
      const ip = p.status!.podIP!;
      const host = ip.includes(":") ? `[${ip}]` : ip;
      return selection.ports.map(port => ({
        key: several ? `${pod}:${port}` : pod,
        pod,
        url: `http://${host}:${port}`,
      }));
    })
    .sort((a, b) => a.key.localeCompare(b.key));
}

/**
 * Whether a GET /v1/models answer (OpenAI list: `{data: [{id, parent?}]}`) lists `adapter`;
 * undefined when the body is no such list.
 */
export function modelsListAdapter(body: unknown, adapter: string): boolean | undefined {
  if (!isRecord(body) || !Array.isArray(body.data)) return undefined;
  return body.data.some(m => isRecord(m) && m.id === adapter);
}
