// Property test of the step engine: random step lists driven by a simulated reconciler through
// random time jumps, gate verdicts, user pauses, manual actions and crashes at every point of a
// reconcile (before the traffic write, between traffic and status write, between status write and
// annotation removal). The world's HTTPRoute is changed only through the real traffic adapter.
// The scenarios are fast-check arbitraries: a failure prints the seed and a shrunk counterexample
// (re-run it with `{ seed, path }` in fc.assert's parameters).
import { describe, expect, it } from "@jest/globals";
import fc from "fast-check";
import { type Action, type ManualAction, type Observations, reconcileRollout } from "./engine";
import {
  finalizeHTTPRoute,
  inspectHTTPRoute,
  type HTTPRoute,
  setHTTPRouteWeight,
} from "./traffic/httproute";
import { removeHeaderRoute, setHeaderRoute } from "./traffic/header-route";
import type { ModelRolloutSpec, ModelRolloutStatus, RolloutStep } from "./types";

const SPLIT = { stable: "pool-v1", canary: "pool-v2" };
const HEADER_RULE = "modelrollout-r-header";
/** The events that say a step was entered. */
const STEP_EVENTS = [
  "WeightSet",
  "PauseStarted",
  "AnalysisStarted",
  "HeaderRouteSet",
  "HeaderRouteRemoved",
];
const GATE = { metrics: [{ name: "m", query: "vector(0)" }] };
const DURATIONS: Record<string, number> = {
  "0s": 0,
  "5s": 5_000,
  "30s": 30_000,
  "1m": 60_000,
  "1m30s": 90_000,
};

/** `arb` with probability p, else `otherwise`. */
const sometimes = <T, U>(p: number, arb: fc.Arbitrary<T>, otherwise: fc.Arbitrary<U>) =>
  fc.oneof(
    { arbitrary: otherwise, weight: Math.round((1 - p) * 100) },
    { arbitrary: arb, weight: Math.round(p * 100) },
  );
const maybe = <T>(p: number, arb: fc.Arbitrary<T>) => sometimes(p, arb, fc.constant(undefined));

const stepArb: fc.Arbitrary<RolloutStep> = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 100 }).map(w => ({ setWeight: w })), weight: 45 },
  {
    arbitrary: maybe(0.5, fc.constantFrom(...Object.keys(DURATIONS))).map(duration => ({
      pause: duration === undefined ? {} : { duration },
    })),
    weight: 30,
  },
  { arbitrary: fc.constant({ analysis: GATE }), weight: 25 },
  {
    arbitrary: fc.constantFrom("a", "b", "").map(v => ({
      setHeaderRoute: { match: v ? [{ headerName: "x-tester", headerValue: { exact: v } }] : [] },
    })),
    weight: 12,
  },
);

const specArb: fc.Arbitrary<ModelRolloutSpec> = fc
  .record({
    steps: fc.array(stepArb, { minLength: 1, maxLength: 7 }),
    background: sometimes(0.4, fc.constant(true), fc.constant(false)),
    rollback: sometimes(0.5, fc.constant(true), fc.constant(false)),
  })
  .map(({ steps, background, rollback }) => ({
    // A valid spec: gates need a Prometheus address (the engine checks it before anything moves).
    prometheus: { address: "http://prometheus:9090" },
    pools: { httpRoute: "route", ...SPLIT },
    steps,
    ...(background ? { analysis: GATE } : {}),
    ...(rollback ? { onInconclusive: "Rollback" as const } : {}),
  }));

/** What the analysis module decides for each running gate in one reconcile (undefined: nothing yet). */
type GatePhase = "Running" | "Successful" | "Failed" | "Inconclusive" | "Error";
interface Verdicts {
  analysis?: GatePhase;
  stepAnalysis?: GatePhase;
}
const gatePhaseArb = fc.constantFrom<GatePhase>(
  "Running",
  "Successful",
  "Successful",
  "Failed",
  "Inconclusive",
  "Error",
);
const verdictsArb: fc.Arbitrary<Verdicts> = fc.record({
  analysis: maybe(0.3, gatePhaseArb),
  stepAnalysis: maybe(0.3, gatePhaseArb),
});

type Crash = "none" | "beforeActions" | "afterTraffic" | "afterStatus";

/** One tick of the simulated world before a reconcile. */
interface Tick {
  advanceMs: number;
  annotation?: string;
  togglePaused: boolean;
  crash: Crash;
  verdicts: Verdicts;
}
const tickArb: fc.Arbitrary<Tick> = fc.record({
  advanceMs: sometimes(
    0.3,
    fc.integer({ min: 0, max: 2_000 }),
    fc.constantFrom(0, 5_000, 29_000, 30_000, 61_000, 3_600_000),
  ),
  annotation: maybe(
    0.15,
    fc.constantFrom("promote", "promote", "promote-full", "abort", "retry", "bogus"),
  ),
  togglePaused: sometimes(0.08, fc.constant(true), fc.constant(false)),
  crash: fc.oneof(
    { arbitrary: fc.constant<Crash>("none"), weight: 4 },
    {
      arbitrary: fc.constantFrom<Crash>("beforeActions", "afterTraffic", "afterStatus"),
      weight: 3,
    },
  ),
  verdicts: verdictsArb,
});

