// Bindings of the ModelRollout operator (one place, as in the uds-core Pepr operator); the
// reconciler beside them does the work. Watch-only: no admission webhooks are needed.
import "./kubeconfig-cache";
import { Capability, Log } from "pepr";
import "./api/kinds";
import { AnalysisTemplate } from "./modelrollout/generated/analysistemplate-v1alpha1";
import { ClusterAnalysisTemplate } from "./modelrollout/generated/clusteranalysistemplate-v1alpha1";
import { ModelRollout } from "./modelrollout/generated/modelrollout-v1alpha1";
import {
  alreadyReconciled,
  dropFromIndex,
  forget,
  reconcileKey,
  reconcileTemplateUsers,
  remember,
} from "./modelrollout/reconciler";

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

// One watch for creates and updates (Pepr opens a watch per binding, and every ModelRollout event
// costs each of them). Not Pepr's Reconcile queue: reconcileKey serializes per rollout itself, and
// each reconcile reads the newest copy from the index, so event order cannot move traffic back.
When(ModelRollout)
  .IsCreatedOrUpdated()
  .Watch(mro => {
    const { namespace, name } = mro.metadata ?? {};
    if (!namespace || !name) return;
    remember(mro);
    // The echo of our own status write: already reconciled (timers drive what is due next).
    if (alreadyReconciled(mro)) return;
    void reconcileKey(namespace, name);
  });

When(ModelRollout)
  .IsDeleted()
  .Watch(mro => {
    const { namespace, name } = mro.metadata ?? {};
    if (!namespace || !name) return;
    // A late delete of an older object of this name leaves the current one (and its timer) alone.
    if (!dropFromIndex(namespace, name, mro.metadata?.uid)) return;
    forget(namespace, name);
    Log.info(
      { rollout: `${namespace}/${name}` },
      `ModelRollout ${namespace}/${name} deleted; targets are left as they are`,
    );
  });

// Templates referenced by gates: a rollout waiting for one goes on once it exists, and a change
// restarts the gates that use it (the reconciler reads the templates afresh each time).
for (const [model, clusterScope] of [
  [AnalysisTemplate, false],
  [ClusterAnalysisTemplate, true],
] as const) {
  const onChange = (t: AnalysisTemplate | ClusterAnalysisTemplate) => {
    const { namespace, name } = t.metadata ?? {};
    if (name) reconcileTemplateUsers({ templateName: name, clusterScope }, namespace);
  };
  When(model).IsCreatedOrUpdated().Watch(onChange);
  When(model).IsDeleted().Watch(onChange);
}
