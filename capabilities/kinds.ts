// The Kubernetes kinds the operator and the picker speak, registered once with the fluent client.
// Their schemas are the upstream CRDs in crds/upstream; the objects are handled as plain JSON
// (GenericKind) so that fields we do not know survive a read-modify-write untouched.
import { GenericKind, RegisterKind } from "kubernetes-fluent-client";

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
  plural: string;
}

export const InferenceGroup = {
  /** Inference Extension v1alpha2 (InferencePool, InferenceModel, InferenceObjective, InferenceModelRewrite). */
  xK8s: "inference.networking.x-k8s.io",
  /** Inference Extension GA (InferencePool v1). */
  k8s: "inference.networking.k8s.io",
  /** llm-d router successors of InferenceObjective / InferenceModelRewrite. */
  llmd: "llm-d.ai",
} as const;

export class HTTPRoute extends GenericKind {}
export class InferencePoolV1alpha2 extends GenericKind {}
export class InferencePoolV1 extends GenericKind {}
export class InferenceModel extends GenericKind {}
export class InferenceObjective extends GenericKind {}
export class InferenceObjectiveLlmd extends GenericKind {}
export class InferenceModelRewrite extends GenericKind {}
export class InferenceModelRewriteLlmd extends GenericKind {}

export const gvk = {
  httpRoute: {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "HTTPRoute",
    plural: "httproutes",
  },
  inferencePoolV1alpha2: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferencePool",
    plural: "inferencepools",
  },
  inferencePoolV1: {
    group: InferenceGroup.k8s,
    version: "v1",
    kind: "InferencePool",
    plural: "inferencepools",
  },
  inferenceModel: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferenceModel",
    plural: "inferencemodels",
  },
  inferenceObjective: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferenceObjective",
    plural: "inferenceobjectives",
  },
  inferenceObjectiveLlmd: {
    group: InferenceGroup.llmd,
    version: "v1alpha2",
    kind: "InferenceObjective",
    plural: "inferenceobjectives",
  },
  inferenceModelRewrite: {
    group: InferenceGroup.xK8s,
    version: "v1alpha2",
    kind: "InferenceModelRewrite",
    plural: "inferencemodelrewrites",
  },
  inferenceModelRewriteLlmd: {
    group: InferenceGroup.llmd,
    version: "v1alpha2",
    kind: "InferenceModelRewrite",
    plural: "inferencemodelrewrites",
  },
} satisfies Record<string, GroupVersionKind>;

RegisterKind(HTTPRoute, gvk.httpRoute);
RegisterKind(InferencePoolV1alpha2, gvk.inferencePoolV1alpha2);
RegisterKind(InferencePoolV1, gvk.inferencePoolV1);
RegisterKind(InferenceModel, gvk.inferenceModel);
RegisterKind(InferenceObjective, gvk.inferenceObjective);
RegisterKind(InferenceObjectiveLlmd, gvk.inferenceObjectiveLlmd);
RegisterKind(InferenceModelRewrite, gvk.inferenceModelRewrite);
RegisterKind(InferenceModelRewriteLlmd, gvk.inferenceModelRewriteLlmd);

/** The InferencePool class of an API group. */
export function inferencePoolClass(group: string): typeof GenericKind {
  return group === InferenceGroup.k8s ? InferencePoolV1 : InferencePoolV1alpha2;
}

/** The InferenceModelRewrite class of an API group. */
export function inferenceModelRewriteClass(group: string): typeof GenericKind {
  return group === InferenceGroup.llmd ? InferenceModelRewriteLlmd : InferenceModelRewrite;
}
