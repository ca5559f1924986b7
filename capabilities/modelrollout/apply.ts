// Apply: carries out the engine's traffic actions in order (create the canary pool, set a weight,
// finalize, delete a pool) and logs what changed. Decides nothing: a failure is thrown as an
// ActionError naming the action, for the engine to judge (refusedWrite).
import { Log } from "pepr";
import type { Action } from "./engine";
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";
import { deletePool, ensureCanaryPool, trafficTargetFor, type TargetInspection } from "./targets";
import type { ModelRolloutSpec, RolloutTarget } from "./types";

export class ActionError extends Error {
  constructor(
    readonly action: Action,
    readonly cause: unknown,
  ) {
    super(`${action.type} failed: ${(cause as Error)?.message ?? String(cause)}`);
  }
}

export async function applyActions(
  mro: ModelRollout,
  spec: ModelRolloutSpec,
  target: RolloutTarget | undefined,
  inspection: TargetInspection,
  actions: readonly Action[],
): Promise<void> {
  const namespace = mro.metadata!.namespace!;
  const name = mro.metadata!.name!;
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
