// Get, list and create on the apiserver, with the answers that are no errors here read as values:
// 404 on a get is "no such object", 404 on a list is "kind not served", 409 on a create is "exists".
import { GenericKind, K8s } from "kubernetes-fluent-client";
import { apiFailure } from "../../api-failure";
import { onWire } from "../../api/wire";
import type { KubeObject } from "../traffic/canarypool";

export type Model = typeof GenericKind;

/** The object, as it is on the wire; undefined when there is none (404). */
export async function getOrUndefined<M extends Model>(model: M, namespace: string, name: string) {
  try {
    return onWire(await K8s(model).InNamespace(namespace).Get(name));
  } catch (err) {
    if (apiFailure(err).status === 404) return undefined;
    throw err;
  }
}

/** Every object of a kind in a namespace, as on the wire; [] when the kind is not served (404). */
export async function listOrEmpty<M extends Model>(model: M, namespace: string) {
  try {
    return (await K8s(model).InNamespace(namespace).Get()).items.map(onWire);
  } catch (err) {
    // A cluster may lack one of the groups (e.g. no llm-d CRDs): nothing there.
    if (apiFailure(err).status === 404) return [];
    throw err;
  }
}

export async function createIfAbsent(model: Model, obj: KubeObject): Promise<boolean> {
  try {
    await K8s(model).Create(obj as GenericKind);
    return true;
  } catch (err) {
    if (apiFailure(err).status === 409) return false;
    throw err;
  }
}
