// Probes judged before the first weight (observe.ts sent them while all traffic is on stable):
// failed → roll back with the metric and what was seen, traffic untouched; inconclusive or a
// transient error → hold the first weight rise (Ready=False) and send again; refused for good →
// InvalidAnalysis. The hold is only on the weight: abort, failed gates and a header route proceed.
import { judgeProbeChecks, type ProbeVerdicts } from "../../analysis";
import { notReady } from "./conditions";
import type { Ctx, Observations } from "./context";
import { rollback } from "./steps";

/** The reason of Ready=False and Progressing=False while the probes did not pass yet. */
export const PROBE_PENDING = "ProbePending";

/** The probes' verdicts of this reconcile, or undefined when none were sent. */
export function probeVerdicts(obs: Observations): ProbeVerdicts | undefined {
  if (!obs.probeCheck?.length || !obs.templateContext) return undefined;
  return judgeProbeChecks(obs.probeCheck, { ...obs.templateContext, weight: 0 });
}

/** Probes the operator may never send as written: the spec must change (InvalidAnalysis). */
export function refusedProbes(
  verdicts: ProbeVerdicts | undefined,
): { reason: string; message: string } | undefined {
  if (!verdicts?.invalid.length) return undefined;
  return {
    reason: "InvalidAnalysis",
    message: `a probe cannot be sent; fix the spec (no traffic was moved): ${verdicts.invalid.join("; ")}`,
  };
}

/** Why the first weight waits for the probes (inconclusive, transient error), or undefined. */
export function pendingProbes(verdicts: ProbeVerdicts | undefined): string | undefined {
  if (!verdicts?.pending.length) return undefined;
  return `the probes before the first weight did not pass yet, retrying (no traffic was moved): ${verdicts.pending.join("; ")}`;
}

/** Pending probes: Ready=False (re-checked with a backoff), and progress holds any rise. */
export function holdOnPendingProbes(c: Ctx, message: string) {
  c.probesPending = message;
  notReady(c, PROBE_PENDING, message, true);
}

/** A canary that failed its probes before the first weight: Failed, all traffic stays on stable. */
export function failOnProbes(c: Ctx, verdicts: ProbeVerdicts | undefined) {
  if (!verdicts?.failed.length) return;
  rollback(
    c,
    "Failed",
    "ProbeFailed",
    `the canary failed its probe before any traffic moved: ${verdicts.failed.join("; ")}`,
  );
}
