// Adapter readiness (spec.adapters.readiness): before the canary weight rises, every Ready pod of
// the model's InferencePool must list the canary adapter in GET /v1/models. The reconciler asks
// the pods (observe); here, purely, the hold, the loads and the unload after a rollback.
//
// Bookkeeping in status.adapterReadiness.loadedOn, written before the operator acts: a pod that
// lacks the adapter is first recorded there (one status write), and only a recorded pod is loaded
// in a later call. So a crash or a failed load never leaves a pod the operator loaded unrecorded,
// and the unload after a rollback touches only recorded pods (an adapter the user deployed stays).
import { jsonEqual } from "../fingerprint";
import { findCondition } from "./conditions";
import {
  AdapterEndpoint,
  ConditionTypes,
  Ctx,
  Observations,
  event,
  isActive,
  isTerminal,
  requeue,
} from "./context";
import { targetOf } from "./spec";
import type { ModelRolloutSpec, ModelRolloutStatus, RolloutTarget } from "../types";

/** The reason of Progressing=False while a pod lacks the canary adapter. */
export const ADAPTER_NOT_READY = "AdapterNotReady";
/** Pods named in a message at most; the rest are counted. */
const MAX_PODS_NAMED = 5;
/** While held, look again after the time held so far, between these bounds. */
const HOLD_RECHECK_MIN_MS = 2_000;
const HOLD_RECHECK_MAX_MS = 30_000;

/**
 * Whether the reconciler must ask the pool's pods before this reconcile: readiness is asked for
 * and the rollout is active (or is about to start: a new target, a retry).
 */
export function needsAdapterCheck(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Pick<Observations, "action">,
): boolean {
  const target = targetOf(spec);
  if (!spec.adapters?.readiness || !target) return false;
  const st = status ?? {};
  if (!st.target || !jsonEqual(st.target, target)) return true;
  if (isTerminal(st.phase))
    return (obs.action === "retry" && st.phase !== "Succeeded") || unloadPending(spec, st);
  return true;
}

function listPods(keys: string[]): string {
  const named = keys.slice(0, MAX_PODS_NAMED).join(", ");
  const more = keys.length - MAX_PODS_NAMED;
  return more > 0 ? `${named} and ${more} more` : named;
}

function why(e: AdapterEndpoint): string {
  return e.serving === false
    ? `${e.key} (not in /v1/models)`
    : `${e.key} (${e.error ?? "no answer"})`;
}

/**
 * Probes before the first weight wait while spec.adapters.readiness says a Ready pod does not serve
 * the canary adapter yet: the probe would only see the 404 of an adapter the operator is about to
 * load (or the user to deploy), and the hold already keeps the weight where it is.
 */
export function probesWaitForAdapter(
  spec: ModelRolloutSpec,
  obs: Pick<Observations, "adapterReadiness">,
): boolean {
  if (!spec.adapters?.readiness) return false;
  const seen = obs.adapterReadiness;
  return (
    !seen ||
    !!seen.problem ||
    !seen.endpoints.length ||
    seen.endpoints.some(e => e.serving !== true)
  );
}

/**
 * Why the canary may not go from the current weight to `nextWeight` yet, or undefined when it
 * may: only a rise is checked, and it needs every Ready pod to answer that it serves the adapter.
 */
export function adapterNotReady(c: Ctx, nextWeight: number): string | undefined {
  const readiness = c.spec.adapters?.readiness;
  if (!readiness || nextWeight <= (c.st.canaryWeight ?? 0)) return undefined;
  const adapter = c.target.canary;
  const seen = c.obs.adapterReadiness;
  if (!seen) return `adapter readiness of canary ${adapter} not checked yet`;
  const pool = `InferencePool ${seen.pool}`;
  if (seen.problem)
    return `cannot check canary adapter ${adapter} on the pods of ${pool}: ${seen.problem}`;
  if (!seen.endpoints.length)
    return `canary adapter ${adapter}: ${pool} has no Ready pod to serve it; the weight stays until one is Ready`;
  const lacking = seen.endpoints.filter(e => e.serving !== true);
  if (!lacking.length) return undefined;
  const fix = readiness.load
    ? "the operator loads it there (spec.adapters.readiness.load)"
    : "load it there (vLLM --lora-modules or POST /v1/load_lora_adapter) or set spec.adapters.readiness.load";
  const lackingLoaded = lacking.filter(e => e.serving === false).map(e => e.key);
  return (
    `canary adapter ${adapter} is not served by ${lacking.length} of ${seen.endpoints.length} Ready pods of ${pool}: ` +
    `${listPods(lacking.map(why))}; ${fix}` +
    (readiness.load && lackingLoaded.length < lacking.length
      ? " (unreachable pods cannot be loaded)"
      : "")
  );
}

