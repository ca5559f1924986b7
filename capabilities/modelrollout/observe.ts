// Observe: everything the engine needs to know about the world, read without deciding anything.
// The traffic target and its problems, other rollouts' claims, the Prometheus addresses the
// operator's policy refuses, what Prometheus says of every query before the first weight
// (needsQueryCheck), the probes' answers before the first weight and the outcomes of the
// measurements due now (queriesDue).
import {
  checkProbes,
  checkQueries,
  clientOptionsFor,
  prometheusAddressProblem,
  queryPrometheus,
  runDueQueries,
  runProbe,
  type MeasureContext,
  type ProbeFunction,
  type ProviderSpec,
  type QueryFunction,
  type GateToCheck,
} from "../analysis";
import { durationMs } from "../duration";
import { InferenceGroup, isTerminalPhase } from "../api/constants";
import {
  describeTemplateRef,
  inlineSpecOf,
  resolveAnalysisTemplates,
  templateRefsOf,
  type Resolution,
} from "./analysis-templates";
import { conflictingOwner, type Claimant } from "./conflict";
import {
  needsAdapterCheck,
  probesWaitForAdapter,
  needsNotificationCheck,
  needsQueryCheck,
  queriesDue,
  readActionAnnotation,
  targetOf,
  type AdapterReadinessObservation,
  type GateField,
  type Observations,
} from "./engine";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";
import {
  readAnalysisTemplates,
  apiFailure,
  observeAdapterReadiness,
  readSecretKey,
  trafficTargetFor,
  type TargetInspection,
  type TrafficTarget,
} from "./targets";
import { resolveWebhooks, type Webhook } from "./notifications/webhooks";
import { wireOf, type ModelRolloutSpec, type RolloutTarget } from "./types";

/** Each call to a pod for adapter readiness, unless spec.adapters.readiness.timeout says. */
export const DEFAULT_POD_TIMEOUT_MS = 2_000;

export interface Observed {
  obs: Observations;
  /** The spec the engine runs: the gates' templates read and merged in. */
  spec: ModelRolloutSpec;
  target?: RolloutTarget;
  /** The object inspect() read: the base of the first write to the same target. */
  inspection: TargetInspection;
  /** The usable webhooks of spec.notifications, by name (when checked: needsNotificationCheck). */
  webhooks?: Map<string, Webhook>;
}

/** Queries Prometheus for the gates of a rollout in `namespace` (Secrets read once per call). */
function gateQuery(namespace: string): QueryFunction {
  const secrets = new Map<string, Promise<string>>();
  const secret = async (ref?: { name: string; key: string }) => {
    if (!ref) return undefined;
    const k = `${ref.name}/${ref.key}`;
    if (!secrets.has(k)) secrets.set(k, readSecretKey(namespace, ref));
    return secrets.get(k);
  };
  return async (promql: string, provider: ProviderSpec) =>
    queryPrometheus(
      clientOptionsFor(provider, {
        bearerToken: await secret(provider.bearerTokenSecretRef),
        caPem: await secret(provider.caSecretRef),
      }),
      promql,
    );
}

/** Sends a probe's requests for a rollout in `namespace` (its bearer token read from a labelled Secret). */
function gateProbe(namespace: string): ProbeFunction {
  return async probe => {
    const ref = probe.bearerTokenSecretRef;
    const bearerToken = ref ? await readSecretKey(namespace, ref) : undefined;
    return runProbe(probe, { bearerToken });
  };
}

/** Every gate of the spec, with where it is (for messages). */
function gatesOf(spec: ModelRolloutSpec): GateToCheck[] {
  const gates: GateToCheck[] = [];
  if (spec.analysis) gates.push({ where: "analysis", spec: spec.analysis });
  spec.steps?.forEach((step, i) => {
    if (step.analysis) gates.push({ where: `steps[${i}].analysis`, spec: step.analysis });
  });
  return gates;
}

/** Prometheus addresses the operator's policy refuses (found before any Secret is read). */
function refusedAddresses(spec: ModelRolloutSpec): Observations["specError"] {
  const providers: Array<[string, ProviderSpec | undefined]> = [
    ["prometheus", spec.prometheus],
    ...gatesOf(spec).flatMap(g =>
      g.spec.metrics.map(
        (m, i) => [`${g.where}.metrics[${i}].prometheus`, m.prometheus] as [string, ProviderSpec],
      ),
    ),
  ];
  const errors = providers.flatMap(([where, p]) => {
    const problem = p?.address ? prometheusAddressProblem(p.address) : undefined;
    return problem ? [`${where}: ${problem.message}`] : [];
  });
  return errors.length ? { reason: "InvalidAnalysis", message: errors.join("; ") } : undefined;
}

