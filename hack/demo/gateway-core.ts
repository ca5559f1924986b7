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