/** Hold bookkeeping: re-check soon, and a Warning Event when the hold starts or its pods change. */
export function holdForAdapter(c: Ctx, message: string) {
  c.waiting = { kind: "Adapter", message };
  const before = findCondition(c.prev, ConditionTypes.Progressing);
  const since = before?.reason === ADAPTER_NOT_READY ? Date.parse(before.lastTransitionTime) : NaN;
  const held = Number.isFinite(since) ? Math.max(0, c.now.getTime() - since) : 0;
  requeue(c, Math.min(HOLD_RECHECK_MAX_MS, Math.max(HOLD_RECHECK_MIN_MS, held)));
}

/** A Normal Event when a weight rises after an adapter hold (also when it completes at once). */
export function adapterReadyEvent(c: Ctx) {
  const before = findCondition(c.prev, ConditionTypes.Progressing);
  if (before?.reason !== ADAPTER_NOT_READY || c.waiting?.kind === "Adapter") return;
  if (!c.traffic.some(a => a.type === "setWeight" && a.canaryWeight > (c.prev.canaryWeight ?? 0)))
    return;
  event(
    c,
    "Normal",
    "AdapterReady",
    `canary adapter ${c.target.canary} is served by every Ready pod of the pool; the weight rises`,
  );
}

/**
 * Loads while the rollout is active and spec.adapters.readiness.load asks: a reachable pod that
 * lacks the canary adapter is recorded in status first (that write brings the next reconcile),
 * and loaded once recorded; the hold's re-check (2-30 s) looks again and retries a failed load.
 */
export function loadAdapters(c: Ctx) {
  const load = c.spec.adapters?.readiness?.load;
  const seen = c.obs.adapterReadiness;
  if (!load || !seen || !isActive(c)) return;
  const record = (c.st.adapterReadiness ??= {});
  // A recorded pod gone from the pool's Ready pods took the adapter with it (bounds the list).
  if (record.loadedOn && !seen.problem) {
    const present = new Set(seen.endpoints.map(e => e.key));
    record.loadedOn = record.loadedOn.filter(k => present.has(k));
    if (!record.loadedOn.length) delete record.loadedOn;
  }
  const lacking = seen.endpoints.filter(e => e.serving === false);
  if (!lacking.length) return;
  const loadedOn = new Set(record.loadedOn ?? []);
  const recorded = lacking.filter(e => loadedOn.has(e.key));
  const fresh = lacking.filter(e => !loadedOn.has(e.key));
  if (fresh.length) {
    record.loadedOn = [...loadedOn, ...fresh.map(e => e.key)].sort();
    event(
      c,
      "Normal",
      "AdapterLoading",
      `loading canary adapter ${c.target.canary} (lora_path ${load.path}) on ${listPods(fresh.map(e => e.key))}`,
    );
  }
  if (recorded.length) {
    c.traffic.unshift({
      type: "loadAdapter",
      adapter: c.target.canary,
      path: load.path,
      endpoints: recorded.map(e => ({ key: e.key, url: e.url })),
    });
  }
}

/** Retry the unload after a rollback for this long after the rollout finished, then give up. */
const UNLOAD_RETRY_FOR_MS = 10 * 60_000;

/** Whether recorded pods still wait for the unload after a rollback (Failed or Aborted). */
function unloadPending(spec: ModelRolloutSpec, st: ModelRolloutStatus): boolean {
  const load = spec.adapters?.readiness?.load;
  const rolledBack = st.phase === "Failed" || st.phase === "Aborted";
  return (
    !!load &&
    load.unloadOnRollback !== false &&
    rolledBack &&
    !!st.adapterReadiness?.loadedOn?.length
  );
}

