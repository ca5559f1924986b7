// The header route of a setHeaderRoute step, pure: one HTTPRoute rule that sends requests carrying
// the testers' headers to the canary InferencePool alone, whatever the weights (what Argo Rollouts'
// Gateway API plugin does with its setHeaderRoute step).
//
// The rule is appended at the end of spec.rules, so the index of every other rule (and so
// spec.pools.httpRouteRule) stays what it was, and no other rule changes. It still wins over the
// managed rule: it copies the managed rule's matches and adds the headers to each, and Gateway API
// precedence ranks, after path and method, the match with more header matches first. Header
// matches within one HTTPRouteMatch are ANDed.
import type { HTTPBackendRef, HTTPHeaderMatch, HTTPRoute, HTTPRouteMatch } from "../../api/objects";
import { jsonEqual } from "../fingerprint";
import type { HeaderMatch } from "../types";
import { isPoolRef, type PoolSplit, selectRules } from "./httproute";

/** Gateway API limits (HTTPRoute v1): rules per route, matches per route, headers per match. */
export const MAX_RULES = 16;
export const MAX_ROUTE_MATCHES = 128;
export const MAX_HEADERS_PER_MATCH = 16;

/**
 * The route cannot take the header route (a Gateway API limit, no single rule to copy, the rule
 * name dropped by the CRD): the spec or the route must change, retrying alone never helps.
 */
export class HeaderRouteError extends Error {
  constructor(
    message: string,
    readonly reason: "HeaderRouteInvalid" | "HeaderRouteUnsupported" = "HeaderRouteInvalid",
  ) {
    super(message);
  }
}

/** Gateway API release whose standard-channel HTTPRoute keeps spec.rules[].name (GEP-995 GA). */
export const MIN_GATEWAY_API_FOR_RULE_NAMES = "v1.4.0";

/** RE2 / ECMAScript metacharacters, escaped so a prefix is taken literally. */
function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A step's header condition as a Gateway API header match (prefix becomes a regular expression). */
export function toHeaderMatch(m: HeaderMatch): HTTPHeaderMatch {
  const v = m.headerValue;
  if (v.exact !== undefined) return { name: m.headerName, type: "Exact", value: v.exact };
  if (v.prefix !== undefined)
    return { name: m.headerName, type: "RegularExpression", value: `${escapeRegex(v.prefix)}.*` };
  return { name: m.headerName, type: "RegularExpression", value: v.regex ?? "" };
}

function describeRoute(route: HTTPRoute): string {
  return `HTTPRoute ${route.metadata?.namespace ?? ""}/${route.metadata?.name ?? "?"}`;
}

/**
 * The header rule for `match` (not empty): a copy of the managed rule (filters, timeouts...) with
 * its matches, each with the headers added (they replace a copied header of the same name), and
 * one backendRef to the canary pool (a copy of the canary ref, else of the stable ref renamed).
 */
export function headerRule(
  route: HTTPRoute,
  split: PoolSplit,
  ruleName: string,
  match: HeaderMatch[],
) {
  const selection = selectRules(route, split);
  if ("problem" in selection) throw new HeaderRouteError(selection.problem?.message ?? "");
  if (selection.rules.length > 1)
    throw new HeaderRouteError(
      `setHeaderRoute needs one rule to copy, but ${selection.rules.length} rules of ${describeRoute(route)} reference the pools; set spec.pools.httpRouteRule`,
    );
  const managed = structuredClone(route.spec!.rules![selection.rules[0]]);
  const ns = route.metadata?.namespace;
  const refs = managed.backendRefs ?? [];
  const ref: HTTPBackendRef | undefined =
    refs.find(r => isPoolRef(r, split.canary, split.group, ns)) ??
    (() => {
      const stable = refs.find(r => isPoolRef(r, split.stable, split.group, ns));
      return stable && { ...stable, name: split.canary };
    })();
  if (!ref) throw new HeaderRouteError(`no backendRef to copy for canary ${split.canary}`);
  // The only backend of the rule; 1 is what the apiserver would default it to, so the rule read
  // back equals the rule written and a re-assertion writes nothing.
  ref.weight = 1;
  const headers = match.map(toHeaderMatch);
  const names = new Set(headers.map(h => h.name.toLowerCase()));
  const base: HTTPRouteMatch[] = managed.matches?.length
    ? managed.matches
    : [{ path: { type: "PathPrefix", value: "/" } }];
  const matches = base.map(m => ({
    ...m,
    headers: [...headers, ...(m.headers ?? []).filter(h => !names.has(h.name.toLowerCase()))],
  }));
  if (matches.some(m => m.headers.length > MAX_HEADERS_PER_MATCH))
    throw new HeaderRouteError(
      `the header route would have more than ${MAX_HEADERS_PER_MATCH} header matches in one match (Gateway API limit)`,
    );
  return { ...managed, name: ruleName, matches, backendRefs: [ref] };
}

