// Hands a reconcile's notify actions to the delivery queue (after the status write) and reports
// how each ended: a counter (operator-metrics.ts) and, when it was not delivered, a Warning Event
// on the rollout, so that a failure never stays in the log only.
import { Log } from "pepr";
import type { Action } from "../engine";
import type { EventRecorder } from "../event-recorder";
import type { ModelRollout } from "../generated/modelrollout-v1alpha1";
import { wireOf, type ModelRolloutStatus } from "../types";
import type { NotificationDelivery, Outcome } from "./delivery";
import type { NotifiedRollout, NotifyAction } from "./payload";
import type { Webhook } from "./webhooks";

export interface NotifierDeps {
  delivery: NotificationDelivery;
  events: Pick<EventRecorder, "record">;
  /** Counts an ended notification (only while the rollout is known: a deleted one has no series). */
  count: (namespace: string, name: string, notification: string, result: Outcome["result"]) => void;
}

export class Notifier {
  constructor(private readonly deps: NotifierDeps) {}

  /** Queues the notify actions of one reconcile whose status (`status`) is stored. */
  send(
    mro: ModelRollout,
    status: ModelRolloutStatus,
    actions: readonly Action[],
    webhooks: Map<string, Webhook> | undefined,
  ): void {
    const notifies = actions.filter((a): a is NotifyAction => a.type === "notify");
    if (!notifies.length) return;
    const rollout: NotifiedRollout = {
      namespace: mro.metadata!.namespace!,
      name: mro.metadata!.name!,
      uid: mro.metadata?.uid ?? "",
      steps: wireOf(mro).spec.steps?.length ?? 0,
      target: status.target,
    };
    for (const action of notifies) {
      for (const name of action.notifications) {
        // Unusable (no labelled Secret, a refused URL): NotificationsReady=False says why.
        const webhook = webhooks?.get(name);
        if (webhook)
          this.deps.delivery.enqueue({ rollout, webhook, action }, outcome =>
            this.#ended(mro, rollout, action, name, outcome),
          );
      }
    }
  }

  #ended(
    mro: ModelRollout,
    rollout: NotifiedRollout,
    action: NotifyAction,
    notification: string,
    outcome: Outcome,
  ): void {
    const { namespace, name } = rollout;
    this.deps.count(namespace, name, notification, outcome.result);
    const fields = {
      rollout: `${namespace}/${name}`,
      notification,
      transition: action.transition,
      result: outcome.result,
      attempts: outcome.attempts,
    };
    if (outcome.result === "Delivered") {
      Log.debug(
        fields,
        `ModelRollout ${namespace}/${name}: notification ${notification} delivered`,
      );
      return;
    }
    const message =
      `notification ${notification}: ${action.transition} (steps[${action.step}]) not delivered ` +
      `(${outcome.result}): ${outcome.message}; check the webhook's receiver (the rollout goes on)`;
    Log.warn(fields, `ModelRollout ${namespace}/${name}: ${message}`);
    this.deps.events.record(
      mro,
      [{ type: "event", eventType: "Warning", reason: "NotificationFailed", message }],
      new Date(),
    );
  }
}
