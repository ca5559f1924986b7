// The operator's Prometheus metrics (prom-client), served at /metrics on the health port
// (health.ts). The one place that names them. What they show is derived from each reconcile's
// result (the status before and after) by the pure functions below; the step engine knows
// nothing of them. Every per-rollout series is kept in this module's own state and handed to
// prom-client on scrape, so a deleted rollout's series go at once (bounded cardinality).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { ROLLOUT_PHASES, type RolloutPhase } from "./api/constants";
import type { ApiFailure } from "./api-failure";
import type { GateRun, ModelRolloutSpec, ModelRolloutStatus } from "./modelrollout/types";

/** Metric names (README "Observability" documents them; the Grafana dashboard queries them). */
export const OPERATOR_METRICS = {
  phase: "modelrollout_phase",
  currentStep: "modelrollout_current_step",
  steps: "modelrollout_steps",
  canaryWeight: "modelrollout_canary_weight_percent",
  gateMeasurements: "modelrollout_gate_measurements_total",
  gateVerdicts: "modelrollout_gate_verdicts_total",
  reconcileDuration: "modelrollout_reconcile_duration_seconds",
  reconcileErrors: "modelrollout_reconcile_errors_total",
  notifications: "modelrollout_notifications_total",
} as const;

/** Seconds: a reconcile reads, maybe queries Prometheus and writes; 5 ms to a minute. */
export const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const MEASUREMENT_PHASES = ["Successful", "Failed", "Inconclusive", "Error"] as const;
type MeasurementPhase = (typeof MEASUREMENT_PHASES)[number];

// --- Pure: status → what the metrics show ------------------------------------------------------

export interface RolloutGauges {
  /** undefined before the first status: every phase series is 0. */
  phase?: RolloutPhase;
  currentStep: number;
  steps: number;
  canaryWeight: number;
}

export function rolloutGauges(
  spec: ModelRolloutSpec | undefined,
  status: ModelRolloutStatus | undefined,
): RolloutGauges {
  return {
    phase: status?.phase as RolloutPhase | undefined,
    currentStep: status?.currentStep ?? 0,
    steps: spec?.steps?.length ?? 0,
    canaryWeight: status?.canaryWeight ?? 0,
  };
}

/**
 * The `gate` label: the spec path of the gate, "analysis" (background) or "steps[2].analysis" —
 * bounded by the number of steps.
 */
export function gateOf(run: GateRun): string {
  return run.stepIndex === undefined ? "analysis" : `steps[${run.stepIndex}].analysis`;
}

export interface MeasurementCount {
  gate: string;
  metric: string;
  phase: MeasurementPhase;
  count: number;
}

export interface GateVerdict {
  gate: string;
  verdict: Exclude<GateRun["phase"], "Running">;
}

/** The same run (a run restarts with a new startedAt), or none. */
function sameRun(prev: GateRun | undefined, next: GateRun): GateRun | undefined {
  return prev && prev.startedAt === next.startedAt && prev.stepIndex === next.stepIndex
    ? prev
    : undefined;
}

const COUNTER_OF: Record<MeasurementPhase, "successful" | "failed" | "inconclusive" | "error"> = {
  Successful: "successful",
  Failed: "failed",
  Inconclusive: "inconclusive",
  Error: "error",
};

/**
 * What one reconcile added to the gates: measurements taken (the per-metric counters of status
 * grew; a new run counts from 0) and runs that reached a verdict.
 */
