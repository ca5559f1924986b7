// Who owns a route rule or model when several ModelRollouts claim it (claims come from the
// traffic adapters' inspect functions). Pure; the reconciler lists the rollouts.
//
// A rollout that has started (status.target set) and is not finished outranks one that has not
// started, so a newcomer can never stop a running rollout; otherwise the older one wins (then the
// name). Finished rollouts (Succeeded, Failed, Aborted) claim nothing.

export interface Claimant {
  name: string;
  creationTimestamp: string;
  /** The rollout has started on its target (status.target is set). */
  started: boolean;
  /** Phase is Succeeded, Failed or Aborted. */
  finished: boolean;
  claims: string[];
}

function outranks(a: Claimant, b: Claimant): boolean {
  if (a.started !== b.started) return a.started;
  const ta = Date.parse(a.creationTimestamp);
  const tb = Date.parse(b.creationTimestamp);
  if (ta !== tb) return ta < tb;
  return a.name < b.name;
}

/** Name of the rollout that owns one of `self`'s claims instead of it, or undefined. */
export function conflictingOwner(self: Claimant, others: Claimant[]): string | undefined {
  if (self.finished) return undefined;
  const mine = new Set(self.claims);
  const rivals = others
    .filter(o => o.name !== self.name && !o.finished && o.claims.some(k => mine.has(k)))
    .filter(o => outranks(o, self))
    .sort((a, b) => (outranks(a, b) ? -1 : 1));
  return rivals[0]?.name;
}
