// The reconciler: the thin I/O shell around the pure step engine (engine.ts).
//   read the world (fresh ModelRollout, its target, other rollouts) → measure due gates →
//   reconcileRollout(spec, status, observations, now) → apply actions → events → write status
//   once → remove the action annotation → schedule the next call.
// Calls for one rollout are serialized here (watch events and timers both come through
// `reconcileKey`), and each call starts from a fresh GET: a queued watch event may carry an old
// status, and acting on it could move traffic backwards.
import { K8s, kind } from "kubernetes-fluent-client";
import { Log } from "pepr";
import {
  AnalysisRunStatus,
  AnalysisSpec as GateSpec,
  clientOptionsFor,
  concludeRun,
  dueMetrics,
  measureDue,
  ProviderSpec as GateProvider,
  queryPrometheus,
  TemplateContext,
  validateAnalysis,
} from "../analysis";
import { conflictingOwner, type Claimant } from "./conflict";
import {
  ACTION_ANNOTATION,
  Action,
  Observations,
  readActionAnnotation,
  reconcileRollout,
  statusMergePatch,
  targetOf,
} from "./engine";
import { ModelRollout } from "./generated/modelrollout-v1alpha1";
import {
  apiFailure,
  deletePool,
  ensureCanaryPool,
  readSecretKey,
  TargetInspection,
  trafficTargetFor,
} from "./targets";
import type { GateRun, ModelRolloutSpec, ModelRolloutStatus } from "./types";

const TERMINAL = ["Succeeded", "Failed", "Aborted"];
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;

/** In-memory only: timers and backoff. Everything that matters for progress is in status. */
const timers = new Map<string, NodeJS.Timeout>();
const chains = new Map<string, Promise<void>>();
const failures = new Map<string, number>();

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Serializes reconciles of one rollout; never throws (Pepr drops a throwing reconcile). */
export function reconcileKey(namespace: string, name: string): Promise<void> {
  const key = keyOf(namespace, name);
  const prev = chains.get(key) ?? Promise.resolve();
  const next = prev
    .then(() => reconcileOnce(namespace, name))
    .catch(err => onError(namespace, name, err));
  chains.set(key, next);
  void next.finally(() => {
    if (chains.get(key) === next) chains.delete(key);
  });
  return next;
}

/**
 * Every ModelRollout seen (one LIST per namespace, then kept current by the watch and by each
 * reconcile's GET), for conflict detection without a LIST per reconcile — that LIST made a
 * reconcile O(rollouts) and the operator O(rollouts²).
 */
const rolloutIndex = new Map<string, ModelRollout>();
const listedNamespaces = new Map<string, Promise<void>>();

function newer(a: ModelRollout, b: ModelRollout | undefined): boolean {
  const ra = Number(a.metadata?.resourceVersion);
  const rb = Number(b?.metadata?.resourceVersion);
  return !b || !Number.isFinite(ra) || !Number.isFinite(rb) || ra >= rb;
}

/** Records a ModelRollout from the watch or a GET (an older copy never replaces a newer one). */
export function remember(mro: ModelRollout): void {
  const { namespace, name } = mro.metadata ?? {};
  if (!namespace || !name) return;
  const key = keyOf(namespace, name);
  if (newer(mro, rolloutIndex.get(key))) rolloutIndex.set(key, mro);
}

export function dropFromIndex(namespace: string, name: string): void {
  rolloutIndex.delete(keyOf(namespace, name));
}

async function rolloutsIn(namespace: string): Promise<ModelRollout[]> {
  let listed = listedNamespaces.get(namespace);
  if (!listed) {
    listed = K8s(ModelRollout)
      .InNamespace(namespace)
      .Get()
      .then(list => list.items.forEach(remember));
    listedNamespaces.set(namespace, listed);
    listed.catch(() => listedNamespaces.delete(namespace));
  }
  await listed;
  return [...rolloutIndex.values()].filter(r => r.metadata?.namespace === namespace);
}

export function forget(namespace: string, name: string): void {
  const key = keyOf(namespace, name);
  clearTimeout(timers.get(key));
  timers.delete(key);
  failures.delete(key);
}

function schedule(namespace: string, name: string, ms: number): void {
  const key = keyOf(namespace, name);
  clearTimeout(timers.get(key));
  const timer = setTimeout(
    () => {
      timers.delete(key);
      void reconcileKey(namespace, name);
    },
    Math.max(0, Math.ceil(ms)),
  );
  timer.unref?.();
  timers.set(key, timer);
}

function onError(namespace: string, name: string, err: unknown): void {
  const key = keyOf(namespace, name);
  const n = (failures.get(key) ?? 0) + 1;
  failures.set(key, n);
  const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (n - 1));
  const { status, message } = apiFailure(err);
  Log.error(
    { rollout: key, status, attempt: n, retryInMs: delay },
    `ModelRollout ${key}: reconcile failed: ${message}`,
  );
  schedule(namespace, name, delay);
}

