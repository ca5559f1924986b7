// Apply: carries out the engine's traffic actions in order (create the canary pool, set a weight,
// finalize, write or remove the header route, delete a pool, load or unload the canary adapter on
// pods) and logs what changed. Decides nothing: a failure is thrown as an
// ActionError naming the action, for the engine to judge (refusedWrite).
import { Log } from "pepr";
import type { Action } from "./engine";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";
import { headerRuleName } from "./traffic/header-rule-name";
import { durationMs } from "../duration";
import { DEFAULT_POD_TIMEOUT_MS } from "./observe";
import {
  deletePool,
  ensureCanaryPool,
  loadAdapter,
  trafficTargetFor,
  unloadAdapter,
  type TargetInspection,
} from "./targets";
import type { ModelRolloutSpec, RolloutTarget } from "./types";

export class ActionError extends Error {
  constructor(
    readonly action: Action,
    readonly cause: unknown,
  ) {
    super(`${action.type} failed: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

function podTimeout(spec: ModelRolloutSpec): number {
  const timeout = spec.adapters?.readiness?.timeout;
  return timeout ? durationMs(timeout) : DEFAULT_POD_TIMEOUT_MS;
}

type AdapterAction = Extract<Action, { type: "loadAdapter" | "unloadAdapter" }>;

/**
 * Loads or unloads the canary adapter on each pod, best effort: a pod that refuses never stops
 * the reconcile (its gates are still recorded and a rollback still happens; a load is retried on
 * the next reconcile, as the pod still lacks the adapter and the weight stays held). Each failure
 * comes back as a Warning Event and is logged.
 */
async function adapterCalls(
  action: AdapterAction,
  timeoutMs: number,
  say: (fields: Record<string, unknown>, what: string) => void,
): Promise<Action[]> {
  const loading = action.type === "loadAdapter";
  const warnings: Action[] = [];
  for (const e of action.endpoints) {
    try {
      if (loading) await loadAdapter(e, action.adapter, action.path, timeoutMs);
      else await unloadAdapter(e, action.adapter, timeoutMs);
      const what = loading
        ? `loaded adapter ${action.adapter} on`
        : `unloaded adapter ${action.adapter} from`;
      say({ adapter: action.adapter, pod: e.key }, `${what} ${e.key}`);
    } catch (err) {
      const message =
        `cannot ${loading ? "load" : "unload"} canary adapter ${action.adapter} on ${e.key}: ` +
        `${(err as Error).message}` +
        (loading ? "; the weight stays held until the pod serves it" : "");
      Log.warn({ adapter: action.adapter, pod: e.key }, message);
      warnings.push({
        type: "event",
        eventType: "Warning",
        reason: loading ? "AdapterLoadFailed" : "AdapterUnloadFailed",
        message,
      });
    }
  }
  return warnings;
}

/**
 * Carries out `actions` in order; a failed write throws an ActionError. Returns the Warning
 * Events of best-effort calls that failed (adapter loads and unloads on pods).
 */
export async function applyActions(
  mro: ModelRollout,
  spec: ModelRolloutSpec,
  target: RolloutTarget | undefined,
  inspection: TargetInspection,
  actions: readonly Action[],
): Promise<Action[]> {
  const warnings: Action[] = [];
  const namespace = mro.metadata!.namespace!;
  const name = mro.metadata!.name!;
  const rollout = { name, namespace };
  const log = { rollout: `${namespace}/${name}`, generation: mro.metadata?.generation };
  const say = (fields: Record<string, unknown>, what: string) =>
    Log.info({ ...log, ...fields }, `ModelRollout ${log.rollout}: ${what}`);
  // The object inspect() just read is the base of the first write to the same target (a second
  // GET would only cost time); later writes in this reconcile read afresh, since the first one
  // changed it. The resourceVersion precondition catches any other change.
  // An action that wrote nothing leaves it fresh for the next one.
  let unwritten = inspection.object;
  const same = (t: RolloutTarget) => !!target && t.kind === target.kind && t.name === target.name;
  const known = (t: RolloutTarget) => (same(t) ? unwritten : undefined);
  const wrote = (t: RolloutTarget, written: boolean) => {
    if (written && same(t)) unwritten = undefined;
    return written;
  };
  for (const action of actions) {
    try {
      switch (action.type) {
        case "ensureCanaryPool": {
          const created = await ensureCanaryPool(rollout, spec);
          if (created.length) say({ created }, `created ${created.join(", ")}`);
          break;
        }
        case "setWeight": {
          const t = trafficTargetFor(namespace, spec, action.target);
          if (wrote(action.target, await t.setWeight(action.canaryWeight, known(action.target))))
            say(
              { canaryWeight: action.canaryWeight, target: action.target.name },
              `canary weight ${action.canaryWeight}%`,
            );
          break;
        }
        case "finalize": {
          const t = trafficTargetFor(namespace, spec, action.target);
          if (wrote(action.target, await t.finalize(action.outcome, known(action.target))))
            say({ outcome: action.outcome }, `finalized (${action.outcome})`);
          break;
        }
        case "setHeaderRoute":
        case "removeHeaderRoute": {
          const t = trafficTargetFor(namespace, spec, action.target);
          if (!t.setHeaderRoute) throw new Error("a header route needs an HTTPRoute target");
          const match = action.type === "setHeaderRoute" ? action.match : [];
          const ruleName = headerRuleName(name);
          if (wrote(action.target, await t.setHeaderRoute(ruleName, match, known(action.target))))
            say(
              { headerRoute: ruleName, match },
              match.length
                ? `header route ${ruleName} written`
                : `header route ${ruleName} removed`,
            );
          break;
        }
        case "loadAdapter":
        case "unloadAdapter":
          warnings.push(...(await adapterCalls(action, podTimeout(spec), say)));
          break;
        case "deletePool":
          if (await deletePool(rollout, spec, action.pool, action.onlyIfManaged))
            say({ pool: action.pool }, `deleted pool ${action.pool}`);
          break;
        default:
          break;
      }
    } catch (err) {
      throw new ActionError(action, err);
    }
  }
  return warnings;
}