/**
 * A run: a spec, 5 to 60 ticks with crashes, pauses and manual actions, then the verdicts of the
 * settling phase (after them every running gate passes, so the rollout can finish).
 */
const scenarioArb = fc.record({
  spec: specArb,
  ticks: fc.array(tickArb, { minLength: 5, maxLength: 60, size: "max" }),
  settle: fc.array(verdictsArb, { maxLength: 60, size: "max" }),
});
type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

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
    if (a.type === "setHeaderRoute")
      world.route = setHeaderRoute(world.route, SPLIT, HEADER_RULE, a.match) ?? world.route;
    if (a.type === "removeHeaderRoute")
      world.route = removeHeaderRoute(world.route, HEADER_RULE) ?? world.route;
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
function reconcileOnce(world: World, crash: Crash, verdicts: Verdicts) {
  world.calls++;
  const input = world.status ? structuredClone(world.status) : undefined;
  // The analysis module measures running gates and writes its verdict into the run.
  for (const key of ["analysis", "stepAnalysis"] as const) {
    const run = input?.[key];
    const verdict = verdicts[key];
    if (run && run.phase === "Running" && verdict !== undefined) {
      run.phase = verdict;
      const measured = run.phase === "Running" ? "Successful" : run.phase;
      const startedAt = new Date(world.now).toISOString();
      const counters = { count: 1, successful: 0, failed: 0, inconclusive: 0, error: 0 };
      run.metrics = [
        {
          name: "m",
          phase: run.phase,
          ...counters,
          consecutiveErrors: 0,
          measurements: [{ phase: measured, startedAt, finishedAt: startedAt }],
        },
      ];
    }
  }
  const value = world.annotation;
  const known = ["promote", "promote-full", "abort", "retry"].includes(value ?? "");
  const obs: Observations = {
    generation: world.generation,
    targets: { ready: true },
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
    else if (a.type === "setHeaderRoute") expect(a.match).toEqual(out.headerRoute?.match);
    else if (a.type === "removeHeaderRoute") expect(out.headerRoute).toBeUndefined();
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
    if (STEP_EVENTS.includes(a.reason) && a.step !== undefined) {
      // No step applied twice or skipped: entries run 0, 1, 2, … within one attempt.
      expect(world.promotedToEnd).toBe(false);
      expect(a.step).toBe(world.entered.length);
      world.entered.push(a.step);
    }
  }
  if (out.phase === "Succeeded" && !world.promotedToEnd) {
    expect(world.entered).toEqual(world.spec.steps.map((_, i) => i));
  }

  // The route matches the status; the unrelated rule never changes; the header rule exists
  // exactly while status records it (never once the rollout has finished), always last.
  const seen = inspectHTTPRoute(world.route, SPLIT);
  expect(world.route.spec?.rules?.[1]).toEqual(seedRoute().spec?.rules?.[1]);
  const headerRules = (world.route.spec?.rules ?? []).filter(r => r.name === HEADER_RULE);
  expect(headerRules).toHaveLength(out.headerRoute ? 1 : 0);
  if (out.headerRoute) {
    expect(world.route.spec?.rules).toHaveLength(3);
    expect(headerRules[0].matches?.[0].headers?.[0].value).toBe(
      out.headerRoute.match[0].headerValue.exact,
    );
  }
  if (isTerminal(out)) expect(out.headerRoute).toBeUndefined();
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

function simulate({ spec, ticks, settle }: Scenario) {
  const world: World = {
    spec,
    generation: 1,
    now: Date.parse("2025-01-01T00:00:00Z"),
    route: seedRoute(),
    entered: [],
    promotedToEnd: false,
    calls: 0,
  };
  for (const tick of ticks) {
    world.now += tick.advanceMs;
    if (tick.annotation !== undefined && world.annotation === undefined) {
      world.annotation = tick.annotation;
    }
    if (tick.togglePaused) {
      world.spec = { ...world.spec, paused: !world.spec.paused };
      world.generation++;
    }
    reconcileOnce(world, tick.crash, tick.verdicts);
  }
  // Settle: no more crashes or pauses; promote until the rollout finishes.
  if (world.spec.paused) {
    world.spec = { ...world.spec, paused: false };
    world.generation++;
  }
  const pass: Verdicts = { analysis: "Successful", stepAnalysis: "Successful" };
  for (let guard = 0; guard < 200 && !isTerminal(world.status); guard++) {
    world.now += 120_000;
    if (world.annotation === undefined && guard % 3 === 2) world.annotation = "promote";
    reconcileOnce(world, "none", settle[guard] ?? pass);
  }
  expect(isTerminal(world.status)).toBe(true);
  return world;
}

describe("reconcileRollout property", () => {
  it("keeps weights in 0..100, applies every step once in order, is idempotent and crash-safe", () => {
    const outcomes: Record<string, number> = {};
    let calls = 0;
    fc.assert(
      fc.property(scenarioArb, scenario => {
        const world = simulate(scenario);
        outcomes[world.status!.phase!] = (outcomes[world.status!.phase!] ?? 0) + 1;
        calls += world.calls;
      }),
      { numRuns: 250 },
    );
    // The generator reaches every end state, so the checks above were exercised on all of them.
    expect(Object.keys(outcomes).sort()).toEqual(["Aborted", "Failed", "Succeeded"]);
    expect(calls).toBeGreaterThan(3_000);
  });
});
