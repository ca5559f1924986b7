// The reconciler: the thin I/O shell around the pure step engine (engine.ts).
//   read the world (the newest ModelRollout known, its target, other rollouts) → measure due
//   gates → reconcileRollout(spec, status, observations, now) → apply actions → queue events →
//   write status once → remove the action annotation → schedule the next call.
// Calls for one rollout are serialized here (watch events and timers both come through
// `reconcileKey`), and each call starts from the rollout index's copy, which is never older than
// this operator's own last write: a queued watch event may carry an old status, and acting on it
// could move traffic backwards.
import { K8s } from "kubernetes-fluent-client";
import pLimit from "p-limit";
import { Log } from "pepr";
import {
  AnalysisRunStatus,
  AnalysisSpec as GateSpec,
  checkQueries,
  clientOptionsFor,
  concludeRun,
  type GateToCheck,
  type QueryFunction,
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
  needsQueryCheck,
  Observations,
  readActionAnnotation,
  reconcileFailed,
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
import { EventRecorder } from "./event-recorder";
import { RolloutIndex } from "./rollout-index";
import type { GateRun, ModelRolloutSpec, ModelRolloutStatus, RolloutTarget } from "./types";

const TERMINAL = ["Succeeded", "Failed", "Aborted"];
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/**
 * The longest a timer sleeps before the reconciler looks again. Node fires a timer of more than
 * 2^31-1 ms after 1 ms; a long pause (720h) wakes once an hour, recomputes and sleeps again.
 */
export const MAX_TIMER_MS = 3_600_000;

/** In-memory only: timers and backoff. Everything that matters for progress is in status. */
const timers = new Map<string, NodeJS.Timeout>();
/**
 * Reconciles in flight at once, over all rollouts: a wave of due steps must not become thousands of
 * concurrent API calls (API Priority and Fairness answers a ServiceAccount's flood with 429s).
 */
const MAX_CONCURRENT_RECONCILES = Number(process.env.MODELROLLOUT_MAX_CONCURRENT_RECONCILES) || 32;
const reconcileSlots = pLimit(MAX_CONCURRENT_RECONCILES);
let idleWaiters: Array<() => void> = [];

/** Resolves once no reconcile waits for a slot (Events yield to reconciles). */
function reconcilesIdle(): Promise<void> {
  if (reconcileSlots.pendingCount === 0) return Promise.resolve();
  return new Promise(resolve => idleWaiters.push(resolve));
}

async function reconcileInSlot(namespace: string, name: string): Promise<void> {
  try {
    // Leadership may have been lost while this call waited for its slot.
    if (leading()) await reconcileOnce(namespace, name);
  } finally {
    lastReconcileAt = Date.now();
    if (reconcileSlots.pendingCount === 0 && idleWaiters.length) {
      const waiters = idleWaiters;
      idleWaiters = [];
      waiters.forEach(wake => wake());
    }
  }
}
const chains = new Map<string, Promise<void>>();
const failures = new Map<string, number>();

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Whether this replica may reconcile (leader election, runtime.ts); always, without one. */
let leading: () => boolean = () => true;
let lastReconcileAt: number | undefined;

export function followLeadership(isLeader: () => boolean): void {
  leading = isLeader;
}

/** For the health endpoints: reconciles waiting or running, and when one last finished. */
export function reconcileActivity(): { reconcilesPending: number; lastReconcileAt?: number } {
  return {
    reconcilesPending: reconcileSlots.pendingCount + reconcileSlots.activeCount,
    lastReconcileAt,
  };
}

/** A new leader reconciles every rollout it knows: their timers lived in another process. */
export function reconcileAll(): void {
  for (const mro of rolloutIndex.all()) {
    const { namespace, name } = mro.metadata ?? {};
    if (namespace && name) void reconcileKey(namespace, name);
  }
}

/** Leadership lost: no timer fires here any more (the index stays warm from the watch). */
export function stopReconciling(): void {
  for (const timer of timers.values()) clearTimeout(timer);
  timers.clear();
  failures.clear();
}

/**
 * The apiserver answers again after an outage: the rollouts whose reconciles failed meanwhile go
 * now instead of at the end of their backoff (up to a minute), so progress resumes within seconds.
 */
export function onApiserverAnswered(): void {
  for (const key of [...failures.keys()]) {
    const [namespace, name] = key.split("/");
    void reconcileKey(namespace, name);
  }
}

/** Serializes reconciles of one rollout; never throws (Pepr drops a throwing reconcile). */
export function reconcileKey(namespace: string, name: string): Promise<void> {
  const key = keyOf(namespace, name);
  if (!leading()) return Promise.resolve();
  const prev = chains.get(key) ?? Promise.resolve();
  const next = prev
    .then(() => reconcileSlots(() => reconcileInSlot(namespace, name)))
    .catch(err => onError(namespace, name, err))
    .catch(err => Log.error({ err }, `ModelRollout ${key}: error handler failed`));
  chains.set(key, next);
  void next.finally(() => {
    if (chains.get(key) === next) chains.delete(key);
  });
  return next;
}

/**
 * Every ModelRollout seen (one LIST per namespace, then kept current by the watch and by the
 * responses of our writes): the reconciler reads from it instead of a GET per reconcile, and
 * checks conflicts without a LIST — that LIST made the operator O(rollouts²).
 */
const rolloutIndex = new RolloutIndex();
const events = new EventRecorder({ reconcilesIdle });
const listedNamespaces = new Map<string, Promise<void>>();

/** Records a ModelRollout from the watch (an older copy never replaces a newer one). */
export function remember(mro: ModelRollout): void {
  rolloutIndex.remember(mro);
}

/**
 * A watch event the reconciler has already acted on: the echo of its own status write (half of
 * all events), or older. Skipping it saves the reads of a reconcile that would change nothing.
 */
export function alreadyReconciled(mro: ModelRollout): boolean {
  return rolloutIndex.isHandled(mro);
}

/**
 * `uid`: from a delete event, so that no late event brings the rollout back, and a late delete of
 * an older object of the same name leaves a newer one alone. True when the rollout was dropped.
 */
export function dropFromIndex(namespace: string, name: string, uid?: string): boolean {
  return rolloutIndex.drop(namespace, name, uid);
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
  return rolloutIndex.inNamespace(namespace);
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
    Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(ms))),
  );
  timer.unref?.();
  timers.set(key, timer);
}

