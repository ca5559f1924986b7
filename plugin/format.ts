// Pure formatting of ModelRollout objects for people: the kubectl plugin's `get` views and the
// demo's live progress share these. Input is the object as `kubectl get -o json` returns it.
import { isTerminalPhase } from "../capabilities/api/constants";

export interface MeasurementJson {
  phase: string;
  value?: string;
  message?: string;
  finishedAt?: string;
}

export interface MetricRunJson {
  name: string;
  phase: string;
  count?: number;
  successful?: number;
  failed?: number;
  inconclusive?: number;
  error?: number;
  measurements?: MeasurementJson[];
}

export interface GateRunJson {
  phase: string;
  message?: string;
  stepIndex?: number;
  metrics?: MetricRunJson[];
}

export interface MetricSpecJson {
  name: string;
  template?: string;
  query?: string;
}

export interface StepJson {
  setWeight?: number;
  pause?: { duration?: string };
  analysis?: { metrics?: MetricSpecJson[] };
  setHeaderRoute?: {
    match?: {
      headerName: string;
      headerValue: { exact?: string; prefix?: string; regex?: string };
    }[];
  };
}

export interface ConditionJson {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface RolloutJson {
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    creationTimestamp?: string;
    annotations?: Record<string, string>;
  };
  spec?: {
    pools?: { httpRoute: string; stable: string; canary: string };
    adapters?: {
      inferenceModel?: string;
      inferenceModelRewrite?: { name: string; group?: string };
      stable: string;
      canary: string;
    };
    steps?: StepJson[];
    paused?: boolean;
    analysis?: { metrics?: MetricSpecJson[] };
  };
  status?: {
    phase?: string;
    currentStep?: number;
    canaryWeight?: number;
    stableWeight?: number;
    message?: string;
    stepStartedAt?: string;
    finishedAt?: string;
    conditions?: ConditionJson[];
    analysis?: GateRunJson;
    stepAnalysis?: GateRunJson;
    lastAction?: { action: string; at: string; result: string; message?: string };
    headerRoute?: { match: NonNullable<NonNullable<StepJson["setHeaderRoute"]>["match"]> };
  };
}

export interface EventJson {
  type?: string;
  reason?: string;
  message?: string;
  lastTimestamp?: string;
  eventTime?: string;
  firstTimestamp?: string;
  count?: number;
}

/** The rollout is in a terminal phase (Succeeded, Failed, Aborted). */
export function isFinished(r: RolloutJson): boolean {
  return isTerminalPhase(r.status?.phase);
}

/**
 * "setWeight 10", "pause 20s", "pause (until promoted)", "analysis: a, b",
 * "setHeaderRoute x-canary=yes", "setHeaderRoute (remove)".
 */
export function describeStep(step: StepJson | undefined): string {
  if (!step) return "-";
  if (step.setWeight !== undefined) return `setWeight ${step.setWeight}`;
  if (step.pause)
    return step.pause.duration ? `pause ${step.pause.duration}` : "pause (until promoted)";
  if (step.setHeaderRoute) {
    const match = (step.setHeaderRoute.match ?? []).map(m => {
      const v = m.headerValue ?? {};
      if (v.exact !== undefined) return `${m.headerName}=${v.exact}`;
      if (v.prefix !== undefined) return `${m.headerName}=${v.prefix}*`;
      return `${m.headerName}~${v.regex ?? ""}`;
    });
    return `setHeaderRoute ${match.join(" ") || "(remove)"}`;
  }
  if (step.analysis) {
    const names = (step.analysis.metrics ?? []).map(m => m.name);
    return `analysis: ${names.join(", ") || "-"}`;
  }
  return "?";
}

