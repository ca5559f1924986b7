// The demo's scenarios: which ModelRollout each one applies, when it starts, what it must end as,
// and the checks of the objects it leaves. The checks' judgements are pure (tested); reading the
// objects is done by the caller.
import type { HTTPRouteRule, InferenceModel } from "../../capabilities/api/objects";
import { RolloutJson } from "../../plugin/format";
import {
  adaptersRollout,
  badRollout,
  BAD_FAILURE_RATE,
  poolsRollout,
  ROLLOUTS,
  SEED,
  UPSTREAM,
  upstreamRollout,
} from "./manifests";

export type Outcome = "Succeeded" | "Failed";

export interface Scenario {
  rollout: string;
  title: string;
  expected: Outcome;
  /** Starts once this rollout has finished (same HTTPRoute: one rollout at a time). */
  after?: string;
  /** The ModelRollout, given Prometheus' address and the local gateway's (for probes). */
  manifest(prometheus: string, gateway: string): object;
  /** Whose observed split the board shows: model name and the label that tells the two apart. */
  observe: { model: string; by: "pool" | "target_model_name"; stable: string; canary: string };
  /** Time it may take from being applied to finishing. */
  deadlineMs: number;
}

export const SCENARIOS: Scenario[] = [
  {
    rollout: ROLLOUTS.pools,
    title: `scenario 1, new base model: ${SEED.model} from ${SEED.stablePool} (Qwen) to ${SEED.canaryPool} (DeepSeek) on HTTPRoute ${SEED.route}, 10 -> 50 -> 100`,
    expected: "Succeeded",
    manifest: p => poolsRollout(p),
    observe: { model: SEED.model, by: "pool", stable: SEED.stablePool, canary: SEED.canaryPool },
    deadlineMs: 200_000,
  },
  {
    rollout: ROLLOUTS.adapters,
    title: `scenario 2, new LoRA adapter: ${SEED.loraModel} from ${SEED.stableAdapter} to ${SEED.canaryAdapter} in InferenceModel ${SEED.loraInferenceModel}, 10 -> 50 -> 100, with a probe gate on both adapters' answers`,
    expected: "Succeeded",
    manifest: (p, gateway) => adaptersRollout(p, "20s", gateway),
    observe: {
      model: SEED.loraModel,
      by: "target_model_name",
      stable: SEED.stableAdapter,
      canary: SEED.canaryAdapter,
    },
    deadlineMs: 200_000,
  },
  {
    rollout: ROLLOUTS.bad,
    title: `a bad version: ${SEED.badPool}, a DeepSeek build whose server fails ${BAD_FAILURE_RATE}% of requests; its error-rate gate must fail and roll back to ${SEED.canaryPool}`,
    expected: "Failed",
    after: ROLLOUTS.pools,
    manifest: p => badRollout(p),
    observe: { model: SEED.model, by: "pool", stable: SEED.canaryPool, canary: SEED.badPool },
    deadlineMs: 120_000,
  },
  {
    rollout: ROLLOUTS.upstream,
    title: `scenario 4, pools served by the upstream EPP: ${UPSTREAM.model} from ${UPSTREAM.stablePool} to ${UPSTREAM.canaryPool} (v1 InferencePools) on HTTPRoute ${UPSTREAM.route}, 20 -> 50 -> 100, gated on the EPP's metrics`,
    expected: "Succeeded",
    manifest: p => upstreamRollout(p),
    observe: {
      model: UPSTREAM.model,
      by: "pool",
      stable: UPSTREAM.stablePool,
      canary: UPSTREAM.canaryPool,
    },
    deadlineMs: 200_000,
  },
];

/** Canary share of a pair from request counts per label value; undefined without requests. */
export function splitOf(
  counts: Record<string, number>,
  stable: string,
  canary: string,
): { canaryPercent: number; total: number } | undefined {
  const c = counts[canary] ?? 0;
  const s = counts[stable] ?? 0;
  const total = c + s;
  if (!(total > 0)) return undefined;
  return { canaryPercent: (100 * c) / total, total };
}

/** What the checks below read of an HTTPRoute and of an InferenceModel. */
type RouteRefs = { spec?: { rules?: Pick<HTTPRouteRule, "backendRefs">[] } };
type ModelTargets = { spec?: Pick<NonNullable<InferenceModel["spec"]>, "targetModels"> };

/** Problems with an HTTPRoute (the seed's by default) once traffic should be all on `pool`. */
export function routeProblems(route: RouteRefs, pool: string, name: string = SEED.route): string[] {
  const refs = route.spec?.rules?.[0]?.backendRefs ?? [];
  const desc = refs.map(r => `${r.name}=${r.weight ?? 1}`).join(", ");
  if (refs.length === 1 && refs[0].name === pool && (refs[0].weight ?? 1) > 0) return [];
  return [`HTTPRoute ${name} should send everything to ${pool}, has backendRefs [${desc}]`];
}

/** Problems with InferenceModel loramodel once travel-helper-v2 serves all requests. */
export function loraModelProblems(model: ModelTargets): string[] {
  const targets = model.spec?.targetModels ?? [];
  const desc = targets.map(t => `${t.name}=${t.weight ?? "-"}`).join(", ");
  if (targets.length === 1 && targets[0].name === SEED.canaryAdapter) return [];
  return [
    `InferenceModel ${SEED.loraInferenceModel} should target only ${SEED.canaryAdapter}, has [${desc}]`,
  ];
}

