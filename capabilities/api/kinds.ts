// The upstream Kubernetes kinds the operator reads and writes, as the fluent client's model
// classes. Each class is generated from its CRD (generated/, see generate.sh) and registers its
// group/version/kind when its module loads. The client returns and sends the objects as plain
// JSON, so fields these classes do not name survive a read-modify-write untouched; objects.ts
// gives their wire types (ApiObject).
import { HTTPRoute } from "./generated/httproute-v1";
import { InferenceModel } from "./generated/inferencemodel-v1alpha2";
import { InferenceModelRewrite } from "./generated/inferencemodelrewrite-v1alpha2";
import { InferenceModelRewriteLlmd } from "./generated/inferencemodelrewrite-v1alpha2-llmd";
import { InferenceObjective } from "./generated/inferenceobjective-v1alpha2";
import { InferenceObjectiveLlmd } from "./generated/inferenceobjective-v1alpha2-llmd";
import { InferencePoolV1 } from "./generated/inferencepool-v1";
import { InferencePoolV1alpha2 } from "./generated/inferencepool-v1alpha2";
import { InferenceGroup } from "./constants";

export {
  HTTPRoute,
  InferenceModel,
  InferenceModelRewrite,
  InferenceModelRewriteLlmd,
  InferenceObjective,
  InferenceObjectiveLlmd,
  InferencePoolV1,
  InferencePoolV1alpha2,
};

/** The InferencePool class of an API group (v1alpha2 unless inference.networking.k8s.io). */
export function inferencePoolClass(
  group: string,
): typeof InferencePoolV1 | typeof InferencePoolV1alpha2 {
  return group === InferenceGroup.k8s ? InferencePoolV1 : InferencePoolV1alpha2;
}

/** The InferenceModelRewrite class of an API group (x-k8s.io unless llm-d.ai). */
export function inferenceModelRewriteClass(group: string): typeof InferenceModelRewrite {
  return group === InferenceGroup.llmd ? InferenceModelRewriteLlmd : InferenceModelRewrite;
}

/** The InferenceObjective class of an API group (x-k8s.io unless llm-d.ai). */
export function inferenceObjectiveClass(group: string): typeof InferenceObjective {
  return group === InferenceGroup.llmd ? InferenceObjectiveLlmd : InferenceObjective;
}
