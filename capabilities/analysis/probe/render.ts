// A probe's requests for this rollout (pure): per side, the URL and headers with their
// placeholders filled in, the model name sent and one JSON body per request.
import { durationMs } from "../../duration";
import type { TemplateContext } from "../types";
import {
  PROBE_DEFAULTS,
  type ProbeSide,
  type ProbeSpec,
  type ResolvedProbe,
  type SideRequests,
} from "./types";

/** A probe that cannot be built for this rollout (a value the operator does not know). */
export class ProbeTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProbeTemplateError";
  }
}

const PLACEHOLDER = /\{\{\s*([A-Za-z]+)\s*\}\}/g;
const NAMES = ["side", "pool", "model", "canary", "stable", "namespace", "rollout"];

/** Why `text` has a placeholder the probe does not know (model: whether {{model}} is one). */
export function placeholderProblem(
  text: string,
  field: string,
  model: boolean,
): string | undefined {
  const known = model ? NAMES : NAMES.filter(n => n !== "model");
  for (const [, name] of text.matchAll(PLACEHOLDER)) {
    if (!known.includes(name))
      return `${field}: unknown placeholder {{${name}}} (known: ${known.map(n => `{{${n}}}`).join(" ")})`;
  }
  return undefined;
}

type Vars = Partial<Record<string, string>>;

function render(template: string, vars: Vars, encode: (v: string) => string): string {
  return template.replace(PLACEHOLDER, (_, name: string) => {
    const value = vars[name];
    if (value === undefined || value === "")
      throw new ProbeTemplateError(`{{${name}}} is not known for this rollout`);
    return encode(value);
  });
}

// A header value must stay one header: no line breaks or NULs from a substituted name.
function headerValue(value: string): string {
  if (/[\r\n\0]/.test(value))
    throw new ProbeTemplateError("a header value cannot contain line breaks");
  return value;
}

/** The values of one side: its pool (spec.pools) and the model name it is asked for. */
function sideVars(probe: ProbeSpec, ctx: TemplateContext, side: ProbeSide): Vars {
  const vars: Vars = {
    side,
    canary: ctx.canary,
    stable: ctx.stable,
    namespace: ctx.namespace,
    rollout: ctx.rollout,
    pool: ctx.scope === "pools" ? ctx[side] : ctx.pool,
  };
  let model: string | undefined;
  if (probe.model !== undefined) model = render(probe.model, vars, v => v);
  else if (ctx.scope === "adapters") model = ctx[side];
  else model = ctx.modelName;
  if (!model)
    throw new ProbeTemplateError(
      "the rollout's model name is not known (no InferenceModel of the pools names it): set probe.model",
    );
  return { ...vars, model };
}

function bodyOf(probe: ProbeSpec, model: string, prompt: string): string {
  const common = {
    model,
    max_tokens: probe.maxTokens ?? PROBE_DEFAULTS.maxTokens,
    ...(probe.stream ? { stream: true } : {}),
  };
  const api = probe.api ?? PROBE_DEFAULTS.api;
  return JSON.stringify(
    api === "chat"
      ? { ...common, messages: [{ role: "user", content: prompt }] }
      : { ...common, prompt },
  );
}

/** The sides a probe measures: the canary, and the stable unless compareStable is false. */
export function probeSides(probe: Pick<ProbeSpec, "compareStable">): ProbeSide[] {
  return probe.compareStable === false ? ["canary"] : ["canary", "stable"];
}

/** The model name an answer of `side` must carry, or undefined when any is accepted. */
export function expectedModel(
  probe: ProbeSpec,
  ctx: TemplateContext,
  side: ProbeSide,
): string | undefined {
  const vars = sideVars(probe, ctx, side);
  const expected = probe.expect?.model;
  if (expected === "*") return undefined;
  return expected === undefined ? vars.model : render(expected, vars, v => v);
}

/** Requests of every side for this rollout. Throws ProbeTemplateError when a value is unknown. */
export function resolveProbe(probe: ProbeSpec, ctx: TemplateContext): ResolvedProbe {
  const count = probe.requests ?? probe.prompts.length;
  const sides = probeSides(probe).map((side): SideRequests => {
    const vars = sideVars(probe, ctx, side);
    const headers = Object.fromEntries(
      Object.entries(probe.headers ?? {}).map(([k, v]) => [
        k,
        headerValue(render(v, vars, s => s)),
      ]),
    );
    return {
      side,
      url: render(probe.url, vars, encodeURIComponent),
      headers,
      model: vars.model!,
      bodies: Array.from({ length: count }, (_, i) =>
        bodyOf(probe, vars.model!, probe.prompts[i % probe.prompts.length]),
      ),
    };
  });
  return {
    sides,
    prompts: probe.prompts.length,
    rate: probe.rate ?? PROBE_DEFAULTS.rate,
    timeoutMs: durationMs(probe.timeout ?? PROBE_DEFAULTS.timeout),
    stream: probe.stream === true,
    ...(probe.bearerTokenSecretRef ? { bearerTokenSecretRef: probe.bearerTokenSecretRef } : {}),
  };
}
