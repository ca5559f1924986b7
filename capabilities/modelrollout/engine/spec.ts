// What a spec says and whether the engine can act on it (pure; no status).
import { validateAnalysis } from "../../analysis";
import {
  MAX_TIMEOUT,
  MAX_TIMEOUT_MS,
  MAX_WAIT,
  MAX_WAIT_MS,
  durationProblem,
} from "../../duration";
import { generate as generateMergePatch } from "json-merge-patch";
import { ACTION_ANNOTATION, MANUAL_ACTIONS, ManualAction, Observations } from "./context";
import type { HeaderMatch, ModelRolloutSpec, ModelRolloutStatus, RolloutTarget } from "../types";

/** Splits the action annotation's value into a known action or an invalid one. */
export function readActionAnnotation(
  annotations: Record<string, string> | undefined,
): Pick<Observations, "action" | "invalidAction"> {
  const raw = annotations?.[ACTION_ANNOTATION];
  if (raw === undefined) return {};
  const value = raw.trim();
  return (MANUAL_ACTIONS as readonly string[]).includes(value)
    ? { action: value as ManualAction }
    : { invalidAction: raw };
}

/** The target identity a spec describes, or undefined when it names none. */
export function targetOf(spec: ModelRolloutSpec): RolloutTarget | undefined {
  if (spec.pools) {
    const { httpRoute, httpRouteRule, stable, canary } = spec.pools;
    return {
      kind: "HTTPRoute",
      name: httpRoute,
      ...(httpRouteRule !== undefined ? { rule: httpRouteRule } : {}),
      stable,
      canary,
    };
  }
  const adapters = spec.adapters;
  if (adapters?.inferenceModel !== undefined) {
    return {
      kind: "InferenceModel",
      name: adapters.inferenceModel,
      stable: adapters.stable,
      canary: adapters.canary,
    };
  }
  if (adapters?.inferenceModelRewrite) {
    return {
      kind: "InferenceModelRewrite",
      name: adapters.inferenceModelRewrite.name,
      group: adapters.inferenceModelRewrite.group ?? "llm-d.ai",
      stable: adapters.stable,
      canary: adapters.canary,
    };
  }
  return undefined;
}

/**
 * What the apiserver's schema and CEL rules check, checked again (defense in depth: the engine must
 * never act on a spec it cannot interpret).
 */
export function validateSpec(
  spec: ModelRolloutSpec,
): { reason: string; message: string } | undefined {
  const bad = (message: string) => ({ reason: "InvalidSpec", message });
  if (!!spec.pools === !!spec.adapters)
    return bad("exactly one of spec.pools or spec.adapters must be set");
  if (
    spec.adapters &&
    (spec.adapters.inferenceModel === undefined) === !spec.adapters.inferenceModelRewrite
  ) {
    return bad(
      "exactly one of adapters.inferenceModel or adapters.inferenceModelRewrite must be set",
    );
  }
  const target = targetOf(spec);
  if (!target) return bad("spec names no traffic target");
  if (target.stable === target.canary) return bad("stable and canary must differ");
  // Object names go into request paths: "../other-namespace/..." must never reach one.
  const names: Array<[string, unknown]> = spec.pools
    ? [
        ["pools.httpRoute", spec.pools.httpRoute],
        ["pools.stable", spec.pools.stable],
        ["pools.canary", spec.pools.canary],
      ]
    : [
        ["adapters.inferenceModel", spec.adapters?.inferenceModel],
        ["adapters.inferenceModelRewrite.name", spec.adapters?.inferenceModelRewrite?.name],
      ];
  for (const [field, name] of names) {
    if (name !== undefined && !isObjectName(name))
      return bad(
        `${field} ${JSON.stringify(name)} is not a Kubernetes object name (DNS subdomain)`,
      );
  }
  if (!Array.isArray(spec.steps) || spec.steps.length === 0)
    return bad("spec.steps needs at least one step");
  for (const [i, step] of spec.steps.entries()) {
    const kinds = [
      step.setWeight !== undefined,
      step.pause !== undefined,
      step.analysis !== undefined,
      step.setHeaderRoute !== undefined,
    ];
    if (kinds.filter(Boolean).length !== 1) {
      return bad(
        `steps[${i}] must have exactly one of setWeight, pause, analysis or setHeaderRoute`,
      );
    }
    const headerProblem = step.setHeaderRoute && headerRouteProblem(spec, i, step.setHeaderRoute);
    if (headerProblem) return bad(headerProblem);
    if (step.setWeight !== undefined) {
      const w = step.setWeight;
      if (!Number.isInteger(w) || w < 0 || w > 100) {
        return bad(`steps[${i}].setWeight must be an integer between 0 and 100`);
      }
    }
    const duration = step.pause?.duration;
    if (duration !== undefined) {
      const problem = durationProblem(
        `steps[${i}].pause.duration`,
        duration,
        MAX_WAIT_MS,
        MAX_WAIT,
      );
      if (problem) return bad(problem);
    }
  }
  const podTimeout = spec.adapters?.readiness?.timeout;
  if (podTimeout !== undefined) {
    const field = "adapters.readiness.timeout";
    const problem = durationProblem(field, podTimeout, MAX_TIMEOUT_MS, MAX_TIMEOUT, true);
    if (problem) return bad(problem);
  }
  const gateProblems = gateErrors(spec);
  if (gateProblems) return { reason: "InvalidAnalysis", message: gateProblems };
  return undefined;
}

