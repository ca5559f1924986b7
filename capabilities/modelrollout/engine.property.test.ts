// Property test of the step engine: random step lists driven by a simulated reconciler through
// random time jumps, gate verdicts, user pauses, manual actions and crashes at every point of a
// reconcile (before the traffic write, between traffic and status write, between status write and
// annotation removal). The world's HTTPRoute is changed only through the real traffic adapter.
import { describe, expect, it } from "@jest/globals";
import { type Action, type ManualAction, type Observations, reconcileRollout } from "./engine";
import {
  finalizeHTTPRoute,
  inspectHTTPRoute,
  type HTTPRoute,
  setHTTPRouteWeight,
} from "./traffic/httproute";
import type { ModelRolloutSpec, ModelRolloutStatus, RolloutStep } from "./types";

/** mulberry32: small, fast, deterministic. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)],
  };
}
type Rng = ReturnType<typeof rng>;

const SPLIT = { stable: "pool-v1", canary: "pool-v2" };
const GATE = { metrics: [{ name: "m", query: "vector(0)" }] };
const DURATIONS: Record<string, number> = {
  "0s": 0,
  "5s": 5_000,
  "30s": 30_000,
  "1m": 60_000,
  "1m30s": 90_000,
};

function randomSpec(r: Rng): ModelRolloutSpec {
  const steps: RolloutStep[] = [];
  const n = r.int(1, 7);
  for (let i = 0; i < n; i++) {
    const roll = r.next();
    if (roll < 0.45) steps.push({ setWeight: r.int(0, 100) });
    else if (roll < 0.75)
      steps.push({ pause: r.chance(0.5) ? { duration: r.pick(Object.keys(DURATIONS)) } : {} });
    else steps.push({ analysis: GATE });
  }
  return {
    pools: { httpRoute: "route", ...SPLIT },
    steps,
    ...(r.chance(0.4) ? { analysis: GATE } : {}),
    ...(r.chance(0.5) ? { onInconclusive: "Rollback" as const } : {}),
  };
}

function seedRoute(): HTTPRoute {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: { name: "route", namespace: "default" },
    spec: {
      parentRefs: [{ name: "gw" }],
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: "/v1" } }],
          backendRefs: [
            {
              group: "inference.networking.x-k8s.io",
              kind: "InferencePool",
              name: "pool-v1",
              weight: 1,
            },
          ],
        },
        {
          matches: [{ path: { type: "PathPrefix", value: "/other" } }],
          backendRefs: [{ name: "svc", port: 80 }],
        },
      ],
    },
  };
}

type Crash = "none" | "beforeActions" | "afterTraffic" | "afterStatus";

interface World {
  spec: ModelRolloutSpec;
  generation: number;
  now: number;
  status?: ModelRolloutStatus;
  route: HTTPRoute;
  annotation?: string;
  /** Step entries committed (status written) in the current attempt. */
  entered: number[];
  promotedToEnd: boolean;
  calls: number;
}

function applyTraffic(world: World, actions: Action[]) {
  for (const a of actions) {
    if (a.type === "setWeight")
      world.route = setHTTPRouteWeight(world.route, SPLIT, a.canaryWeight) ?? world.route;
    if (a.type === "finalize")
      world.route = finalizeHTTPRoute(world.route, SPLIT, a.outcome) ?? world.route;
  }
}

const isTerminal = (s?: ModelRolloutStatus) =>
  ["Succeeded", "Failed", "Aborted"].includes(s?.phase ?? "");
const freshRun = (run?: { phase: string; metrics: unknown[] }) =>
  !!run && run.phase === "Running" && run.metrics.length === 0;

interface BackgroundRun {
  phase: string;
  startedAt: string;
  metrics: Array<{ measurements?: Array<{ phase: string; startedAt: string }> }>;
}

