// Probes before the first weight: every deciding probe metric of the rollout is sent once while all
// traffic is still on stable (checkProbes, I/O through the given function) and judged (pure,
// judgeProbeChecks, called by the engine): a canary that fails its probes never gets traffic.
import { dueProbe, probeOutcomeMeasurement, runDueQueries, type GateToCheck } from "./queries";
import type { ObservedOutcome, ProbeFunction } from "./queries";
import type { MetricSpec, TemplateContext } from "./types";

/** One probe metric sent before the first weight, with where it is in the spec. */
export interface ProbeCheck {
  where: string;
  metric: MetricSpec;
  outcome: ObservedOutcome;
}

/** What the probes said before the first weight. */
export interface ProbeVerdicts {
  /** The canary failed (the stable did not): roll back, never move traffic. */
  failed: string[];
  /** Inconclusive or an error retrying may fix: hold and send them again. */
  pending: string[];
  /** Refused for good (the address policy, a credential): the spec must change. */
  invalid: string[];
}

const noQueries = () => Promise.reject(new Error("a probe has no query"));

/** Sends every deciding (non-dryRun) probe metric of `gates` once. */
export async function checkProbes(
  gates: readonly GateToCheck[],
  ctx: TemplateContext,
  probe: ProbeFunction,
  now: Date,
): Promise<ProbeCheck[]> {
  const jobs = gates.flatMap(gate =>
    gate.spec.metrics.flatMap((metric, i) => {
      if (!metric.probe || metric.dryRun) return [];
      const where = `${gate.where}.metrics[${i}] (${metric.name})`;
      const run = runDueQueries([dueProbe(metric, ctx)], noQueries, now, probe);
      return [run.then(([outcome]): ProbeCheck => ({ where, metric, outcome }))];
    }),
  );
  return Promise.all(jobs);
}

/** Judges the probes sent before the first weight, each message naming the metric and what was seen. */
export function judgeProbeChecks(
  checks: readonly ProbeCheck[],
  ctx: TemplateContext,
): ProbeVerdicts {
  const verdicts: ProbeVerdicts = { failed: [], pending: [], invalid: [] };
  for (const { where, metric, outcome } of checks) {
    const o = outcome.outcome;
    if ("error" in o) {
      (o.permanent ? verdicts.invalid : verdicts.pending).push(`${where}: ${o.error}`);
      continue;
    }
    if (!("probe" in o)) continue;
    const started = new Date(outcome.startedAt);
    const m = probeOutcomeMeasurement(metric, o.probe, ctx, new Date(outcome.finishedAt), started);
    const seen = `${where} ${m.phase}, ${m.value ?? ""}: ${m.message ?? ""}`;
    if (m.phase === "Failed") verdicts.failed.push(seen);
    else if (m.phase !== "Successful") verdicts.pending.push(seen);
  }
  return verdicts;
}