async function getRollout(namespace: string, name: string): Promise<ModelRollout | undefined> {
  try {
    return await K8s(ModelRollout).InNamespace(namespace).Get(name);
  } catch (err) {
    if (apiFailure(err).status === 404) return undefined;
    throw err;
  }
}

/** Other rollouts' claims on the same object, computed against the object already read. */
async function conflictOf(
  mro: ModelRollout,
  spec: ModelRolloutSpec,
  inspection: TargetInspection,
  claimsOf: (o: unknown, s: ModelRolloutSpec) => string[],
) {
  if (!inspection.object || inspection.claims.length === 0) return undefined;
  const all = { items: await rolloutsIn(mro.metadata!.namespace!) };
  const claimant = (r: ModelRollout, claims: string[]): Claimant => ({
    name: r.metadata!.name!,
    creationTimestamp: String(r.metadata?.creationTimestamp ?? ""),
    started: !!r.status?.target,
    finished: TERMINAL.includes(String(r.status?.phase ?? "")),
    claims,
  });
  const others = all.items
    .filter(r => r.metadata?.name !== mro.metadata?.name && r.spec)
    .map(r => claimant(r, claimsOf(inspection.object, r.spec as unknown as ModelRolloutSpec)));
  const owner = conflictingOwner(claimant(mro, inspection.claims), others);
  return owner ? { owner } : undefined;
}

function gateErrors(spec: ModelRolloutSpec): string | undefined {
  const provider = spec.prometheus as GateProvider | undefined;
  const errors: string[] = [];
  if (spec.analysis)
    errors.push(
      ...validateAnalysis(spec.analysis as GateSpec, provider).map(e => `analysis: ${e}`),
    );
  spec.steps?.forEach((step, i) => {
    if (step.analysis)
      errors.push(
        ...validateAnalysis(step.analysis as GateSpec, provider).map(
          e => `steps[${i}].analysis: ${e}`,
        ),
      );
  });
  return errors.length ? errors.join("; ") : undefined;
}

/** Takes the due measurements of the running gates; returns the status with updated runs and the next due time. */
async function measureGates(
  namespace: string,
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus,
  ctx: TemplateContext,
  now: Date,
): Promise<{ status: ModelRolloutStatus; nextDueMs?: number }> {
  const secrets = new Map<string, string>();
  const secret = async (ref?: { name: string; key: string }) => {
    if (!ref) return undefined;
    const k = `${ref.name}/${ref.key}`;
    if (!secrets.has(k)) secrets.set(k, await readSecretKey(namespace, ref));
    return secrets.get(k);
  };
  const query = async (promql: string, provider: GateProvider) =>
    queryPrometheus(
      clientOptionsFor(provider, {
        bearerToken: await secret(provider.bearerTokenSecretRef),
        caPem: await secret(provider.caSecretRef),
      }),
      promql,
    );
  const out = { ...status };
  let nextDueMs: number | undefined;
  const runs: Array<["analysis" | "stepAnalysis", GateSpec | undefined]> = [
    ["analysis", spec.analysis as GateSpec | undefined],
    [
      "stepAnalysis",
      status.stepAnalysis?.stepIndex !== undefined
        ? (spec.steps[status.stepAnalysis.stepIndex]?.analysis as GateSpec | undefined)
        : undefined,
    ],
  ];
  for (const [field, gate] of runs) {
    const run = out[field] as unknown as AnalysisRunStatus | undefined;
    if (!run || !gate || run.phase !== "Running") continue;
    const measured = await measureDue(
      gate,
      run,
      { ...ctx, defaultProvider: spec.prometheus as GateProvider | undefined },
      now,
      query,
    );
    out[field] = measured as unknown as GateRun;
    const { nextDueAt } = dueMetrics(gate, measured, now);
    if (nextDueAt) {
      const ms = Date.parse(nextDueAt) - now.getTime();
      nextDueMs = nextDueMs === undefined ? ms : Math.min(nextDueMs, ms);
    }
  }
  return { status: out, nextDueMs };
}

async function recordEvent(
  mro: ModelRollout,
  action: Extract<Action, { type: "event" }>,
  now: Date,
): Promise<void> {
  const name = mro.metadata!.name!;
  const namespace = mro.metadata!.namespace!;
  await K8s(kind.CoreEvent).Create({
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      name: `${name}.${now.getTime().toString(16)}${Math.random().toString(16).slice(2, 6)}`,
      namespace,
    },
    involvedObject: {
      apiVersion: mro.apiVersion,
      kind: "ModelRollout",
      name,
      namespace,
      uid: mro.metadata!.uid,
      resourceVersion: mro.metadata!.resourceVersion,
    },
    reason: action.reason,
    message: action.message,
    type: action.eventType,
    source: { component: "modelrollout-operator" },
    reportingComponent: "modelrollout-operator",
    reportingInstance: process.env.HOSTNAME ?? "local",
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  } as kind.CoreEvent);
}