export function gateChanges(
  prev: ModelRolloutStatus | undefined,
  next: ModelRolloutStatus | undefined,
): { measurements: MeasurementCount[]; verdicts: GateVerdict[] } {
  const measurements: MeasurementCount[] = [];
  const verdicts: GateVerdict[] = [];
  const pairs: [GateRun | undefined, GateRun | undefined][] = [
    [prev?.analysis, next?.analysis],
    [prev?.stepAnalysis, next?.stepAnalysis],
  ];
  for (const [before, run] of pairs) {
    if (!run) continue;
    const old = sameRun(before, run);
    const gate = gateOf(run);
    for (const metric of run.metrics ?? []) {
      const was = old?.metrics?.find(m => m.name === metric.name);
      for (const phase of MEASUREMENT_PHASES) {
        const key = COUNTER_OF[phase];
        const count = (metric[key] ?? 0) - (was?.[key] ?? 0);
        if (count > 0) measurements.push({ gate, metric: metric.name, phase, count });
      }
    }
    if (run.phase !== "Running" && (!old || old.phase === "Running"))
      verdicts.push({ gate, verdict: run.phase });
  }
  return { measurements, verdicts };
}

/**
 * The `reason` label of a reconcile that threw: what failed, from a short fixed list (the
 * message itself is in the log, status and Event).
 */
export function reconcileErrorReason(failure: ApiFailure): string {
  if (failure.transport) return "ApiserverUnreachable";
  const s = failure.status;
  if (s === undefined) return "InternalError";
  const named: Record<number, string> = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
  };
  if (named[s]) return named[s];
  return s >= 500 ? "ApiserverError" : `HTTP${s}`;
}

// --- State and exposition ------------------------------------------------------------------------

interface RolloutSeries {
  gauges?: RolloutGauges;
  /** Counters by their labels beyond namespace/name, joined with "\0". */
  measurements: Map<string, number>;
  verdicts: Map<string, number>;
  errors: Map<string, number>;
  notifications: Map<string, number>;
}

const SEP = "\u0000";

function add(counts: Map<string, number>, key: string, n: number): void {
  counts.set(key, (counts.get(key) ?? 0) + n);
}

type EachRollout = (visit: (ns: string, name: string, s: RolloutSeries) => void) => void;

/** Phase (one-hot), current step, steps and canary weight, read from the series at scrape time. */
function registerRolloutGauges(registers: Registry[], each: EachRollout): void {
  new Gauge({
    name: OPERATOR_METRICS.phase,
    help: "1 for the ModelRollout's current status.phase, 0 for the other phases.",
    labelNames: ["namespace", "name", "phase"],
    registers,
    collect() {
      this.reset();
      each((namespace, name, s) => {
        if (!s.gauges) return;
        for (const phase of ROLLOUT_PHASES)
          this.set({ namespace, name, phase }, s.gauges.phase === phase ? 1 : 0);
      });
    },
  });
  const gauge = (
    metric: string,
    help: string,
    value: (g: RolloutGauges) => number,
  ): Gauge<"namespace" | "name"> =>
    new Gauge({
      name: metric,
      help,
      labelNames: ["namespace", "name"],
      registers,
      collect() {
        this.reset();
        each((namespace, name, s) => {
          if (s.gauges) this.set({ namespace, name }, value(s.gauges));
        });
      },
    });
  gauge(
    OPERATOR_METRICS.currentStep,
    "status.currentStep of the ModelRollout (0-based index into spec.steps).",
    g => g.currentStep,
  );
  gauge(OPERATOR_METRICS.steps, "Number of steps in spec.steps.", g => g.steps);
  gauge(
    OPERATOR_METRICS.canaryWeight,
    "Percent of traffic last written for the canary (status.canaryWeight).",
    g => g.canaryWeight,
  );
}