/**
 * Scenario 2's adapter readiness: the rollout held (AdapterNotReady naming qwen-0, which lacked
 * travel-helper-v2), the operator loaded the adapter there (status.adapterReadiness.loadedOn) and
 * the pod lists it now. `reasons`: the rollout's Event reasons; `served`: the pod's /v1/models ids.
 */
export function adapterReadinessProblems(
  r: RolloutJson | undefined,
  events: { reason: string; message: string }[],
  served: string[] | undefined,
  pod: string,
): string[] {
  const problems: string[] = [];
  const held = events.find(e => e.reason === "AdapterNotReady");
  if (!held || !held.message.includes(pod))
    problems.push(`no AdapterNotReady Event naming pod ${pod} (the hold before the first weight)`);
  const loadedOn = (r?.status as { adapterReadiness?: { loadedOn?: string[] } } | undefined)
    ?.adapterReadiness?.loadedOn;
  if (!loadedOn?.includes(pod))
    problems.push(
      `status.adapterReadiness.loadedOn should name ${pod}, has ${JSON.stringify(loadedOn ?? [])}`,
    );
  if (!served?.includes(SEED.canaryAdapter))
    problems.push(
      `pod ${pod} should list ${SEED.canaryAdapter} in /v1/models, lists ${JSON.stringify(served ?? [])}`,
    );
  return problems;
}

/** Problems with the phase, and for a failure, that a gate (not something else) caused it. */
export function phaseProblems(s: Scenario, r: RolloutJson | undefined): string[] {
  const phase = r?.status?.phase;
  if (phase !== s.expected)
    return [`phase ${phase ?? "(none)"}, expected ${s.expected}: ${r?.status?.message ?? ""}`];
  if (s.expected === "Failed") {
    const said = `${r?.status?.message ?? ""} ${JSON.stringify(r?.status?.analysis ?? {})}`;
    if (!/canary-error-rate/.test(said))
      return [`failed, but not by the canary-error-rate gate: ${r?.status?.message}`];
  }
  return [];
}

/** A measurement's value, numbers rounded: "[277.2413793103448]" -> "277.24". */
function shortValue(value: string | undefined): string {
  try {
    const parsed = JSON.parse(value ?? "") as unknown;
    const list = Array.isArray(parsed) ? parsed : [parsed];
    if (list.length && list.every(v => typeof v === "number"))
      return list.map(v => String(Math.round((v as number) * 100) / 100)).join(", ");
  } catch {
    /* not JSON: shown as is */
  }
  return value ?? "?";
}

/** The last measurement of each gate of the last step analysis: "latency Successful 1.02". */
export function gateMeasurements(r: RolloutJson | undefined): string | undefined {
  const parts = (r?.status?.stepAnalysis?.metrics ?? []).flatMap(m => {
    const last = m.measurements?.[m.measurements.length - 1];
    return last ? [`${m.name} ${last.phase} ${shortValue(last.value)}`] : [];
  });
  return parts.length ? parts.join(", ") : undefined;
}

/** The failing measurement of a failed rollout, for the summary: "canary-error-rate = 0.41". */
export function failingEvidence(r: RolloutJson | undefined): string | undefined {
  for (const run of [r?.status?.analysis, r?.status?.stepAnalysis]) {
    for (const m of run?.metrics ?? []) {
      const bad = [...(m.measurements ?? [])].reverse().find(x => x.phase === "Failed");
      if (bad) return `${m.name} measured ${bad.value ?? "?"} (${bad.message ?? "failed"})`;
    }
  }
  return undefined;
}

export interface DemoOptions {
  keep: boolean;
  plain: boolean;
  namespace: string;
  help: boolean;
}

export const demoUsage = `usage: npx tsx hack/demo.ts [--keep] [--plain] [--namespace NS]

Plays the seed document's two releases as ModelRollouts on the local environment, plus a bad
version that is rolled back automatically, and a release between two v1 InferencePools served by
the upstream endpoint picker (GIE v1.5.0), gated on its metrics. Exit status 0 when every scenario
ends as expected.

  --keep          leave everything running afterwards (stop it with \`npm run cluster:down\`)
  --plain         plain line output even on a terminal (the default when stdout is not a TTY)
  --namespace NS  namespace of the demo's objects [modelrollout-demo]`;

export function parseDemoArgs(argv: string[]): DemoOptions {
  const opts: DemoOptions = {
    keep: false,
    plain: false,
    namespace: "modelrollout-demo",
    help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--keep") opts.keep = true;
    else if (a === "--plain") opts.plain = true;
    else if (a === "-h" || a === "--help") opts.help = true;
    else if (a === "--namespace" || a.startsWith("--namespace=")) {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i];
      if (!v || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) || v.length > 63)
        throw new Error(
          `--namespace needs a DNS label (lower case letters, digits, '-'), got ${JSON.stringify(v ?? "")}\n${demoUsage}`,
        );
      opts.namespace = v;
    } else throw new Error(`unknown argument ${a}\n${demoUsage}`);
  }
  return opts;
}