/** Other rollouts' claims on the same object, computed against the object already read. */
function conflictOf(
  mro: ModelRollout,
  inspection: TargetInspection,
  traffic: TrafficTarget,
  others: ModelRollout[],
): Observations["conflict"] {
  if (!inspection.object || inspection.claims.length === 0) return undefined;
  const claimant = (r: ModelRollout, claims: string[]): Claimant => ({
    name: r.metadata!.name!,
    creationTimestamp: String(r.metadata?.creationTimestamp ?? ""),
    started: !!r.status?.target,
    finished: isTerminalPhase(r.status?.phase),
    claims,
  });
  const rivals = others
    .filter(r => r.metadata?.name !== mro.metadata?.name && r.spec)
    .map(r => claimant(r, traffic.claimsOf(inspection.object, inlineSpecOf(wireOf(r).spec))));
  const owner = conflictingOwner(claimant(mro, inspection.claims), rivals);
  return owner ? { owner } : undefined;
}

/** The rollout's spec with the templates its gates reference read and merged in. */
async function resolvedSpecOf(mro: ModelRollout): Promise<Resolution> {
  const namespace = mro.metadata!.namespace!;
  const written = wireOf(mro).spec;
  const refs = templateRefsOf(written);
  const templates = refs.length ? await readAnalysisTemplates(namespace, refs) : new Map();
  const lookup = (ref: Parameters<typeof describeTemplateRef>[0]) =>
    templates.get(describeTemplateRef(ref, namespace));
  return resolveAnalysisTemplates(written, lookup, namespace);
}

/** spec.adapters.readiness: which Ready pods of the model's pool list the canary adapter. */
function adapterReadiness(
  namespace: string,
  spec: ModelRolloutSpec,
  inspection: TargetInspection,
  canary: string,
): Promise<AdapterReadinessObservation> {
  if (!inspection.pool)
    return Promise.resolve({
      pool: "?",
      problem: "the model names no spec.poolRef",
      endpoints: [],
    });
  const timeout = spec.adapters?.readiness?.timeout;
  const pool = inspection.pool;
  // A pool or its Pods that cannot be read hold the weight, and never stop the reconcile: its
  // gates and a rollback go on.
  return observeAdapterReadiness(
    namespace,
    { name: pool, group: inspection.poolGroup ?? InferenceGroup.xK8s },
    canary,
    timeout ? durationMs(timeout) : DEFAULT_POD_TIMEOUT_MS,
  ).catch(err => ({
    pool,
    problem: `cannot read the pool or its Pods: ${apiFailure(err).message}`,
    endpoints: [],
  }));
}

/** Reads the world for one reconcile of `mro`. `othersIn` lists the rollouts of a namespace. */
export async function observe(
  mro: ModelRollout,
  othersIn: (namespace: string) => Promise<ModelRollout[]>,
  now: Date,
): Promise<Observed> {
  const namespace = mro.metadata!.namespace!;
  const resolution = await resolvedSpecOf(mro);
  const spec = resolution.spec;
  const status = wireOf(mro).status;
  const target = targetOf(spec);
  const traffic = target ? trafficTargetFor(namespace, spec, target) : undefined;
  const inspection: TargetInspection = traffic
    ? await traffic.inspect(mro.metadata?.name)
    : { claims: [] };
  const obs: Observations = {
    generation: mro.metadata?.generation ?? 0,
    ...readActionAnnotation(mro.metadata?.annotations),
    targets: inspection.problem ? { ready: false, ...inspection.problem } : { ready: true },
    conflict:
      traffic && inspection.object
        ? conflictOf(mro, inspection, traffic, await othersIn(namespace))
        : undefined,
    specError: resolution.problem ?? refusedAddresses(spec),
  };
  let webhooks: Map<string, Webhook> | undefined;
  if (needsNotificationCheck(spec, status, obs)) {
    const resolved = await resolveWebhooks(namespace, spec.notifications ?? []);
    webhooks = resolved.usable;
    obs.notificationProblems = resolved.problems;
  }
  if (!target || obs.specError) return { obs, spec, target, inspection, webhooks };

  const templateContext = {
    scope: spec.pools ? ("pools" as const) : ("adapters" as const),
    namespace,
    rollout: mro.metadata!.name!,
    canary: target.canary,
    stable: target.stable,
    modelName: inspection.modelName,
    pool: inspection.pool,
  };
  obs.templateContext = templateContext;
  const ctx: MeasureContext = {
    ...templateContext,
    weight: status?.canaryWeight ?? 0,
    defaultProvider: spec.prometheus,
  };
  const query = gateQuery(namespace);
  const probe = gateProbe(namespace);
  if (!inspection.problem && !obs.conflict && needsAdapterCheck(spec, status, obs))
    obs.adapterReadiness = await adapterReadiness(namespace, spec, inspection, target.canary);
  if (!inspection.problem && !obs.conflict && needsQueryCheck(spec, status, obs)) {
    [obs.queryCheck, obs.probeCheck] = await Promise.all([
      checkQueries(gatesOf(spec), ctx, query),
      probesWaitForAdapter(spec, obs) ? undefined : checkProbes(gatesOf(spec), ctx, probe, now),
    ]);
  }
  const due = queriesDue(spec, status, ctx, now);
  const fields = Object.keys(due) as GateField[];
  if (fields.length) {
    const outcomes = await Promise.all(fields.map(f => runDueQueries(due[f]!, query, now, probe)));
    obs.measurements = Object.fromEntries(fields.map((f, i) => [f, outcomes[i]]));
  }
  return { obs, spec, target, inspection, webhooks };
}
