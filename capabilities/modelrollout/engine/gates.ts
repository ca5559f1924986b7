// Gates: runs in status, their measurements and verdicts, the never-promote rule.
import {
  concludeRun,
  dueMetrics,
  dueQueries,
  recordOutcomes,
  startRun,
  type AnalysisSpec,
  type DueQuery,
  type MeasureContext,
} from "../../analysis";
import { fingerprint } from "../fingerprint";
import {
  Ctx,
  GATE_VERDICTS,
  GateField,
  GateVerdict,
  event,
  isActive,
  isTerminal,
  requeue,
  steps,
} from "./context";
import { rollback } from "./steps";
import type { GateRun, ModelRolloutSpec, ModelRolloutStatus } from "../types";

/** The gate runs in `status` and the spec each one runs. */
function gateRuns(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus,
): Array<[GateField, GateRun, AnalysisSpec]> {
  const runs: Array<[GateField, GateRun, AnalysisSpec]> = [];
  if (status.analysis && spec.analysis) runs.push(["analysis", status.analysis, spec.analysis]);
  const stepIndex = status.stepAnalysis?.stepIndex;
  const stepGate = stepIndex !== undefined ? spec.steps[stepIndex]?.analysis : undefined;
  if (status.stepAnalysis && stepGate) runs.push(["stepAnalysis", status.stepAnalysis, stepGate]);
  return runs;
}

/**
 * The queries the reconciler must run before calling the engine: every metric of a running gate
 * whose measurement is due now.
 */
export function queriesDue(
  spec: ModelRolloutSpec,
  status: ModelRolloutStatus | undefined,
  ctx: MeasureContext,
  now: Date,
): Partial<Record<GateField, DueQuery[]>> {
  const due: Partial<Record<GateField, DueQuery[]>> = {};
  if (!status || isTerminal(status.phase)) return due;
  for (const [field, run, gate] of gateRuns(spec, status)) {
    const queries = dueQueries(gate, run, { ...ctx, weight: status.canaryWeight ?? 0 }, now);
    if (queries.length) due[field] = queries;
  }
  return due;
}

/** Judges the outcomes the reconciler observed and records them in their runs. */
export function recordMeasurements(c: Ctx) {
  const ctx = c.obs.templateContext;
  if (!c.obs.measurements || !ctx) return;
  for (const [field, run, gate] of gateRuns(c.spec, c.st)) {
    const outcomes = c.obs.measurements[field];
    if (!outcomes?.length) continue;
    c.st[field] = recordOutcomes(gate, run, { ...ctx, weight: c.st.canaryWeight ?? 0 }, outcomes);
  }
}

/** Wakes the reconciler when the next measurement of a running gate is due. */
export function requeueForMeasurements(c: Ctx) {
  for (const [, run, gate] of gateRuns(c.spec, c.st)) {
    const { due, nextDueAt } = dueMetrics(gate, run, c.now);
    if (due.length) requeue(c, 0);
    else if (nextDueAt) requeue(c, Date.parse(nextDueAt) - c.now.getTime());
  }
}

/**
 * A background run still measuring when the rollout ends is concluded for the record (status and
 * describe show its outcome instead of "Running"); it no longer decides anything.
 */
export function concludeBackground(c: Ctx) {
  const run = c.st.analysis;
  if (isTerminal(c.st.phase) && run?.phase === "Running" && c.spec.analysis) {
    c.st.analysis = concludeRun(c.spec.analysis, run, c.now);
  }
}

/** A changed spec.analysis restarts the background gate; a removed one drops its run. */
export function followBackgroundSpec(c: Ctx) {
  const st = c.st;
  if (!c.spec.analysis) {
    delete st.analysis;
    delete st.analysisHash;
    return;
  }
  if (isActive(c) && st.analysis && st.analysisHash !== fingerprint(c.spec.analysis)) {
    startBackgroundRun(
      c,
      "spec.analysis or a template it uses changed; background analysis restarted",
    );
  }
}

export function startBackgroundIfDue(c: Ctx) {
  // Also at 0 % when completing waits for evidence (steps that went 10 → 0 in one call).
  const due = (c.st.canaryWeight ?? 0) > 0 || c.waiting?.kind === "Evidence";
  if (c.spec.analysis && !c.st.analysis && due) {
    startBackgroundRun(c, `background analysis started (${metricNames(c.spec.analysis.metrics)})`);
  }
}

export function startBackgroundRun(c: Ctx, message: string) {
  c.st.analysis = startRun(c.now);
  c.st.analysisHash = fingerprint(c.spec.analysis);
  c.backgroundRunStarted = true;
  event(c, "Normal", "AnalysisStarted", message);
}

export function metricNames(metrics: { name: string }[]): string {
  return metrics.map(m => m.name).join(", ");
}

// --- gates ---------------------------------------------------------------------------------------