/** One reconcile of the simulated operator, checking every property on the way. */
function reconcileOnce(world: World, crash: Crash, r: Rng) {
  world.calls++;
  const input = world.status ? structuredClone(world.status) : undefined;
  // The analysis module measures running gates and writes its verdict into the run.
  for (const key of ["analysis", "stepAnalysis"] as const) {
    const run = input?.[key];
    if (run && run.phase === "Running" && r.chance(0.3)) {
      run.phase = r.pick([
        "Running",
        "Successful",
        "Successful",
        "Failed",
        "Inconclusive",
        "Error",
      ]);
      const measured = run.phase === "Running" ? "Successful" : run.phase;
      const startedAt = new Date(world.now).toISOString();
      run.metrics = [
        { name: "m", phase: run.phase, measurements: [{ phase: measured, startedAt }] },
      ];
    }
  }
  const value = world.annotation;
  const known = ["promote", "promote-full", "abort", "retry"].includes(value ?? "");
  // Verdicts are also passed explicitly, as a reconciler may do (they then go stale in the
  // idempotence call below, which the engine must ignore for runs it has just started).
  const verdict = (phase?: string) => phase as Observations["stepVerdict"];
  const obs: Observations = {
    generation: world.generation,
    targets: { ready: true },
    ...(input?.stepAnalysis ? { stepVerdict: verdict(input.stepAnalysis.phase) } : {}),
    ...(input?.analysis ? { backgroundVerdict: verdict(input.analysis.phase) } : {}),
    ...(value === undefined
      ? {}
      : known
        ? { action: value as ManualAction }
        : { invalidAction: value }),
  };
  const now = new Date(world.now);
  const result = reconcileRollout(world.spec, input, obs, now);
  const out = result.status;

  // Weights always within 0..100, stable = 100 - canary.
  for (const a of result.actions) {
    if (a.type === "setWeight") {
      expect(Number.isInteger(a.canaryWeight) && a.canaryWeight >= 0 && a.canaryWeight <= 100).toBe(
        true,
      );
    }
  }
  if (out.canaryWeight !== undefined) {
    expect(out.canaryWeight).toBeGreaterThanOrEqual(0);
    expect(out.canaryWeight).toBeLessThanOrEqual(100);
    expect(out.stableWeight).toBe(100 - out.canaryWeight);
  }

  // Idempotence: its own output with the same observations changes nothing.
  const again = reconcileRollout(world.spec, out, obs, now);
  expect(again.status).toEqual(out);
  for (const a of again.actions) {
    if (a.type === "setWeight") expect(a).toMatchObject({ canaryWeight: out.canaryWeight });
    else expect(["ensureCanaryPool", "clearActionAnnotation"]).toContain(a.type);
    if (a.type === "setWeight") expect(a.step).toBeUndefined();
  }

  // Gates and timers: every step left in this call was left by its own rule or by a promote.
  const events = result.actions.filter(a => a.type === "event");
  const promotedStep = events.find(e => e.reason === "Promoted" && e.step !== undefined)?.step;
  const promotedToEnd = events.some(
    e => e.reason === "Promoted" && e.message.includes("to the end"),
  );
  const restarted = events.some(e => e.reason === "Retried");
  if (input && !isTerminal(input) && !restarted && !promotedToEnd) {
    const before = input.currentStep ?? 0;
    const after = out.phase === "Succeeded" ? world.spec.steps.length : (out.currentStep ?? 0);
    for (let k = before; k < after; k++) {
      const stepSpec = world.spec.steps[k];
      const inProgress = k === before && input.stepStartedAt !== undefined;
      if (k === promotedStep) continue;
      if (stepSpec.analysis) {
        const run = input.stepAnalysis;
        expect(
          inProgress && run?.stepIndex === k && run.phase === "Successful" && !freshRun(run),
        ).toBe(true);
      }
      if (stepSpec.pause) {
        expect(stepSpec.pause.duration).toBeDefined();
        const started = inProgress ? Date.parse(input.stepStartedAt!) : world.now;
        expect(world.now).toBeGreaterThanOrEqual(started + DURATIONS[stepSpec.pause.duration!]);
      }
    }
  }
  // Never raise the canary weight, nor complete, without a Successful background measurement
  // taken after the current weight was set (a promote-full only skips steps, not this rule).
  const before = input?.canaryWeight ?? 0;
  const raised =
    (out.canaryWeight ?? 0) > before || (out.phase === "Succeeded" && !isTerminal(input));
  const bgRun = input?.analysis as unknown as BackgroundRun | undefined;
  if (world.spec.analysis && before > 0 && raised && bgRun?.phase !== "Successful") {
    const last = bgRun?.metrics[0]?.measurements?.at(-1);
    expect(last?.phase).toBe("Successful");
    const since = Date.parse(input?.canaryWeightSetAt ?? bgRun!.startedAt);
    expect(Date.parse(last!.startedAt)).toBeGreaterThan(since);
  }
  // Never advance on a failed background gate.
  const bg = input?.analysis;
  if (
    bg &&
    !freshRun(bg) &&
    (bg.phase === "Failed" || bg.phase === "Error") &&
    !isTerminal(input)
  ) {
    expect(out.phase).toMatch(/Failed|Aborted/);
  }
  // Finished rollouts do not touch traffic unless retried.
  if (
    isTerminal(input) &&
    !result.actions.some(a => a.type === "event" && a.reason === "Retried")
  ) {
    expect(result.actions.filter(a => a.type === "setWeight" || a.type === "finalize")).toEqual([]);
  }

  if (crash === "beforeActions") return;
  applyTraffic(world, result.actions);
  if (crash === "afterTraffic") return;

  // Committed: the status is written. Track step entries per attempt.
  world.status = out;
  for (const a of result.actions) {
    if (a.type !== "event") continue;
    if (a.reason === "Retried") {
      world.entered = [];
      world.promotedToEnd = false;
    }
    if (a.reason === "Promoted" && a.message.includes("to the end")) world.promotedToEnd = true;
    if (
      ["WeightSet", "PauseStarted", "AnalysisStarted"].includes(a.reason) &&
      a.step !== undefined
    ) {
      // No step applied twice or skipped: entries run 0, 1, 2, … within one attempt.
      expect(world.promotedToEnd).toBe(false);
      expect(a.step).toBe(world.entered.length);
      world.entered.push(a.step);
    }
  }
  if (out.phase === "Succeeded" && !world.promotedToEnd) {
    expect(world.entered).toEqual(world.spec.steps.map((_, i) => i));
  }

  // The route matches the status; the unrelated rule never changes.
  const seen = inspectHTTPRoute(world.route, SPLIT);
  expect(world.route.spec?.rules?.[1]).toEqual(seedRoute().spec?.rules?.[1]);
  if (out.phase === "Succeeded") {
    expect(seen).toMatchObject({ stableRef: false, canaryRef: true, canaryWeight: 100 });
  } else if (out.phase === "Failed" || out.phase === "Aborted") {
    expect(seen).toMatchObject({ stableRef: true, canaryRef: false, canaryWeight: 0 });
  } else if (out.canaryWeight !== undefined) {
    expect(seen.canaryWeight).toBe(out.canaryWeight);
  }

  if (crash === "afterStatus") return;
  if (result.actions.some(a => a.type === "clearActionAnnotation")) world.annotation = undefined;
}

