// Bindings of the ModelRollout operator (one place, as in the uds-core Pepr operator); the
// reconciler beside them does the work. Watch-only: no admission webhooks are needed.
import { Capability, Log } from "pepr";
import "./kinds";
import { ModelRollout } from "./modelrollout/generated/modelrollout-v1alpha1";
import { dropFromIndex, forget, reconcileKey, remember } from "./modelrollout/reconciler";

// MODELROLLOUT_NAMESPACES (comma list) limits the operator to some namespaces; default: all.
const namespaces = process.env.MODELROLLOUT_NAMESPACES?.split(",")
  .map(ns => ns.trim())
  .filter(Boolean);

export const ModelRollouts = new Capability({
  name: "modelrollouts",
  description:
    "Progressive delivery of LLM versions between InferencePools or LoRA adapters, gated on Prometheus",
  namespaces,
});

const { When } = ModelRollouts;

When(ModelRollout)
  .IsCreatedOrUpdated()
  .Reconcile(async mro => {
    const { namespace, name } = mro.metadata ?? {};
    if (!namespace || !name) return;
    await reconcileKey(namespace, name);
  });

// Not queued (unlike Reconcile): keeps the index other rollouts' conflict checks read current.
When(ModelRollout)
  .IsCreatedOrUpdated()
  .Watch(mro => remember(mro));

When(ModelRollout)
  .IsDeleted()
  .Watch(mro => {
    const { namespace, name } = mro.metadata ?? {};
    if (!namespace || !name) return;
    forget(namespace, name);
    dropFromIndex(namespace, name);
    Log.info(
      { rollout: `${namespace}/${name}` },
      `ModelRollout ${namespace}/${name} deleted; targets are left as they are`,
    );
  });