/** Gateway API header names (RFC 7230 tokens). */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** What is wrong with a setHeaderRoute step (the CRD's rules, checked again). */
function headerRouteProblem(
  spec: ModelRolloutSpec,
  i: number,
  { match }: { match: HeaderMatch[] },
): string | undefined {
  const at = `steps[${i}].setHeaderRoute`;
  if (!spec.pools)
    return `${at} needs spec.pools (an HTTPRoute to add the header rule to); a LoRA adapter rollout (spec.adapters) has no route of its own`;
  if (!Array.isArray(match)) return `${at}.match must be a list`;
  const seen = new Set<string>();
  for (const [k, m] of match.entries()) {
    const name = m?.headerName;
    if (typeof name !== "string" || name.length > 256 || !HEADER_NAME.test(name))
      return `${at}.match[${k}].headerName must be an HTTP header name`;
    if (seen.has(name.toLowerCase())) return `${at}.match names header ${name} twice`;
    seen.add(name.toLowerCase());
    const values = [m.headerValue?.exact, m.headerValue?.prefix, m.headerValue?.regex].filter(
      v => v !== undefined,
    );
    if (values.length !== 1 || typeof values[0] !== "string" || values[0] === "")
      return `${at}.match[${k}].headerValue needs exactly one non-empty exact, prefix or regex`;
  }
  return undefined;
}

/** Everything wrong with the gates of a spec (conditions, templates, durations, providers). */
function gateErrors(spec: ModelRolloutSpec): string | undefined {
  const provider = spec.prometheus;
  const scope = spec.adapters ? "adapters" : "pools";
  const errors: string[] = [];
  if (spec.analysis)
    errors.push(...validateAnalysis(spec.analysis, provider, scope).map(e => `analysis: ${e}`));
  spec.steps.forEach((step, i) => {
    if (step.analysis)
      errors.push(
        ...validateAnalysis(step.analysis, provider, scope).map(e => `steps[${i}].analysis: ${e}`),
      );
  });
  return errors.length ? errors.join("; ") : undefined;
}

export const OBJECT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isObjectName(name: unknown): boolean {
  return typeof name === "string" && name.length <= 253 && OBJECT_NAME.test(name);
}

/**
 * JSON merge patch (RFC 7386, json-merge-patch) that turns `prev` into `next` for a status write:
 * removed fields become null, arrays are replaced whole. null when nothing changed (skip the
 * write). The JSON round trip drops members set to undefined, which the library would keep.
 */
export function statusMergePatch(
  prev: ModelRolloutStatus | undefined,
  next: ModelRolloutStatus,
): Record<string, unknown> | null {
  const json = (v: unknown) => JSON.parse(JSON.stringify(v ?? {})) as Record<string, unknown>;
  return (
    (generateMergePatch(json(prev), json(next)) as Record<string, unknown> | undefined) ?? null
  );
}
