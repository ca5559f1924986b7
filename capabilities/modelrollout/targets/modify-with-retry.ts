// Write a target with optimistic concurrency: read it, transform it, write back only what changed —
// weights and whole weighted-list entries, as a JSON Patch (traffic/weight-patch.ts), so every
// other field stays as Git has it — behind a resourceVersion precondition (a JSON Patch `test` op)
// so that a concurrent edit by another client is never lost: on a conflict we read again and redo
// the transform on the fresh object.
import { GenericKind, K8s } from "kubernetes-fluent-client";
import { apiFailure } from "../../api-failure";
import { weightPatch } from "../traffic/weight-patch";
import type { Model } from "./kube-objects";

/**
 * Other writers kept changing the object for every attempt: transient, retried with backoff like
 * a network error, and not reported as a problem with the object or the spec.
 */
export class TargetContendedError extends Error {
  constructor(kindName: string, namespace: string, name: string, attempts: number) {
    super(
      `${kindName} ${namespace}/${name} changed under us ${attempts} times in a row (other writers); retrying later`,
    );
  }
}

/**
 * Read-transform-write with optimistic concurrency. `transform` returns the new object or null
 * (nothing to change); only the weights in which it differs are written. Returns true when it wrote.
 * `verify` sees what was sent and the apiserver's answer (it may throw to refuse the result).
 */
export async function modifyWithRetry<T extends { spec?: unknown }>(
  model: Model,
  namespace: string,
  name: string,
  transform: (current: T) => T | null,
  known?: unknown,
  attempts = 5,
  verify?: (sent: T, written: T) => Promise<void>,
): Promise<boolean> {
  const get = async () => (await K8s(model).InNamespace(namespace).Get(name)) as GenericKind;
  // `known`: the caller's fresh copy; a conflict sends the retry to a GET.
  let current = (known as GenericKind | undefined) ?? (await get());
  for (let attempt = 1; ; attempt++) {
    const next = transform(current as T);
    if (next === null) return false;
    let weights;
    try {
      weights = weightPatch(current.spec, next.spec);
    } catch (err) {
      throw new Error(
        `${current.kind ?? model.name} ${namespace}/${name}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (weights.length === 0) return false;
    const tried = current.metadata?.resourceVersion;
    let written: GenericKind;
    try {
      written = await K8s(model, { name, namespace }).Patch([
        { op: "test", path: "/metadata/resourceVersion", value: tried },
        ...weights,
      ]);
    } catch (err) {
      // 409 Conflict, or 422 when the `test` op saw another resourceVersion: someone else wrote.
      // A 422 on an object nobody else changed is the apiserver refusing our change itself.
      const { status } = apiFailure(err);
      if (status !== 409 && status !== 422) throw err;
      current = await get();
      if (status === 422 && current.metadata?.resourceVersion === tried) throw err;
      if (attempt >= attempts)
        throw new TargetContendedError(
          String(current.kind ?? model.name),
          namespace,
          name,
          attempts,
        );
      continue;
    }
    await verify?.(next, written as T);
    return true;
  }
}
