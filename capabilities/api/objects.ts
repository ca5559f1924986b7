// The upstream objects the operator, the picker and the demo read and write, as they are on the wire:
// the classes generated from crds/upstream (generated/, see generate.sh) through ApiObject (wire.ts:
// dates and enums as strings, unknown fields allowed through). Their parts are named by indexed
// access on the generated types, never declared again, so a CRD update reaches every user.
// Its imports are type-only: importing it loads nothing else (no kubernetes-fluent-client, no
// RegisterKind); isRecord is its one function.
import type { GenericKind } from "kubernetes-fluent-client";
import type { HTTPRoute as HTTPRouteKind } from "./generated/httproute-v1";
import type { InferenceModel as InferenceModelKind } from "./generated/inferencemodel-v1alpha2";
import type { InferenceModelRewrite as InferenceModelRewriteKind } from "./generated/inferencemodelrewrite-v1alpha2";
import type { InferenceObjective as InferenceObjectiveKind } from "./generated/inferenceobjective-v1alpha2";
import type { InferencePoolV1 as InferencePoolV1Kind } from "./generated/inferencepool-v1";
import type { InferencePoolV1alpha2 as InferencePoolV1alpha2Kind } from "./generated/inferencepool-v1alpha2";
import type { ApiObject } from "./wire";

export type { ApiObject, ObjectMeta } from "./wire";

/** An object of any of these kinds whose spec is handled as an opaque copy. */
export type AnyApiObject = ApiObject<GenericKind> & { spec?: Record<string, unknown> };

type Item<T> = NonNullable<T> extends readonly (infer U)[] ? U : never;

/** gateway.networking.k8s.io/v1 HTTPRoute. */
export type HTTPRoute = ApiObject<HTTPRouteKind>;
export type HTTPRouteSpec = NonNullable<HTTPRoute["spec"]>;
export type HTTPRouteRule = Item<HTTPRouteSpec["rules"]>;
export type HTTPBackendRef = Item<HTTPRouteRule["backendRefs"]>;
export type HTTPRouteMatch = Item<HTTPRouteRule["matches"]>;
export type HTTPPathMatch = NonNullable<HTTPRouteMatch["path"]>;
export type HTTPHeaderMatch = Item<HTTPRouteMatch["headers"]>;
export type HTTPQueryParamMatch = Item<HTTPRouteMatch["queryParams"]>;
export type ParentReference = Item<HTTPRouteSpec["parentRefs"]>;

/** InferencePool of inference.networking.x-k8s.io/v1alpha2 (selector map, targetPortNumber). */
export type InferencePoolV1alpha2 = ApiObject<InferencePoolV1alpha2Kind>;
/** InferencePool of inference.networking.k8s.io/v1 (selector.matchLabels, targetPorts). */
export type InferencePoolV1 = ApiObject<InferencePoolV1Kind>;
export type InferencePool = InferencePoolV1alpha2 | InferencePoolV1;

/** inference.networking.x-k8s.io/v1alpha2 InferenceModel. */
export type InferenceModel = ApiObject<InferenceModelKind>;
export type TargetModel = Item<NonNullable<InferenceModel["spec"]>["targetModels"]>;
export type Criticality = NonNullable<NonNullable<InferenceModel["spec"]>["criticality"]>;

/** InferenceModelRewrite (v1alpha2 of inference.networking.x-k8s.io and llm-d.ai: one schema). */
export type InferenceModelRewrite = ApiObject<InferenceModelRewriteKind>;
export type RewriteRule = Item<NonNullable<InferenceModelRewrite["spec"]>["rules"]>;
export type RewriteTarget = Item<RewriteRule["targets"]>;

/** InferenceObjective (v1alpha2 of inference.networking.x-k8s.io and llm-d.ai: one schema). */
export type InferenceObjective = ApiObject<InferenceObjectiveKind>;

/** spec.poolRef of an InferenceModel, InferenceModelRewrite or InferenceObjective. */
export type PoolRef = NonNullable<InferenceModel["spec"]>["poolRef"];

/** A JSON object (not null, not an array): what a decoded object or map field must be. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