/** "[####----------------]": the canary's share of `width` cells. */
export function weightBar(canaryWeight: number | undefined, width = 20): string {
  const w = Math.max(0, Math.min(100, canaryWeight ?? 0));
  const filled = Math.round((w / 100) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

/** "mymodel-pool-v1 90% | mymodel-pool-v2 10%" (stable first). */
export function describeWeights(r: RolloutJson): string {
  const t = r.spec?.pools ?? r.spec?.adapters;
  if (!t) return "-";
  const canary = r.status?.canaryWeight ?? 0;
  const stable = r.status?.stableWeight ?? 100 - canary;
  return `${t.stable} ${stable}% | ${t.canary} ${canary}%`;
}

/** The object whose traffic the rollout shifts: "HTTPRoute inference-route" or "InferenceModel loramodel". */
export function describeTarget(r: RolloutJson): string {
  const s = r.spec;
  if (s?.pools) return `HTTPRoute ${s.pools.httpRoute}`;
  if (s?.adapters?.inferenceModel) return `InferenceModel ${s.adapters.inferenceModel}`;
  if (s?.adapters?.inferenceModelRewrite)
    return `InferenceModelRewrite ${s.adapters.inferenceModelRewrite.name}`;
  return "-";
}

/** "step 3/7 (setWeight 50)", or "done (7/7)". */
export function describeProgress(r: RolloutJson): string {
  const steps = r.spec?.steps ?? [];
  const i = r.status?.currentStep ?? 0;
  if (i >= steps.length) return `done (${steps.length}/${steps.length})`;
  return `step ${i + 1}/${steps.length} (${describeStep(steps[i])})`;
}

/** "[0.0123]" -> "0.0123"; long numbers shortened to 3 significant digits. */
export function shortValue(value: string | undefined): string {
  if (value === undefined) return "";
  const inner = value.replace(/^\[(.*)\]$/, "$1");
  if (inner === "") return "no data";
  return inner
    .split(",")
    .map(part => {
      const n = Number(part.trim());
      if (part.trim() === "" || Number.isNaN(n)) return part.trim();
      if (Number.isInteger(n)) return String(n);
      return String(Number(n.toPrecision(3)));
    })
    .join(",");
}

const PHASE_WORD: Record<string, string> = {
  Successful: "ok",
  Failed: "FAILED",
  Inconclusive: "inconclusive",
  Error: "error",
  Pending: "pending",
  Running: "running",
};

export interface GateBrief {
  /** "background" or "steps[2]". */
  scope: string;
  name: string;
  /** The metric's phase; for a running metric, the last measurement's. */
  phase: string;
  /** "ok", "FAILED", ... */
  word: string;
  value: string;
  message?: string;
  counts: string;
}

function briefsOf(run: GateRunJson | undefined, scope: string): GateBrief[] {
  return (run?.metrics ?? []).map(m => {
    const last = m.measurements?.[m.measurements.length - 1];
    const phase = m.phase === "Running" && last ? last.phase : m.phase;
    const counts = [
      `${m.successful ?? 0} ok`,
      m.failed ? `${m.failed} failed` : "",
      m.inconclusive ? `${m.inconclusive} inconclusive` : "",
      m.error ? `${m.error} errors` : "",
    ]
      .filter(Boolean)
      .join(", ");
    return {
      scope,
      name: m.name,
      phase,
      word: PHASE_WORD[phase] ?? phase,
      value: shortValue(last?.value),
      message: last?.message,
      counts,
    };
  });
}

/** Gate results at a glance: the background gate's metrics and the current (or last) step gate's. */
export function gateBriefs(r: RolloutJson): GateBrief[] {
  const step = r.status?.stepAnalysis;
  return [
    ...briefsOf(r.status?.analysis, "background"),
    ...briefsOf(step, step?.stepIndex !== undefined ? `steps[${step.stepIndex}]` : "step"),
  ];
}

/** "canary-error-rate ok 0 | observed-split ok 1.2" (or "-" without gates). */
export function gatesShort(r: RolloutJson): string {
  const briefs = gateBriefs(r);
  if (!briefs.length) return "-";
  return briefs.map(b => `${b.name} ${b.word}${b.value ? ` ${b.value}` : ""}`).join(" | ");
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + " ".repeat(n - s.length);
}

/** Columns of text, left-aligned, two spaces apart; the last column is not padded. */
export function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map(row =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : pad(cell, widths[i])))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** The list view of `kubectl modelrollout get`. */
export function formatTable(rollouts: RolloutJson[]): string {
  if (!rollouts.length) return "No ModelRollouts found.";
  const rows = [["NAME", "PHASE", "STEP", "WEIGHTS (stable | canary)", "GATES"]];
  for (const r of rollouts) {
    const steps = r.spec?.steps?.length ?? 0;
    const step = Math.min(r.status?.currentStep ?? 0, steps);
    rows.push([
      r.metadata.name,
      r.status?.phase ?? "Pending",
      `${step}/${steps}`,
      describeWeights(r),
      gatesShort(r),
    ]);
  }
  return columns(rows);
}

function ago(iso: string | undefined, now: Date): string {
  const t = Date.parse(iso ?? "");
  if (!Number.isFinite(t)) return "";
  const s = Math.max(0, Math.round((now.getTime() - t) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** The detailed view of `kubectl modelrollout get NAME`. */
export function formatDetail(r: RolloutJson, events: EventJson[], now: Date): string {
  const st = r.status ?? {};
  const t = r.spec?.pools ?? r.spec?.adapters;
  const lines: string[] = [];
  const field = (k: string, v: string) => lines.push(`${pad(`${k}:`, 13)}${v}`);
  field(
    "Name",
    `${r.metadata.name}${r.metadata.namespace ? `  (namespace ${r.metadata.namespace})` : ""}`,
  );
  field("Target", `${describeTarget(r)}: stable ${t?.stable ?? "-"} -> canary ${t?.canary ?? "-"}`);
  field("Phase", `${st.phase ?? "Pending"}${r.spec?.paused ? "  (spec.paused: true)" : ""}`);
  if (st.message) field("Message", st.message);
  field("Weights", `${weightBar(st.canaryWeight)}  ${describeWeights(r)}`);
  field("Progress", describeProgress(r));
  if (st.headerRoute)
    field(
      "Headers",
      `${describeStep({ setHeaderRoute: st.headerRoute }).replace("setHeaderRoute ", "")} -> canary ${t?.canary ?? "-"}`,
    );

  lines.push("Steps:");
  const steps = r.spec?.steps ?? [];
  const current = st.currentStep ?? 0;
  const finished = isFinished(r);
  steps.forEach((step, i) => {
    const mark = i < current ? "[x]" : i === current && !finished ? "[>]" : "[ ]";
    lines.push(`  ${mark} ${i}  ${describeStep(step)}`);
  });

  const briefs = gateBriefs(r);
  lines.push("Gates:");
  if (!briefs.length) lines.push("  (none)");
  else {
    lines.push(
      columns([
        ["  SCOPE", "METRIC", "RESULT", "LAST VALUE", "MEASUREMENTS"],
        ...briefs.map(b => [`  ${b.scope}`, b.name, b.word, b.value || "-", b.counts]),
      ]),
    );
    for (const run of [st.analysis, st.stepAnalysis])
      if (run?.message && run.phase !== "Running") lines.push(`  ${run.phase}: ${run.message}`);
  }

  if (st.conditions?.length) {
    lines.push("Conditions:");
    lines.push(
      columns([
        ["  TYPE", "STATUS", "REASON"],
        ...st.conditions.map(c => [`  ${c.type}`, c.status, c.reason ?? ""]),
      ]),
    );
  }
  if (st.lastAction) {
    const a = st.lastAction;
    field(
      "Last action",
      `${a.action}: ${a.result}${a.message ? ` - ${a.message}` : ""} (${ago(a.at, now)})`,
    );
  }
  if (events.length) {
    lines.push("Events (latest last):");
    for (const e of events.slice(-8)) {
      const when = ago(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp, now);
      lines.push(
        `  ${pad(when, 8)} ${pad(e.type ?? "", 8)} ${pad(e.reason ?? "", 18)} ${e.message ?? ""}`,
      );
    }
  }
  return lines.join("\n");
}