/** Gate measurements, verdicts and reconcile errors, read from the series at scrape time. */
function registerRolloutCounters(registers: Registry[], each: EachRollout): void {
  const counter = (
    metric: string,
    help: string,
    labels: string[],
    counts: (s: RolloutSeries) => Map<string, number>,
  ) =>
    new Counter({
      name: metric,
      help,
      labelNames: ["namespace", "name", ...labels],
      registers,
      collect() {
        this.reset();
        each((namespace, name, s) => {
          for (const [key, n] of counts(s)) {
            const values = key.split(SEP);
            const extra = Object.fromEntries(labels.map((l, i) => [l, values[i]]));
            this.inc({ namespace, name, ...extra }, n);
          }
        });
      },
    });
  counter(
    OPERATOR_METRICS.gateMeasurements,
    "Gate measurements taken by this operator, by gate (analysis or steps[i].analysis), metric and phase.",
    ["gate", "metric", "phase"],
    s => s.measurements,
  );
  counter(
    OPERATOR_METRICS.gateVerdicts,
    "Gate runs that reached a verdict (Successful, Failed, Inconclusive, Error), by gate.",
    ["gate", "verdict"],
    s => s.verdicts,
  );
  counter(
    OPERATOR_METRICS.reconcileErrors,
    "Reconciles that failed (threw, or a target write the apiserver refused), by reason.",
    ["reason"],
    s => s.errors,
  );
  counter(
    OPERATOR_METRICS.notifications,
    "Notifications (spec.notifications) that ended, by notification and result (Delivered, Failed after retries, Dropped: queue full).",
    ["notification", "result"],
    s => s.notifications,
  );
}

export class OperatorMetrics {
  readonly registry = new Registry();
  private readonly rollouts = new Map<string, RolloutSeries>();
  private readonly duration: Histogram;

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const each = (visit: (ns: string, name: string, s: RolloutSeries) => void) => {
      for (const [key, s] of this.rollouts) {
        const [ns, name] = key.split(SEP);
        visit(ns, name, s);
      }
    };
    registerRolloutGauges(registers, each);
    registerRolloutCounters(registers, each);
    this.duration = new Histogram({
      name: OPERATOR_METRICS.reconcileDuration,
      help: "Time one reconcile took (observe, decide, apply, write status), over all rollouts.",
      buckets: RECONCILE_BUCKETS,
      registers,
    });
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  private series(namespace: string, name: string): RolloutSeries {
    const key = `${namespace}${SEP}${name}`;
    let s = this.rollouts.get(key);
    if (!s) {
      s = {
        measurements: new Map(),
        verdicts: new Map(),
        errors: new Map(),
        notifications: new Map(),
      };
      this.rollouts.set(key, s);
    }
    return s;
  }

  /** A reconcile's outcome: the rollout's spec and its status before and after. */
  recordReconcile(
    namespace: string,
    name: string,
    spec: ModelRolloutSpec | undefined,
    prev: ModelRolloutStatus | undefined,
    next: ModelRolloutStatus | undefined,
  ): void {
    const s = this.series(namespace, name);
    s.gauges = rolloutGauges(spec, next);
    const { measurements, verdicts } = gateChanges(prev, next);
    for (const m of measurements)
      add(s.measurements, [m.gate, m.metric, m.phase].join(SEP), m.count);
    for (const v of verdicts) add(s.verdicts, [v.gate, v.verdict].join(SEP), 1);
  }

  recordReconcileError(namespace: string, name: string, reason: string): void {
    add(this.series(namespace, name).errors, reason, 1);
  }

  recordNotification(namespace: string, name: string, notification: string, result: string): void {
    add(this.series(namespace, name).notifications, [notification, result].join(SEP), 1);
  }

  observeReconcileDuration(seconds: number): void {
    this.duration.observe(seconds);
  }

  /** The rollout was deleted: all its series go. */
  forgetRollout(namespace: string, name: string): void {
    this.rollouts.delete(`${namespace}${SEP}${name}`);
  }

  /**
   * Leadership lost: the new leader reports the rollouts now, so this replica's gauges go (no
   * stale phase or weight next to the leader's); its counters stay, as counters do.
   */
  forgetRolloutGauges(): void {
    for (const s of this.rollouts.values()) delete s.gauges;
  }

  /** The text exposition format, and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The operator process' metrics (the reconciler records, the health server serves). */
export const operatorMetrics = new OperatorMetrics({ processMetrics: true });