function simulate(seed: number) {
  const r = rng(seed);
  const world: World = {
    spec: randomSpec(r),
    generation: 1,
    now: Date.parse("2025-01-01T00:00:00Z"),
    route: seedRoute(),
    entered: [],
    promotedToEnd: false,
    calls: 0,
  };
  const ticks = r.int(5, 60);
  for (let t = 0; t < ticks; t++) {
    world.now += r.chance(0.3)
      ? r.int(0, 2_000)
      : r.pick([0, 5_000, 29_000, 30_000, 61_000, 3_600_000]);
    if (r.chance(0.15) && world.annotation === undefined) {
      world.annotation = r.pick(["promote", "promote", "promote-full", "abort", "retry", "bogus"]);
    }
    if (r.chance(0.08)) {
      world.spec = { ...world.spec, paused: !world.spec.paused };
      world.generation++;
    }
    const crash = r.pick<Crash>([
      "none",
      "none",
      "none",
      "none",
      "beforeActions",
      "afterTraffic",
      "afterStatus",
    ]);
    reconcileOnce(world, crash, r);
  }
  // Settle: no more crashes or pauses; promote until the rollout finishes.
  if (world.spec.paused) {
    world.spec = { ...world.spec, paused: false };
    world.generation++;
  }
  for (let guard = 0; guard < 200 && !isTerminal(world.status); guard++) {
    world.now += 120_000;
    if (world.annotation === undefined && guard % 3 === 2) world.annotation = "promote";
    reconcileOnce(world, "none", r);
  }
  expect(isTerminal(world.status)).toBe(true);
  return world;
}

describe("reconcileRollout property", () => {
  it("keeps weights in 0..100, applies every step once in order, is idempotent and crash-safe", () => {
    const outcomes: Record<string, number> = {};
    let calls = 0;
    for (let seed = 1; seed <= 250; seed++) {
      const world = simulate(seed * 7919);
      outcomes[world.status!.phase!] = (outcomes[world.status!.phase!] ?? 0) + 1;
      calls += world.calls;
    }
    // The generator reaches every end state, so the checks above were exercised on all of them.
    expect(Object.keys(outcomes).sort()).toEqual(["Aborted", "Failed", "Succeeded"]);
    expect(calls).toBeGreaterThan(3_000);
  });
});