/** A run's verdict: its phase, except that a run (re)started in this call is still Running. */
export function runVerdict(run: GateRun | undefined, freshThisCall: boolean) {
  if (!run) return undefined;
  if (freshThisCall) return "Running";
  return GATE_VERDICTS.includes(run.phase) ? (run.phase as GateVerdict) : "Running";
}

export function backgroundVerdict(c: Ctx): GateVerdict | undefined {
  return runVerdict(c.st.analysis, c.backgroundRunStarted);
}

/** Verdict of the current analysis step's run, if that step is in progress. */
export function stepVerdict(c: Ctx): GateVerdict | undefined {
  const st = c.st;
  const cur = st.currentStep ?? 0;
  const run = st.stepAnalysis;
  if (st.stepStartedAt === undefined || !steps(c)[cur]?.analysis || run?.stepIndex !== cur)
    return undefined;
  return runVerdict(run, c.stepRunStarted);
}

export function hasPermanentError(run: GateRun | undefined): boolean {
  return (run?.metrics ?? []).some(
    m => m?.measurements?.[m.measurements.length - 1]?.permanent === true,
  );
}

export function holdOnInconclusive(c: Ctx): boolean {
  return c.spec.onInconclusive !== "Rollback";
}

/** Failed or erroring gates roll back at any step; Inconclusive does when onInconclusive=Rollback. */
export function checkFailures(c: Ctx) {
  const bg = backgroundVerdict(c);
  const sv = stepVerdict(c);
  const cur = c.st.currentStep ?? 0;
  const runMessage = (run: GateRun | undefined) => (run?.message ? `: ${run.message}` : "");
  // A permanent error (a query Prometheus refuses for good) is the spec's fault: InvalidAnalysis.
  const reasonOf = (run: GateRun | undefined, verdict: string) =>
    verdict === "Error" && hasPermanentError(run) ? "InvalidAnalysis" : `Analysis${verdict}`;
  if (bg === "Failed" || bg === "Error") {
    rollback(
      c,
      "Failed",
      reasonOf(c.st.analysis, bg),
      `background analysis ${bg}${runMessage(c.st.analysis)}`,
    );
  } else if (sv === "Failed" || sv === "Error") {
    rollback(
      c,
      "Failed",
      reasonOf(c.st.stepAnalysis, sv),
      `analysis steps[${cur}] ${sv}${runMessage(c.st.stepAnalysis)}`,
    );
  } else if (!holdOnInconclusive(c) && (bg === "Inconclusive" || sv === "Inconclusive")) {
    const which = bg === "Inconclusive" ? "background analysis" : `analysis steps[${cur}]`;
    const run = bg === "Inconclusive" ? c.st.analysis : c.st.stepAnalysis;
    rollback(
      c,
      "Failed",
      "AnalysisInconclusive",
      `${which} Inconclusive (onInconclusive: Rollback)${runMessage(run)}`,
    );
  }
}

/**
 * Why the canary may not go to `nextWeight` (or complete) yet, or undefined when it may. Raising
 * the weight needs positive evidence from every active analysis: each deciding metric of the
 * background run measured, and its latest measurement is Successful and started after the
 * current weight was set. Lowering or keeping the weight needs nothing; a step gate gives its
 * evidence through its own verdict.
 */
export function missingEvidence(
  c: Ctx,
  nextWeight: number,
  completing: boolean,
): string | undefined {
  const st = c.st;
  const current = st.canaryWeight ?? 0;
  // At 0 % the canary has no traffic to judge, so the first weight needs nothing. Completing
  // (the canary takes all traffic) from 0 % needs evidence once it had traffic: steps that go
  // 10 → 0 → end must not promote a canary whose 10 % was never judged.
  const hadTraffic =
    st.analysis !== undefined || c.traffic.some(a => a.type === "setWeight" && a.canaryWeight > 0);
  const unjudged = current === 0 && (!completing || !hadTraffic);
  if (!c.spec.analysis || unjudged || (nextWeight <= current && !completing)) return undefined;
  const what = completing ? "completing" : `raising the canary to ${nextWeight}%`;
  const run = st.analysis;
  // A run that reached its verdict (every metric's count) and passed is evidence for good.
  if (run?.phase === "Successful") return undefined;
  const since = Date.parse(st.canaryWeightSetAt ?? run?.startedAt ?? c.nowIso);
  const lacking: string[] = [];
  for (const metric of c.spec.analysis.metrics) {
    if (metric.dryRun) continue;
    const status = run?.metrics.find(m => m.name === metric.name);
    const last = status?.measurements?.[status.measurements.length - 1];
    // Strictly after: a measurement taken in the same reconcile that set the weight saw the old one.
    const fresh = last !== undefined && Date.parse(String(last.startedAt)) > since;
    if (!fresh || last.phase !== "Successful") {
      lacking.push(
        fresh ? `${metric.name} (last ${last.phase})` : `${metric.name} (no measurement yet)`,
      );
    }
  }
  if (!lacking.length) return undefined;
  return (
    `${what} waits for a Successful measurement at ${current}% of background analysis ` +
    lacking.join(", ")
  );
}