async function clearActionAnnotation(mro: ModelRollout): Promise<void> {
  const value = mro.metadata?.annotations?.[ACTION_ANNOTATION];
  if (value === undefined) return;
  const path = `/metadata/annotations/${ACTION_ANNOTATION.replace(/~/g, "~0").replace(/\//g, "~1")}`;
  try {
    // `test` first: a newer action given meanwhile is not removed unseen.
    await K8s(ModelRollout, {
      name: mro.metadata!.name!,
      namespace: mro.metadata!.namespace!,
    }).Patch([
      { op: "test", path, value },
      { op: "remove", path },
    ]);
  } catch (err) {
    if (apiFailure(err).status !== 422) throw err;
  }
}

async function reconcileOnce(namespace: string, name: string): Promise<void> {
  const mro = await getRollout(namespace, name);
  if (!mro) {
    dropFromIndex(namespace, name);
    return forget(namespace, name);
  }
  remember(mro);
  const now = new Date();
  const spec = mro.spec as unknown as ModelRolloutSpec;
  const prev = (mro.status ?? undefined) as ModelRolloutStatus | undefined;
  const log = { rollout: keyOf(namespace, name), generation: mro.metadata?.generation };

  const target = targetOf(spec);
  const traffic = target ? trafficTargetFor(namespace, spec, target) : undefined;
  const inspection: TargetInspection = traffic ? await traffic.inspect() : { claims: [] };
  const specError = gateErrors(spec);
  const obs: Observations = {
    generation: mro.metadata?.generation ?? 0,
    ...readActionAnnotation(mro.metadata?.annotations),
    targets: inspection.problem ? { ready: false, ...inspection.problem } : { ready: true },
    conflict: traffic ? await conflictOf(mro, spec, inspection, traffic.claimsOf) : undefined,
    specError: specError ? { reason: "InvalidAnalysis", message: specError } : undefined,
  };

  let status = prev ?? {};
  let nextDueMs: number | undefined;
  if (!specError && target && !TERMINAL.includes(String(status.phase))) {
    const ctx: TemplateContext = {
      scope: spec.pools ? "pools" : "adapters",
      namespace,
      rollout: name,
      canary: target.canary,
      stable: target.stable,
      modelName: inspection.modelName,
      pool: inspection.pool,
      weight: status.canaryWeight ?? 0,
    };
    ({ status, nextDueMs } = await measureGates(namespace, spec, status, ctx, now));
  }

  const result = reconcileRollout(spec, status, obs, now);

  const rollout = { name, namespace };
  for (const action of result.actions) {
    switch (action.type) {
      case "ensureCanaryPool": {
        const created = await ensureCanaryPool(rollout, spec);
        if (created.length)
          Log.info(
            { ...log, created },
            `ModelRollout ${log.rollout}: created ${created.join(", ")}`,
          );
        break;
      }
      case "setWeight": {
        const t = trafficTargetFor(namespace, spec, action.target);
        if (await t.setWeight(action.canaryWeight)) {
          Log.info(
            { ...log, canaryWeight: action.canaryWeight, target: action.target.name },
            `ModelRollout ${log.rollout}: canary weight ${action.canaryWeight}%`,
          );
        }
        break;
      }
      case "finalize": {
        const t = trafficTargetFor(namespace, spec, action.target);
        if (await t.finalize(action.outcome))
          Log.info(
            { ...log, outcome: action.outcome },
            `ModelRollout ${log.rollout}: finalized (${action.outcome})`,
          );
        break;
      }
      case "deletePool":
        if (await deletePool(rollout, spec, action.pool, action.onlyIfManaged))
          Log.info(
            { ...log, pool: action.pool },
            `ModelRollout ${log.rollout}: deleted pool ${action.pool}`,
          );
        break;
      default:
        break;
    }
  }

  // A background run still measuring when the rollout ends is concluded for the record (status and
  // describe show its outcome instead of "Running"); it no longer decides anything.
  const bg = result.status.analysis as unknown as AnalysisRunStatus | undefined;
  if (TERMINAL.includes(String(result.status.phase)) && bg?.phase === "Running" && spec.analysis) {
    result.status.analysis = concludeRun(spec.analysis as GateSpec, bg, now) as unknown as GateRun;
  }
  // Events before the status: a crash in between repeats an Event on restart instead of losing it.
  for (const action of result.actions) {
    if (action.type === "event") await recordEvent(mro, action, now);
  }
  const patch = statusMergePatch(prev, result.status);
  if (patch)
    await K8s(ModelRollout).PatchStatus({
      metadata: { name, namespace },
      status: patch,
    } as unknown as ModelRollout);
  if (result.actions.some(a => a.type === "clearActionAnnotation"))
    await clearActionAnnotation(mro);

  failures.delete(keyOf(namespace, name));
  const waits = [result.requeueAfterMs, nextDueMs].filter((ms): ms is number => ms !== undefined);
  if (waits.length) schedule(namespace, name, Math.min(...waits));
  else forget(namespace, name);
}
