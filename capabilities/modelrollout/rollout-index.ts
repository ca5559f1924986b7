// Every ModelRollout the operator has seen, newest copy first: kept current by the watch and by
// the responses of our own writes. The reconciler reads a rollout from here instead of a GET per
// reconcile (as an informer cache would), checks conflicts against the other rollouts of the same
// namespace without a LIST, and recognizes the watch echo of its own write (nothing new to do).
// Pure data structure: no I/O.
import type { ModelRollout } from "./generated/modelrollout-v1alpha1";

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/**
 * Orders two resourceVersions: negative, 0 or positive like a comparator, or undefined when they
 * cannot be ordered. They are opaque by contract, but etcd's are increasing integers.
 */
export function compareResourceVersions(a: string, b: string): number | undefined {
  if (a === b) return 0;
  if (!/^\d+$/.test(a) || !/^\d+$/.test(b)) return undefined;
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : 1;
}

/** `a` is at least as new as `b`; when unknown, the later arrival (`a`) wins: the watch delivers in order. */
function isAtLeast(a: string | undefined, b: string | undefined): boolean {
  if (b === undefined) return true;
  if (a === undefined) return false;
  return (compareResourceVersions(a, b) ?? 1) >= 0;
}

const MAX_TOMBSTONES = 10_000;

export class RolloutIndex {
  readonly #byNamespace = new Map<string, Map<string, ModelRollout>>();
  /** resourceVersion up to which a rollout's state has been reconciled. */
  readonly #handled = new Map<string, string>();

  /**
   * uids of deleted rollouts. Creates/updates and deletes arrive on two watches (one per Pepr
   * binding), so a late update must not bring a deleted rollout back to life.
   */
  readonly #deleted = new Set<string>();

  /** Records a copy from the watch, a GET or a write response; an older copy never replaces a newer one. */
  remember(mro: ModelRollout): void {
    const { namespace, name, resourceVersion, uid } = mro.metadata ?? {};
    if (!namespace || !name || (uid && this.#deleted.has(uid))) return;
    let ns = this.#byNamespace.get(namespace);
    if (!ns) this.#byNamespace.set(namespace, (ns = new Map()));
    const known = ns.get(name);
    if (!known || isAtLeast(resourceVersion, known.metadata?.resourceVersion)) ns.set(name, mro);
  }

  get(namespace: string, name: string): ModelRollout | undefined {
    return this.#byNamespace.get(namespace)?.get(name);
  }

  /** Every rollout known (a new leader reconciles them all). */
  all(): ModelRollout[] {
    return [...this.#byNamespace.values()].flatMap(ns => [...ns.values()]);
  }

  /** The rollouts of one namespace (conflicts are per namespace: targets are namespaced). */
  inNamespace(namespace: string): ModelRollout[] {
    return [...(this.#byNamespace.get(namespace)?.values() ?? [])];
  }

  /**
   * Forgets a rollout; with its `uid` (from the delete event), for good — and only if the copy
   * known under that name is that object: a late delete of an older object of the same name must
   * not drop the one created since. Returns whether it dropped the name.
   */
  drop(namespace: string, name: string, uid?: string): boolean {
    if (uid) {
      this.#deleted.add(uid);
      // Bounded: the oldest tombstones go first (Sets iterate in insertion order).
      if (this.#deleted.size > MAX_TOMBSTONES)
        this.#deleted.delete(this.#deleted.values().next().value!);
      const known = this.get(namespace, name)?.metadata?.uid;
      if (known && known !== uid) return false;
    }
    this.#byNamespace.get(namespace)?.delete(name);
    this.#handled.delete(keyOf(namespace, name));
    return true;
  }

  /** The reconciler finished with the rollout as of `resourceVersion` (including its own writes). */
  markHandled(namespace: string, name: string, resourceVersion: string | undefined): void {
    if (resourceVersion === undefined) return;
    const key = keyOf(namespace, name);
    const known = this.#handled.get(key);
    if (!known || isAtLeast(resourceVersion, known)) this.#handled.set(key, resourceVersion);
  }

  /**
   * True when a watch event carries nothing the reconciler has not seen: the echo of our own status
   * write, or an event older than it. Reconciling it again would only cost reads.
   */
  isHandled(mro: ModelRollout): boolean {
    const { namespace, name, resourceVersion } = mro.metadata ?? {};
    if (!namespace || !name || resourceVersion === undefined) return false;
    const handled = this.#handled.get(keyOf(namespace, name));
    if (handled === undefined) return false;
    return (compareResourceVersions(handled, resourceVersion) ?? -1) >= 0;
  }

  get size(): number {
    let n = 0;
    for (const ns of this.#byNamespace.values()) n += ns.size;
    return n;
  }
}
