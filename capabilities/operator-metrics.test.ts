import { describe, expect, it } from "@jest/globals";
import type { AddressInfo } from "node:net";
import { serveHealth } from "./health";
import type { GateRun, ModelRolloutSpec, ModelRolloutStatus } from "./modelrollout/types";
import {
  gateChanges,
  OperatorMetrics,
  reconcileErrorReason,
  rolloutGauges,
} from "./operator-metrics";

const spec = {
  steps: [{ setWeight: 10 }, { analysis: {} }, { setWeight: 100 }],
} as ModelRolloutSpec;

function metric(name: string, counts: Partial<Record<string, number>> = {}) {
  return {
    name,
    phase: "Running" as const,
    count: 0,
    successful: counts.successful ?? 0,
    failed: counts.failed ?? 0,
    inconclusive: counts.inconclusive ?? 0,
    error: counts.error ?? 0,
    consecutiveErrors: 0,
    measurements: [],
  };
}

function run(startedAt: string, over: Partial<GateRun> = {}): GateRun {
  return { startedAt, phase: "Running", metrics: [], ...over };
}

/** The exposition's sample lines of one metric, without HELP/TYPE. */
async function samples(m: OperatorMetrics, name: string): Promise<string[]> {
  const text = await m.registry.metrics();
  return text.split("\n").filter(l => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe("rolloutGauges", () => {
  it("reads phase, step, steps and weight from status and spec", () => {
    expect(rolloutGauges(spec, { phase: "Progressing", currentStep: 1, canaryWeight: 10 })).toEqual(
      { phase: "Progressing", currentStep: 1, steps: 3, canaryWeight: 10 },
    );
  });

  it("is all zeros before the first status", () => {
    expect(rolloutGauges(spec, undefined)).toEqual({
      phase: undefined,
      currentStep: 0,
      steps: 3,
      canaryWeight: 0,
    });
  });
});

describe("gateChanges", () => {
  const t0 = "2026-01-01T00:00:00Z";

  it("counts the measurements a reconcile added to the same run, by phase", () => {
    const prev: ModelRolloutStatus = {
      analysis: run(t0, { metrics: [metric("errors", { successful: 2, error: 1 })] }),
    };
    const next: ModelRolloutStatus = {
      analysis: run(t0, { metrics: [metric("errors", { successful: 3, error: 1, failed: 1 })] }),
    };
    expect(gateChanges(prev, next)).toEqual({
      measurements: [
        { gate: "analysis", metric: "errors", phase: "Successful", count: 1 },
        { gate: "analysis", metric: "errors", phase: "Failed", count: 1 },
      ],
      verdicts: [],
    });
  });

  it("counts a new run (new startedAt or another step) from zero", () => {
    const prev: ModelRolloutStatus = {
      stepAnalysis: run(t0, { stepIndex: 1, metrics: [metric("ttft", { successful: 4 })] }),
    };
    const next: ModelRolloutStatus = {
      stepAnalysis: run("2026-01-01T00:05:00Z", {
        stepIndex: 3,
        metrics: [metric("ttft", { successful: 1 })],
      }),
    };
    expect(gateChanges(prev, next).measurements).toEqual([
      { gate: "steps[3].analysis", metric: "ttft", phase: "Successful", count: 1 },
    ]);
  });

  it("counts a verdict once, when the run leaves Running", () => {
    const running = { stepAnalysis: run(t0, { stepIndex: 1 }) };
    const done = { stepAnalysis: run(t0, { stepIndex: 1, phase: "Failed" }) };
    expect(gateChanges(running, done).verdicts).toEqual([
      { gate: "steps[1].analysis", verdict: "Failed" },
    ]);
    expect(gateChanges(done, done).verdicts).toEqual([]);
    // Started and decided within one reconcile.
    expect(gateChanges(undefined, done).verdicts).toHaveLength(1);
  });

  it("adds nothing when no gate changed or there is none", () => {
    const s = { analysis: run(t0, { metrics: [metric("errors", { successful: 2 })] }) };
    expect(gateChanges(s, s)).toEqual({ measurements: [], verdicts: [] });
    expect(gateChanges(undefined, undefined)).toEqual({ measurements: [], verdicts: [] });
  });
});

describe("reconcileErrorReason", () => {
  it("names a transport failure, the common HTTP statuses and a bug from a short list", () => {
    expect(reconcileErrorReason({ transport: true, message: "refused" })).toBe(
      "ApiserverUnreachable",
    );
    expect(reconcileErrorReason({ status: 409, message: "" })).toBe("Conflict");
    expect(reconcileErrorReason({ status: 403, message: "" })).toBe("Forbidden");
    expect(reconcileErrorReason({ status: 503, message: "" })).toBe("ApiserverError");
    expect(reconcileErrorReason({ status: 418, message: "" })).toBe("HTTP418");
    expect(reconcileErrorReason({ message: "TypeError: x is undefined" })).toBe("InternalError");
  });
});

describe("OperatorMetrics", () => {
  it("exposes the phase one-hot, step, steps and weight per rollout", async () => {
    const m = new OperatorMetrics();
    m.recordReconcile("ns", "r", spec, undefined, {
      phase: "Paused",
      currentStep: 1,
      canaryWeight: 10,
    });
    expect(await samples(m, "modelrollout_phase")).toEqual([
      'modelrollout_phase{namespace="ns",name="r",phase="Pending"} 0',
      'modelrollout_phase{namespace="ns",name="r",phase="Progressing"} 0',
      'modelrollout_phase{namespace="ns",name="r",phase="Paused"} 1',
      'modelrollout_phase{namespace="ns",name="r",phase="Succeeded"} 0',
      'modelrollout_phase{namespace="ns",name="r",phase="Failed"} 0',
      'modelrollout_phase{namespace="ns",name="r",phase="Aborted"} 0',
    ]);
    expect(await samples(m, "modelrollout_current_step")).toEqual([
      'modelrollout_current_step{namespace="ns",name="r"} 1',
    ]);
    expect(await samples(m, "modelrollout_steps")).toEqual([
      'modelrollout_steps{namespace="ns",name="r"} 3',
    ]);
    expect(await samples(m, "modelrollout_canary_weight_percent")).toEqual([
      'modelrollout_canary_weight_percent{namespace="ns",name="r"} 10',
    ]);
  });

  it("accumulates gate counters and errors, and drops every series of a deleted rollout", async () => {
    const m = new OperatorMetrics();
    const t0 = "2026-01-01T00:00:00Z";
    const one = { analysis: run(t0, { metrics: [metric("errors", { successful: 1 })] }) };
    const two = {
      analysis: run(t0, { phase: "Successful", metrics: [metric("errors", { successful: 2 })] }),
    };
    m.recordReconcile("ns", "r", spec, undefined, one);
    m.recordReconcile("ns", "r", spec, one, two);
    m.recordReconcileError("ns", "r", "Conflict");
    m.recordReconcileError("ns", "r", "Conflict");
    m.recordReconcile("ns", "other", spec, undefined, { phase: "Progressing" });
    expect(await samples(m, "modelrollout_gate_measurements_total")).toEqual([
      'modelrollout_gate_measurements_total{namespace="ns",name="r",gate="analysis",metric="errors",phase="Successful"} 2',
    ]);
    expect(await samples(m, "modelrollout_gate_verdicts_total")).toEqual([
      'modelrollout_gate_verdicts_total{namespace="ns",name="r",gate="analysis",verdict="Successful"} 1',
    ]);
    expect(await samples(m, "modelrollout_reconcile_errors_total")).toEqual([
      'modelrollout_reconcile_errors_total{namespace="ns",name="r",reason="Conflict"} 2',
    ]);

    m.forgetRollout("ns", "r");
    const text = await m.registry.metrics();
    expect(text).not.toContain('name="r"');
    expect(text).toContain('modelrollout_phase{namespace="ns",name="other",phase="Progressing"} 1');
  });

  it("drops the gauges but keeps the counters when leadership is lost", async () => {
    const m = new OperatorMetrics();
    m.recordReconcile("ns", "r", spec, undefined, { phase: "Progressing", canaryWeight: 50 });
    m.recordReconcileError("ns", "r", "Forbidden");
    m.forgetRolloutGauges();
    expect(await samples(m, "modelrollout_phase")).toEqual([]);
    expect(await samples(m, "modelrollout_canary_weight_percent")).toEqual([]);
    expect(await samples(m, "modelrollout_reconcile_errors_total")).toHaveLength(1);
  });

  it("observes reconcile durations in one histogram without rollout labels", async () => {
    const m = new OperatorMetrics();
    m.observeReconcileDuration(0.02);
    m.observeReconcileDuration(3);
    const lines = await samples(m, "modelrollout_reconcile_duration_seconds_count");
    expect(lines).toEqual(["modelrollout_reconcile_duration_seconds_count 2"]);
  });

  it("is served at /metrics on the health server", async () => {
    const m = new OperatorMetrics({ processMetrics: true });
    m.recordReconcile("ns", "r", spec, undefined, { phase: "Succeeded", canaryWeight: 100 });
    const server = await serveHealth(
      0,
      () => ({ startedAt: 0, reconcilesPending: 0 }),
      "127.0.0.1",
      () => m.exposition(),
    );
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      const text = await res.text();
      expect(text).toContain('modelrollout_canary_weight_percent{namespace="ns",name="r"} 100');
      expect(text).toContain("process_resident_memory_bytes");
    } finally {
      await new Promise(resolve => server.close(resolve));
    }
  });
});