/**
 * After a rollback (Failed or Aborted), with unloadOnRollback (default true): unload the canary
 * adapter from the recorded pods that still list it. A pod leaves the record only once it is seen
 * without the adapter or is gone from the pool's Ready pods: one that did not answer or whose
 * unload failed stays recorded and is tried again on later reconciles, for UNLOAD_RETRY_FOR_MS
 * after the rollback; then a Warning Event names the pods left.
 */
export function unloadAfterRollback(c: Ctx) {
  if (!unloadPending(c.spec, c.st)) return;
  const record = c.st.adapterReadiness!;
  const seen = c.obs.adapterReadiness;
  let keep = record.loadedOn!;
  let serving: AdapterEndpoint[] = [];
  if (seen && !seen.problem) {
    const byKey = new Map(seen.endpoints.map(e => [e.key, e]));
    keep = keep.filter(k => byKey.has(k) && byKey.get(k)!.serving !== false);
    serving = keep.map(k => byKey.get(k)!).filter(e => e.serving === true);
  }
  if (serving.length) {
    c.traffic.push({
      type: "unloadAdapter",
      adapter: c.target.canary,
      endpoints: serving.map(e => ({ key: e.key, url: e.url })),
    });
    event(
      c,
      "Normal",
      "AdapterUnloaded",
      `unloading canary adapter ${c.target.canary} after the rollback from ${listPods(serving.map(e => e.key))} (loaded by the operator)`,
    );
  }
  const since = Date.parse(c.st.finishedAt ?? "");
  if (keep.length && !(c.now.getTime() - since <= UNLOAD_RETRY_FOR_MS)) {
    event(
      c,
      "Warning",
      "AdapterUnloadGaveUp",
      `canary adapter ${c.target.canary} may still be loaded on ${listPods(keep)}: not unloaded within ${UNLOAD_RETRY_FOR_MS / 60_000} min of the rollback; unload it there (POST /v1/unload_lora_adapter)`,
    );
    keep = [];
  }
  if (!keep.length) delete record.loadedOn;
  else {
    record.loadedOn = keep;
    // Look again soon after the rollback (to see the unload done), then every 30 s at most.
    const after = Number.isFinite(since) ? c.now.getTime() - since : 0;
    requeue(c, Math.min(HOLD_RECHECK_MAX_MS, Math.max(HOLD_RECHECK_MIN_MS, after)));
  }
}

/**
 * A new target: the record is about the old canary adapter. Unless the rollout had succeeded (the
 * old canary then serves the traffic) or it stays in use, unload it from its recorded pods that
 * answer (unloadOnRollback, default true) and name those it may be left on, then forget the record.
 */
export function forgetAdapterRecord(c: Ctx, old: RolloutTarget | undefined, oldPhase?: string) {
  const loadedOn = c.st.adapterReadiness?.loadedOn ?? [];
  if (old && old.canary === c.target.canary) return;
  delete c.st.adapterReadiness;
  const inUse = oldPhase === "Succeeded" || old?.canary === c.target.stable;
  const load = c.spec.adapters?.readiness?.load;
  if (!old || !loadedOn.length || inUse || load?.unloadOnRollback === false) return;
  const recorded = new Set(loadedOn);
  // `serving` is about the new canary here; any answer says the pod is reachable.
  const reachable = (c.obs.adapterReadiness?.endpoints ?? []).filter(
    e => recorded.has(e.key) && e.serving !== undefined,
  );
  if (reachable.length) {
    c.traffic.push({
      type: "unloadAdapter",
      adapter: old.canary,
      endpoints: reachable.map(e => ({ key: e.key, url: e.url })),
    });
    event(
      c,
      "Normal",
      "AdapterUnloaded",
      `unloading the old canary adapter ${old.canary} after the target changed from ${listPods(reachable.map(e => e.key))} (loaded by the operator)`,
    );
  }
  const left = loadedOn.filter(k => !reachable.some(e => e.key === k));
  if (left.length)
    event(
      c,
      "Warning",
      "AdapterUnloadGaveUp",
      `the old canary adapter ${old.canary} may still be loaded on ${listPods(left)} (not reachable when the target changed); unload it there (POST /v1/unload_lora_adapter)`,
    );
}