async function onError(namespace: string, name: string, err: unknown): Promise<void> {
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
  await reportFailure(namespace, name, message);
}

/**
 * A failed reconcile is also told where users look: Ready=False (reason ReconcileError) and a
 * Warning Event. Best effort: when the apiserver is what failed, this write fails too (logged).
 */
async function reportFailure(namespace: string, name: string, message: string): Promise<void> {
  const mro = rolloutIndex.get(namespace, name);
  if (!mro?.spec) return;
  const now = new Date();
  const prev = (mro.status ?? undefined) as ModelRolloutStatus | undefined;
  const result = reconcileFailed(
    mro.spec as unknown as ModelRolloutSpec,
    prev,
    mro.metadata?.generation ?? 0,
    message,
    now,
  );
  try {
    events.record(
      mro,
      result.actions.filter(a => a.type === "event"),
      now,
    );
    const patch = statusMergePatch(prev, result.status);
    if (!patch) return;
    const written = await K8s(ModelRollout).PatchStatus({
      metadata: { name, namespace },
      status: patch,
    } as unknown as ModelRollout);
    remember(written);
    // Its watch echo is not a reason to retry at once: the backoff timer is.
    if (written.metadata?.generation === mro.metadata?.generation)
      rolloutIndex.markHandled(namespace, name, written.metadata?.resourceVersion);
  } catch (writeErr) {
    Log.warn(
      { rollout: keyOf(namespace, name), error: apiFailure(writeErr).message },
      `ModelRollout ${keyOf(namespace, name)}: cannot record the reconcile failure in status`,
    );
  }
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

/** The gate runs in `status` and the spec each runs. */
function gateRuns(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus,
): Array<["analysis" | "stepAnalysis", GateSpec | undefined]> {
  return [
    ["analysis", spec.analysis as GateSpec | undefined],
    [
      "stepAnalysis",
      status.stepAnalysis?.stepIndex !== undefined
        ? (spec.steps[status.stepAnalysis.stepIndex]?.analysis as GateSpec | undefined)
        : undefined,
    ],
  ];
}

/** Milliseconds until the next measurement of a running gate in `status` is due. */
function nextMeasurementInMs(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus,
  now: Date,
): number | undefined {
  let next: number | undefined;
  for (const [field, gate] of gateRuns(spec, status)) {
    const run = status[field] as unknown as AnalysisRunStatus | undefined;
    if (!run || !gate || run.phase !== "Running") continue;
    const { due, nextDueAt } = dueMetrics(gate, run, now);
    if (!due.length && !nextDueAt) continue;
    const ms = due.length ? 0 : Date.parse(nextDueAt!) - now.getTime();
    next = next === undefined ? ms : Math.min(next, ms);
  }
  return next;
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
  return async (promql: string, provider: GateProvider) =>
    queryPrometheus(
      clientOptionsFor(provider, {
        bearerToken: await secret(provider.bearerTokenSecretRef),
        caPem: await secret(provider.caSecretRef),
      }),
      promql,
    );
}

/** Every gate of the spec, with where it is (for messages). */
function gatesOf(spec: ModelRolloutSpec): GateToCheck[] {
  const gates: GateToCheck[] = [];
  if (spec.analysis) gates.push({ where: "analysis", spec: spec.analysis as GateSpec });
  spec.steps?.forEach((step, i) => {
    if (step.analysis)
      gates.push({ where: `steps[${i}].analysis`, spec: step.analysis as GateSpec });
  });
  return gates;
}

/**
 * Before the first weight moves, every query is run once: one Prometheus refuses for good makes
 * the spec invalid (InvalidAnalysis), one that cannot be asked now holds the rollout.
 */
async function checkGateQueries(
  spec: ModelRolloutSpec,
  ctx: TemplateContext,
  query: QueryFunction,
): Promise<Partial<Pick<Observations, "specError" | "targets">> | undefined> {
  const defaultProvider = spec.prometheus as GateProvider | undefined;
  const { invalid, unavailable } = await checkQueries(
    gatesOf(spec),
    { ...ctx, defaultProvider },
    query,
  );
  if (invalid.length) {
    return {
      specError: {
        reason: "InvalidAnalysis",
        message: `Prometheus refuses ${invalid.length === 1 ? "a query" : `${invalid.length} queries`}; fix the spec (no traffic was moved): ${invalid.join("; ")}`,
      },
    };
  }
  if (unavailable.length) {
    return {
      targets: {
        ready: false,
        reason: "PrometheusUnavailable",
        message: `cannot check the gates' queries before moving traffic: ${unavailable.join("; ")}`,
      },
    };
  }
  return undefined;
}

/** Takes the due measurements of the running gates; returns the status with updated runs. */
async function measureGates(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus,
  ctx: TemplateContext,
  now: Date,
  query: QueryFunction,
): Promise<ModelRolloutStatus> {
  const out = { ...status };
  for (const [field, gate] of gateRuns(spec, status)) {
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
  }
  return out;
}

/** Removes the annotation unless it changed meanwhile; returns the patched rollout. */
async function clearActionAnnotation(mro: ModelRollout): Promise<ModelRollout | undefined> {
  const value = mro.metadata?.annotations?.[ACTION_ANNOTATION];
  if (value === undefined) return undefined;
  const path = `/metadata/annotations/${ACTION_ANNOTATION.replace(/~/g, "~0").replace(/\//g, "~1")}`;
  try {
    // `test` first: a newer action given meanwhile is not removed unseen.
    return await K8s(ModelRollout, {
      name: mro.metadata!.name!,
      namespace: mro.metadata!.namespace!,
    }).Patch([
      { op: "test", path, value },
      { op: "remove", path },
    ]);
  } catch (err) {
    if (apiFailure(err).status !== 422) throw err;
    return undefined;
  }
}

/** What an action writes, for messages. */
function describeAction(action: Action, namespace: string): string {
  switch (action.type) {
    case "setWeight":
      return `set canary weight ${action.canaryWeight}% on ${action.target.kind} ${namespace}/${action.target.name}`;
    case "finalize":
      return `finalize (${action.outcome}) ${action.target.kind} ${namespace}/${action.target.name}`;
    case "ensureCanaryPool":
      return `create the canary InferencePool in ${namespace}`;
    case "deletePool":
      return `delete InferencePool ${namespace}/${action.pool}`;
    default:
      return action.type;
  }
}

/**
 * A refusal that retrying alone will not fix, as a Ready=False reason and a message that names
 * the object and the fix; undefined for transient failures (5xx, timeouts, network).
 */
export function actionFailure(
  err: unknown,
  action: Action,
  namespace: string,
): { reason: string; message: string } | undefined {
  const { status, message } = apiFailure(err);
  const what = `cannot ${describeAction(action, namespace)}: ${message}`;
  switch (status) {
    case 401:
      return {
        reason: "Unauthorized",
        message: `${what} (the operator's credentials were refused; check its ServiceAccount token or kubeconfig)`,
      };
    case 403:
      return {
        reason: "Forbidden",
        message: `${what} (grant the operator the rules listed in package.json pepr.rbac; see docs/install.md)`,
      };
    case 400:
    case 404:
    case 409:
    case 422:
      return {
        reason: "TargetUpdateRejected",
        message: `${what} (fix the object or the ModelRollout spec; the operator retries with backoff)`,
      };
    default:
      return undefined;
  }
}

/**
 * The rollout as the index has it (the watch's newest copy, or our last write's response), else a
 * GET. Never older than what this reconciler last wrote, so traffic cannot move backwards.
 */
async function currentRollout(namespace: string, name: string): Promise<ModelRollout | undefined> {
  const known = rolloutIndex.get(namespace, name);
  if (known) return known;
  const mro = await getRollout(namespace, name);
  if (mro) remember(mro);
  return mro;
}

async function reconcileOnce(namespace: string, name: string): Promise<void> {
  const mro = await currentRollout(namespace, name);
  if (!mro) {
    dropFromIndex(namespace, name);
    return forget(namespace, name);
  }
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
  const ctx: TemplateContext | undefined = target && {
    scope: spec.pools ? "pools" : "adapters",
    namespace,
    rollout: name,
    canary: target.canary,
    stable: target.stable,
    modelName: inspection.modelName,
    pool: inspection.pool,
    weight: status.canaryWeight ?? 0,
  };
  const query = gateQuery(namespace);
  const ready = !specError && !inspection.problem && !obs.conflict;
  if (ready && ctx && needsQueryCheck(spec, prev, obs)) {
    Object.assign(obs, await checkGateQueries(spec, ctx, query));
  }
  if (!specError && ctx && !TERMINAL.includes(String(status.phase))) {
    status = await measureGates(spec, status, ctx, now, query);
  }

  let result = reconcileRollout(spec, status, obs, now);

  const rollout = { name, namespace };
  // The object inspect() just read is the base of the first write to the same target (a second
  // GET would only cost time); later writes in this reconcile read afresh, since the first one
  // changed it. The resourceVersion precondition catches any other change.
  let unwrittenTarget = inspection.object;
  const sameTarget = (t: RolloutTarget) => {
    if (!target || t.kind !== target.kind || t.name !== target.name) return undefined;
    const known = unwrittenTarget;
    unwrittenTarget = undefined;
    return known;
  };
  const applyAction = async (action: Action): Promise<void> => {
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
        if (await t.setWeight(action.canaryWeight, sameTarget(action.target))) {
          Log.info(
            { ...log, canaryWeight: action.canaryWeight, target: action.target.name },
            `ModelRollout ${log.rollout}: canary weight ${action.canaryWeight}%`,
          );
        }
        break;
      }
      case "finalize": {
        const t = trafficTargetFor(namespace, spec, action.target);
        if (await t.finalize(action.outcome, sameTarget(action.target)))
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
  };
  let applying: Action | undefined;
  try {
    for (const action of result.actions) {
      applying = action;
      await applyAction(action);
    }
  } catch (err) {
    // A write the apiserver refuses for good (RBAC, validation, a vanished object) will not heal
    // by retrying alone: report it like a blocked target — Ready=False with the apiserver's words
    // and the fix, a Warning Event — and retry with backoff. Nothing of this step is recorded as
    // done, so the retry repeats it. Transient failures (5xx, network) only log and retry.
    const failure = applying && actionFailure(err, applying, namespace);
    if (!failure) throw err;
    Log.warn({ ...log, reason: failure.reason }, `ModelRollout ${log.rollout}: ${failure.message}`);
    result = reconcileRollout(spec, status, { ...obs, targets: { ready: false, ...failure } }, now);
  }

  // A background run still measuring when the rollout ends is concluded for the record (status and
  // describe show its outcome instead of "Running"); it no longer decides anything.
  const bg = result.status.analysis as unknown as AnalysisRunStatus | undefined;
  if (TERMINAL.includes(String(result.status.phase)) && bg?.phase === "Running" && spec.analysis) {
    result.status.analysis = concludeRun(spec.analysis as GateSpec, bg, now) as unknown as GateRun;
  }
  events.record(
    mro,
    result.actions.filter(a => a.type === "event"),
    now,
  );
  // Each write's response is the rollout's newest state: the index keeps it, so the next
  // reconcile starts from it. When the response holds nobody else's change (same generation and
  // action annotation as expected), its watch echo is recognized and skipped; otherwise the
  // other change's event must still be reconciled, so only what we read counts as handled.
  const generation = mro.metadata?.generation;
  const reflectsOnlyUs = (o: ModelRollout) =>
    o.metadata?.generation === generation &&
    o.metadata?.annotations?.[ACTION_ANNOTATION] === mro.metadata?.annotations?.[ACTION_ANNOTATION];
  let handled = mro.metadata?.resourceVersion;
  const patch = statusMergePatch(prev, result.status);
  if (patch) {
    let written: ModelRollout;
    try {
      written = await K8s(ModelRollout).PatchStatus({
        metadata: { name, namespace },
        status: patch,
      } as unknown as ModelRollout);
    } catch (err) {
      // Deleted while we worked (the index had not heard yet): nothing left to reconcile.
      if (apiFailure(err).status !== 404) throw err;
      dropFromIndex(namespace, name);
      return forget(namespace, name);
    }
    remember(written);
    if (reflectsOnlyUs(written)) handled = written.metadata?.resourceVersion;
  }
  if (result.actions.some(a => a.type === "clearActionAnnotation")) {
    // Its watch event is NOT skipped: the engine records in the next reconcile that the annotation
    // is gone (lastAction.annotationRemoved), and only then is the same action taken again.
    const cleared = await clearActionAnnotation(mro);
    if (cleared) remember(cleared);
  }
  rolloutIndex.markHandled(namespace, name, handled);

  failures.delete(keyOf(namespace, name));
  // Runs the engine just started are due too: nothing else would wake us for them.
  const nextDueMs = TERMINAL.includes(String(result.status.phase))
    ? undefined
    : nextMeasurementInMs(spec, result.status, now);
  const waits = [result.requeueAfterMs, nextDueMs].filter((ms): ms is number => ms !== undefined);
  if (waits.length) schedule(namespace, name, Math.min(...waits));
  else forget(namespace, name);
}
