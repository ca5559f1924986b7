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
import { ACTION_ANNOTATION, isTerminalPhase } from "../api/constants";
import { operatorMetrics, reconcileErrorReason } from "../operator-metrics";
import { inlineSpecOf, referencesTemplate, type TemplateRef } from "./analysis-templates";
import { ActionError, applyActions } from "./apply";
import {
  reconcileFailed,
  reconcileRollout,
  refusedWrite,
  statusMergePatch,
  type Action,
} from "./engine";
import { EventRecorder } from "./event-recorder";
import { ModelRollout } from "./generated/modelrollout-v1alpha1";
import { NotificationDelivery } from "./notifications/delivery";
import { Notifier } from "./notifications/notifier";
import { observe } from "./observe";
import { RolloutIndex } from "./rollout-index";
import { apiFailure } from "./targets";
import { wireOf, statusPatchOf } from "./types";

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
  const started = performance.now();
  const leads = leading();
  try {
    // Leadership may have been lost while this call waited for its slot.
    if (leads) await reconcileOnce(namespace, name);
  } finally {
    if (leads) operatorMetrics.observeReconcileDuration((performance.now() - started) / 1000);
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
  operatorMetrics.forgetRolloutGauges();
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
const notifier = new Notifier({
  delivery: new NotificationDelivery(),
  events,
  count: (namespace, name, notification, result) => {
    if (rolloutIndex.get(namespace, name))
      operatorMetrics.recordNotification(namespace, name, notification, result);
  },
});
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
  const dropped = rolloutIndex.drop(namespace, name, uid);
  if (dropped) operatorMetrics.forgetRollout(namespace, name);
  return dropped;
}

/**
 * A template was created, changed or deleted (`namespace`: an AnalysisTemplate's): the active
 * rollouts that reference it reconcile now — one waiting for a missing template goes on.
 */
export function reconcileTemplateUsers(ref: TemplateRef, namespace?: string): void {
  for (const mro of rolloutIndex.all()) {
    const { namespace: ns, name } = mro.metadata ?? {};
    if (!ns || !name || !mro.spec || (!ref.clusterScope && ns !== namespace)) continue;
    if (isTerminalPhase(mro.status?.phase)) continue;
    if (referencesTemplate(wireOf(mro).spec, ref)) void reconcileKey(ns, name);
  }
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
  const failure = apiFailure(err);
  const { status, message } = failure;
  if (rolloutIndex.get(namespace, name))
    operatorMetrics.recordReconcileError(namespace, name, reconcileErrorReason(failure));
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
  const prev = wireOf(mro).status;
  const result = reconcileFailed(
    inlineSpecOf(wireOf(mro).spec),
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
    const written = await K8s(ModelRollout).PatchStatus(statusPatchOf(name, namespace, patch));
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

const isEvent = (a: Action): a is Extract<Action, { type: "event" }> => a.type === "event";

async function reconcileOnce(namespace: string, name: string): Promise<void> {
  const mro = await currentRollout(namespace, name);
  if (!mro) {
    dropFromIndex(namespace, name);
    return forget(namespace, name);
  }
  const now = new Date();
  const prev = wireOf(mro).status;
  const log = { rollout: keyOf(namespace, name), generation: mro.metadata?.generation };

  const { obs, spec, target, inspection, webhooks } = await observe(mro, rolloutsIn, now);
  let result = reconcileRollout(spec, prev, obs, now);
  let warnings: Action[] = [];
  try {
    warnings = await applyActions(mro, spec, target, inspection, result.actions);
  } catch (err) {
    if (!(err instanceof ActionError)) throw err;
    const refused = refusedWrite(spec, prev, obs, { ...err, err: err.cause, namespace }, now);
    if (!refused) throw err.cause;
    Log.warn(
      { ...log, reason: refused.failure.reason },
      `ModelRollout ${log.rollout}: ${refused.failure.message}`,
    );
    result = refused.result;
    operatorMetrics.recordReconcileError(namespace, name, refused.failure.reason);
  }

  events.record(mro, [...result.actions, ...warnings].filter(isEvent), now);
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
      written = await K8s(ModelRollout).PatchStatus(statusPatchOf(name, namespace, patch));
    } catch (err) {
      // Deleted while we worked (the index had not heard yet): nothing left to reconcile.
      if (apiFailure(err).status !== 404) throw err;
      dropFromIndex(namespace, name);
      return forget(namespace, name);
    }
    remember(written);
    if (reflectsOnlyUs(written)) handled = written.metadata?.resourceVersion;
    // Only transitions that are stored are told (see notifications/delivery.ts).
    notifier.send(mro, result.status, result.actions, webhooks);
  }
  if (result.actions.some(a => a.type === "clearActionAnnotation")) {
    // Its watch event is NOT skipped: the engine records in the next reconcile that the annotation
    // is gone (lastAction.annotationRemoved), and only then is the same action taken again.
    const cleared = await clearActionAnnotation(mro);
    if (cleared) remember(cleared);
  }
  rolloutIndex.markHandled(namespace, name, handled);
  // Only while the rollout is known: a delete seen meanwhile has dropped its series for good.
  if (rolloutIndex.get(namespace, name))
    operatorMetrics.recordReconcile(namespace, name, spec, prev, result.status);

  failures.delete(keyOf(namespace, name));
  if (result.requeueAfterMs !== undefined) schedule(namespace, name, result.requeueAfterMs);
  else forget(namespace, name);
}
