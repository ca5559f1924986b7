// The decisions of the demo's local gateway, pure: which HTTPRoute rule a request matches (Gateway
// API match precedence) and which weighted backendRef it goes to. In a cluster the Gateway (Envoy
// Gateway, Istio, kgateway, ...) makes these decisions; the demo has no such gateway, so it brings
// this small one that honours the same fields.
import { INFERENCE_POOL_GROUPS } from "../../capabilities/api/constants";
import type {
  HTTPBackendRef,
  HTTPPathMatch,
  HTTPRoute,
  HTTPRouteMatch,
  HTTPRouteRule,
  ObjectMeta,
} from "../../capabilities/api/objects";

/** An HTTPRoute as the apiserver lists it (metadata.name is always set). */
export type Route = HTTPRoute & { metadata: ObjectMeta & { name: string } };
export type RouteRule = HTTPRouteRule;
export type RouteMatch = HTTPRouteMatch;
export type BackendRef = HTTPBackendRef;

export interface GatewayRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Header names in lower case. */
  headers: Record<string, string | undefined>;
  query: URLSearchParams;
}

export interface RuleChoice {
  route: Route;
  ruleIndex: number;
  rule: RouteRule;
}

/** The header the Body-Based Routing extension sets from the OpenAI body's `model`. */
export const MODEL_NAME_HEADER = "x-gateway-model-name";

const POOL_GROUPS: ReadonlySet<string> = new Set(INFERENCE_POOL_GROUPS);

/** Routes attached to the Gateway `gatewayName` (any listener). */
export function attachedTo(routes: Route[], gatewayName: string): Route[] {
  return routes.filter(r =>
    (r.spec?.parentRefs ?? []).some(
      p => p.name === gatewayName && (p.kind ?? "Gateway") === "Gateway",
    ),
  );
}

/** Element-wise prefix: "/v1" matches "/v1" and "/v1/x", not "/v1x"; trailing slashes are ignored. */
export function pathPrefixMatches(prefix: string, path: string): boolean {
  const p = prefix.replace(/\/+$/, "");
  if (p === "") return true;
  return path === p || path.startsWith(`${p}/`);
}

function valueMatches(type: string | undefined, expected: string, actual: string | undefined) {
  if (actual === undefined) return false;
  if (type === "RegularExpression") return new RegExp(`^(?:${expected})$`).test(actual);
  return actual === expected;
}

function pathMatches(m: HTTPPathMatch | undefined, path: string): boolean {
  const type = m?.type ?? "PathPrefix";
  const value = m?.value ?? "/";
  if (type === "Exact") return path === value;
  if (type === "RegularExpression") return new RegExp(`^(?:${value})$`).test(path);
  return pathPrefixMatches(value, path);
}

function matches(m: RouteMatch, req: GatewayRequest): boolean {
  if (!pathMatches(m.path, req.path)) return false;
  if (m.method && m.method.toUpperCase() !== req.method.toUpperCase()) return false;
  for (const h of m.headers ?? []) {
    if (!valueMatches(h.type, h.value, req.headers[h.name.toLowerCase()])) return false;
  }
  for (const q of m.queryParams ?? []) {
    if (!valueMatches(q.type, q.value, req.query.get(q.name) ?? undefined)) return false;
  }
  return true;
}

/** Specificity of a match, compared element by element (Gateway API HTTPRouteRule precedence). */
function specificity(m: RouteMatch): number[] {
  const type = m.path?.type ?? "PathPrefix";
  const value = m.path?.value ?? "/";
  return [
    type === "Exact" ? 1 : 0,
    type === "PathPrefix" ? value.replace(/\/+$/, "").length : 0,
    m.method ? 1 : 0,
    (m.headers ?? []).length,
    (m.queryParams ?? []).length,
  ];
}

function compareDesc(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return b[i] - a[i];
  return 0;
}

/**
 * The rule a request goes to: the most specific matching match across all routes; ties go to the
 * oldest route, then "namespace/name" in alphabetical order, then the first rule in the route.
 */
export function selectRule(routes: Route[], req: GatewayRequest): RuleChoice | undefined {
  let best: { choice: RuleChoice; key: number[]; created: number; id: string } | undefined;
  for (const route of routes) {
    const created = Date.parse(route.metadata.creationTimestamp ?? "") || 0;
    const id = `${route.metadata.namespace ?? ""}/${route.metadata.name}`;
    (route.spec?.rules ?? []).forEach((rule, ruleIndex) => {
      const ms = rule.matches?.length
        ? rule.matches
        : [{ path: { type: "PathPrefix", value: "/" } }];
      for (const m of ms as RouteMatch[]) {
        if (!matches(m, req)) continue;
        const key = specificity(m);
        const better =
          !best ||
          compareDesc(key, best.key) < 0 ||
          (compareDesc(key, best.key) === 0 &&
            (created < best.created ||
              (created === best.created &&
                (id < best.id || (id === best.id && ruleIndex < best.choice.ruleIndex)))));
        if (better) best = { choice: { route, ruleIndex, rule }, key, created, id };
      }
    });
  }
  return best?.choice;
}

