// A write the apiserver refused: whether retrying alone will fix it, and what the rollout says then.
import { apiFailure } from "../../api-failure";
import { HeaderRouteError } from "../traffic/header-route";
import type { ModelRolloutSpec, ModelRolloutStatus } from "../types";
import type { Action, Observations, ReconcileResult } from "./context";
import { reconcileRollout } from "./reconcile";

/** What an action writes, for messages. */
function describeAction(action: Action, namespace: string): string {
  switch (action.type) {
    case "setWeight":
      return `set canary weight ${action.canaryWeight}% on ${action.target.kind} ${namespace}/${action.target.name}`;
    case "finalize":
      return `finalize (${action.outcome}) ${action.target.kind} ${namespace}/${action.target.name}`;
    case "setHeaderRoute":
      return `write the header route into ${action.target.kind} ${namespace}/${action.target.name}`;
    case "removeHeaderRoute":
      return `remove the header route from ${action.target.kind} ${namespace}/${action.target.name}`;
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
  // The route cannot take the header rule: only a change of the route or the spec helps.
  if (err instanceof HeaderRouteError)
    return {
      reason: err.reason,
      message: `cannot ${describeAction(action, namespace)}: ${err.message}`,
    };
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
 * A write refused for good (RBAC, validation, a vanished object) will not heal by retrying alone:
 * the rollout reports it like a blocked target — Ready=False with the apiserver's words and the
 * fix, a Warning Event — and nothing of this step is recorded as done, so the retry repeats it.
 * Undefined for a transient failure (the reconciler retries with backoff).
 */
export function refusedWrite(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  obs: Observations,
  refused: { err: unknown; action: Action; namespace: string },
  now: Date,
): { result: ReconcileResult; failure: { reason: string; message: string } } | undefined {
  const failure = actionFailure(refused.err, refused.action, refused.namespace);
  if (!failure) return undefined;
  const result = reconcileRollout(
    spec,
    status,
    { ...obs, targets: { ready: false, ...failure } },
    now,
  );
  return { result, failure };
}