/**
 * The route with the header rule `ruleName` for `match` at the end of spec.rules (an older version
 * of it is replaced where it is), or null when it is already so. Throws when the route cannot take it.
 */
export function setHeaderRoute(
  route: HTTPRoute,
  split: PoolSplit,
  ruleName: string,
  match: HeaderMatch[],
): HTTPRoute | null {
  if (match.length === 0) return removeHeaderRoute(route, ruleName);
  const wanted = headerRule(route, split, ruleName, match);
  const rules = route.spec?.rules ?? [];
  const existing = rules.find(r => r.name === ruleName);
  if (existing && jsonEqual(existing, wanted)) return null;
  const others = rules.filter(r => r.name !== ruleName);
  if (others.length + 1 > MAX_RULES)
    throw new HeaderRouteError(
      `${describeRoute(route)} has ${others.length} rules; the header route would exceed the Gateway API limit of ${MAX_RULES}`,
    );
  const total = others.reduce((n, r) => n + (r.matches?.length ?? 1), 0) + wanted.matches.length;
  if (total > MAX_ROUTE_MATCHES)
    throw new HeaderRouteError(
      `the header route would bring ${describeRoute(route)} to ${total} matches; the Gateway API limit is ${MAX_ROUTE_MATCHES}`,
    );
  const next = structuredClone(route);
  const at = rules.indexOf(existing!);
  // A changed header route is replaced where it is, so that no other rule moves.
  if (at >= 0) next.spec!.rules![at] = wanted;
  else next.spec!.rules = [...(next.spec!.rules ?? []), wanted];
  return next;
}

/** The route without the header rule `ruleName`, or null when it has none. */
export function removeHeaderRoute(route: HTTPRoute, ruleName: string): HTTPRoute | null {
  const rules = route.spec?.rules ?? [];
  if (!rules.some(r => r.name === ruleName)) return null;
  const next = structuredClone(route);
  next.spec!.rules = rules.filter(r => r.name !== ruleName).map(r => structuredClone(r));
  return next;
}

/**
 * Why `route` cannot take the header route of one of `matches` (the setHeaderRoute steps of the
 * spec), checked when the target is inspected so that no weight moves before the step fails.
 */
export function headerRouteProblem(
  route: HTTPRoute,
  split: PoolSplit,
  ruleName: string,
  matches: HeaderMatch[][],
): { reason: string; message: string } | undefined {
  for (const match of matches) {
    if (match.length === 0) continue;
    try {
      setHeaderRoute(route, split, ruleName, match);
    } catch (err) {
      if (!(err instanceof HeaderRouteError)) throw err;
      return {
        reason: err.reason,
        message: `setHeaderRoute cannot be written: ${err.message} (change the HTTPRoute or the setHeaderRoute step)`,
      };
    }
  }
  return undefined;
}

/**
 * After a write of the header rule `ruleName`: undefined when `written` (the apiserver's answer)
 * still has it by name; else the index of the unnamed copy the write appended (to take back; -1
 * when it cannot be told) and the refusal. An HTTPRoute CRD older than Gateway API v1.4 prunes
 * the name, and a rule found by no name would be appended again on every re-assertion.
 */
export function droppedHeaderRule(
  sent: HTTPRoute,
  written: HTTPRoute,
  ruleName: string,
): { index: number; error: HeaderRouteError } | undefined {
  const sentRules = sent.spec?.rules ?? [];
  const rules = written.spec?.rules ?? [];
  if (!sentRules.some(r => r.name === ruleName) || rules.some(r => r.name === ruleName))
    return undefined;
  const last = rules.length - 1;
  const index = rules.length === sentRules.length && last >= 0 && !rules[last].name ? last : -1;
  const error = new HeaderRouteError(
    `${describeRoute(written)} dropped the name of the header rule ${ruleName}: its HTTPRoute CRD has no spec.rules[].name; install Gateway API ${MIN_GATEWAY_API_FOR_RULE_NAMES} or later (standard channel), or remove the setHeaderRoute step`,
    "HeaderRouteUnsupported",
  );
  return { index, error };
}