/** A backendRef's weight: 1 when unset (Gateway API default). */
export function weightOf(ref: BackendRef): number {
  return ref.weight ?? 1;
}

export function isInferencePool(ref: BackendRef): boolean {
  return ref.kind === "InferencePool" && POOL_GROUPS.has(ref.group ?? "");
}

/**
 * Draws a backendRef in proportion to its weight; `random` returns [0, 1). Undefined when no ref
 * has a weight above 0 (the Gateway API answers 500 then).
 */
export function chooseBackend(refs: BackendRef[], random: () => number): BackendRef | undefined {
  const live = refs.filter(r => weightOf(r) > 0);
  const total = live.reduce((sum, r) => sum + weightOf(r), 0);
  if (total <= 0) return undefined;
  let draw = random() * total;
  for (const ref of live) {
    draw -= weightOf(ref);
    if (draw < 0) return ref;
  }
  return live[live.length - 1];
}

/** `model` of an OpenAI request body, or undefined (not JSON, no string model). */
export function modelOfBody(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { model?: unknown };
    return typeof parsed?.model === "string" && parsed.model ? parsed.model : undefined;
  } catch {
    return undefined;
  }
}

/** "mymodel-pool-v1=90 mymodel-pool-v2=10" for one rule. */
export function describeWeights(rule: RouteRule): string {
  const refs = rule.backendRefs ?? [];
  const total = refs.reduce((sum, r) => sum + weightOf(r), 0);
  return refs
    .map(r => {
      const share = total > 0 ? Math.round((100 * weightOf(r)) / total) : 0;
      return `${r.name}=${weightOf(r)}${total !== 100 && refs.length > 1 ? ` (${share}%)` : ""}`;
    })
    .join(" ");
}

// --- The endpoint picker of an InferencePool (what Envoy's Inference Extension support does) ----

/** Where a pool's endpoint picker is, as the pool says: a Service and its port. */
export interface PickerRef {
  service: string;
  /** The Service's port (not the target port). */
  port: number;
  /** FailClose (default): no picker, no request. FailOpen: Envoy may bypass the picker. */
  failureMode: "FailClose" | "FailOpen";
}

/** The parts of an InferencePool (v1 or v1alpha2) this gateway reads. */
export interface PoolObject {
  apiVersion?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: {
    /** inference.networking.k8s.io/v1 */
    endpointPickerRef?: {
      group?: string;
      kind?: string;
      name?: string;
      port?: { number?: number };
      failureMode?: string;
    };
    /** inference.networking.x-k8s.io/v1alpha2 */
    extensionRef?: {
      group?: string;
      kind?: string;
      name?: string;
      portNumber?: number;
      failureMode?: string;
    };
  };
}

/** v1alpha2's documented default for extensionRef.portNumber when the kind is Service. */
export const V1ALPHA2_DEFAULT_PICKER_PORT = 9002;

/**
 * The pool's endpoint picker: v1 `spec.endpointPickerRef` ({name, port.number}) or v1alpha2
 * `spec.extensionRef` ({name, portNumber, default 9002}); only a core Service can be followed
 * (as Envoy's implementations do). Or a readable error naming the pool and the fix.
 */
export function pickerRefOf(pool: PoolObject): PickerRef | { error: string } {
  const id = `InferencePool ${pool.metadata?.namespace ?? ""}/${pool.metadata?.name ?? "?"}`;
  const v1 = pool.spec?.endpointPickerRef;
  const alpha = pool.spec?.extensionRef;
  const ref = v1 ?? alpha;
  const field = v1 ? "spec.endpointPickerRef" : "spec.extensionRef";
  if (!ref?.name) {
    return {
      error: `${id} has no endpoint picker (set spec.endpointPickerRef in v1, spec.extensionRef in v1alpha2)`,
    };
  }
  if ((ref.group ?? "") !== "" || (ref.kind ?? "Service") !== "Service") {
    return {
      error: `${id}: ${field} names ${ref.kind ?? "Service"}.${ref.group ?? ""} ${ref.name}; only a core Service can be followed`,
    };
  }
  const port = v1 ? v1.port?.number : (alpha?.portNumber ?? V1ALPHA2_DEFAULT_PICKER_PORT);
  if (port === undefined) {
    return { error: `${id}: ${field}.port.number is required for a Service` };
  }
  const failureMode = ref.failureMode === "FailOpen" ? "FailOpen" : "FailClose";
  return { service: ref.name, port, failureMode };
}

