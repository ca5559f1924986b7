// Apply: carries out the engine's traffic actions in order (create the canary pool, set a weight,
// finalize, delete a pool, load or unload the canary adapter on pods) and logs what changed. Decides nothing: a failure is thrown as an
// ActionError naming the action, for the engine to judge (refusedWrite).
import { Log } from "pepr";
import type { Action } from "./engine";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";
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
import { wireOf, type ModelRolloutSpec, type RolloutTarget } from "./types";

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

/**
 * Best effort: a rollback is never held up by a pod that cannot unload (the traffic is already
 * back on stable); a failure is logged as a warning.
 */
async function unloadEverywhere(
  action: Extract<Action, { type: "unloadAdapter" }>,
  timeoutMs: number,
  say: (fields: Record<string, unknown>, what: string) => void,
) {
  for (const e of action.endpoints) {
    try {
      await unloadAdapter(e, action.adapter, timeoutMs);
      say(
        { adapter: action.adapter, pod: e.key },
        `unloaded adapter ${action.adapter} from ${e.key}`,
      );
    } catch (err) {
      Log.warn(
        { adapter: action.adapter, pod: e.key, error: (err as Error).message },
        `cannot unload adapter ${action.adapter}: ${(err as Error).message}`,
      );
    }
  }
}

export async function applyActions(
  mro: ModelRollout,
  target: RolloutTarget | undefined,
  inspection: TargetInspection,
  actions: readonly Action[],
): Promise<void> {
  const namespace = mro.metadata!.namespace!;
  const name = mro.metadata!.name!;
  const spec = wireOf(mro).spec;
  const rollout = { name, namespace };
  const log = { rollout: `${namespace}/${name}`, generation: mro.metadata?.generation };
  const say = (fields: Record<string, unknown>, what: string) =>
    Log.info({ ...log, ...fields }, `ModelRollout ${log.rollout}: ${what}`);
  // The object inspect() just read is the base of the first write to the same target (a second
  // GET would only cost time); later writes in this reconcile read afresh, since the first one
  // changed it. The resourceVersion precondition catches any other change.
  let unwritten = inspection.object;
  const known = (t: RolloutTarget) => {
    if (!target || t.kind !== target.kind || t.name !== target.name) return undefined;
    const object = unwritten;
    unwritten = undefined;
    return object;
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
          if (await t.setWeight(action.canaryWeight, known(action.target)))
            say(
              { canaryWeight: action.canaryWeight, target: action.target.name },
              `canary weight ${action.canaryWeight}%`,
            );
          break;
        }
        case "finalize": {
          const t = trafficTargetFor(namespace, spec, action.target);
          if (await t.finalize(action.outcome, known(action.target)))
            say({ outcome: action.outcome }, `finalized (${action.outcome})`);
          break;
        }
        case "loadAdapter":
          for (const e of action.endpoints) {
            await loadAdapter(e, action.adapter, action.path, podTimeout(spec));
            say(
              { adapter: action.adapter, pod: e.key },
              `loaded adapter ${action.adapter} on ${e.key}`,
            );
          }
          break;
        case "unloadAdapter":
          await unloadEverywhere(action, podTimeout(spec), say);
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
}