/** The parts of a core Service this gateway reads. */
export interface ServiceObject {
  metadata?: { name?: string };
  spec?: {
    type?: string;
    selector?: Record<string, string>;
    ports?: Array<{ name?: string; port: number; targetPort?: number | string }>;
  };
}

/** The parts of a Pod this gateway reads. */
export interface PodObject {
  metadata?: { name?: string; labels?: Record<string, string>; deletionTimestamp?: unknown };
  spec?: { containers?: Array<{ ports?: Array<{ name?: string; containerPort: number }> }> };
  status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> };
}

function isReady(pod: PodObject): boolean {
  return (pod.status?.conditions ?? []).some(c => c.type === "Ready" && c.status === "True");
}

/**
 * The addresses ("ip:port") behind one port of a Service, found as the EndpointSlice controller
 * and kube-proxy find them (neither runs here, and EndpointSlices refuse the loopback addresses
 * every emulated Pod has): the Service port by number, the Pods its selector matches that are
 * Ready and not terminating, each at its podIP and the port's targetPort (a number, a container
 * port's name, or the Service port when unset). Or a readable error naming the fix.
 */
export function serviceAddresses(
  namespace: string,
  ref: PickerRef,
  services: ServiceObject[],
  pods: PodObject[],
): string[] | { error: string } {
  const id = `Service ${namespace}/${ref.service}`;
  const service = services.find(s => s.metadata?.name === ref.service);
  if (!service) return { error: `${id} (the endpoint picker) does not exist` };
  if (service.spec?.type === "ExternalName") {
    return { error: `${id} is an ExternalName Service, which the Inference Extension forbids` };
  }
  const servicePort = (service.spec?.ports ?? []).find(p => p.port === ref.port);
  if (!servicePort) {
    const ports = (service.spec?.ports ?? []).map(p => p.port).join(", ") || "none";
    return { error: `${id} has no port ${ref.port} (its ports: ${ports})` };
  }
  const selector = service.spec?.selector ?? {};
  if (Object.keys(selector).length === 0) {
    return { error: `${id} has no selector: this gateway finds a picker through its Pods` };
  }
  const addresses: string[] = [];
  for (const pod of pods) {
    const labels = pod.metadata?.labels ?? {};
    if (!Object.entries(selector).every(([k, v]) => labels[k] === v)) continue;
    if (pod.metadata?.deletionTimestamp || !isReady(pod) || !pod.status?.podIP) continue;
    const target = servicePort.targetPort ?? servicePort.port;
    const port =
      typeof target === "number"
        ? target
        : (pod.spec?.containers ?? []).flatMap(c => c.ports ?? []).find(p => p.name === target)
            ?.containerPort;
    if (port === undefined) continue;
    const ip = pod.status.podIP;
    addresses.push(ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);
  }
  if (addresses.length === 0) {
    const sel = Object.entries(selector)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    return {
      error: `${id} port ${ref.port} has no ready endpoint (no Ready Pod with a podIP matches ${sel})`,
    };
  }
  return addresses;
}

// --- The picker's decision ----------------------------------------------------------------------

/** The header and the envoy.lb metadata key that carry the endpoint the picker chose. */
export const DESTINATION_ENDPOINT = "x-gateway-destination-endpoint";
export const LB_METADATA_NAMESPACE = "envoy.lb";

/**
 * The endpoints to try, in order, from the picker's answer: the `envoy.lb` dynamic metadata
 * first (what Envoy's original-destination load balancing reads), else the header; a comma list
 * means fallbacks. Empty when the picker named none.
 */
export function destinationsOf(
  metadataValue: string | undefined,
  headerValue: string | undefined,
): string[] {
  const value = metadataValue?.trim() ? metadataValue : headerValue;
  return (value ?? "")
    .split(",")
    .map(s => s.trim())
    .filter(s => s !== "");
}

/**
 * Applies an ext_proc header mutation to a header record (names in lower case): removals, then
 * sets; pseudo-headers (":path") are not plain headers and are left alone, as are headers a
 * picker must not set on the wire (hop-by-hop, content-length: the gateway recomputes it).
 */
export function applyHeaderMutation(
  headers: Record<string, string | undefined>,
  mutation: { set: Array<[string, string]>; remove: string[] },
  protectedHeaders: ReadonlySet<string>,
): Record<string, string | undefined> {
  const out = { ...headers };
  for (const name of mutation.remove) {
    const key = name.toLowerCase();
    if (!key.startsWith(":") && !protectedHeaders.has(key)) delete out[key];
  }
  for (const [name, value] of mutation.set) {
    const key = name.toLowerCase();
    if (!key.startsWith(":") && !protectedHeaders.has(key)) out[key] = value;
  }
  return out;
}
