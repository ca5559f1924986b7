// Issue 15: kill chaos. Both seed scenarios run as ModelRollouts at once (scenario 1: the HTTPRoute
// inference-route from InferencePool mymodel-pool-v1 to mymodel-pool-v2, created from
// canaryTemplate; scenario 2: the InferenceModel loramodel from LoRA adapter travel-helper-v1 to
// travel-helper-v2, with a background analysis), each 10 → 50 → 100 with pauses and a Prometheus
// gate, while the operator is killed with SIGKILL 10 times at random moments (seeded: set
// CHAOS_SEED to replay) and started again each time. Half of the kills aim at the most delicate
// moment, right after a weight write. Every change of both targets and of both rollouts is
// recorded from watches (no change can be missed), and the test asserts the exact sequence of
// weights (no step repeated, skipped or undone), one entry per pause or gate step, pauses that
// lasted their full duration across restarts, Events consistent with the steps, and the end:
// Succeeded with 100 % on the canary.
import { setTimeout as sleep } from "node:timers/promises";
import { operatorKubeconfig } from "../../hack/env/rbac";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { LineWatch, watchLines } from "../support/kubectl-async";
import { RunningOperator, startOperator } from "../support/operator";
import { logSize, readLog } from "../support/operator-process";
import { rolloutHelpers } from "../support/rollouts";

const KILLS = 10;
const seed = Number(process.env.CHAOS_SEED) || Math.floor(Math.random() * 2 ** 31);

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Step = { setWeight?: number; pause?: { duration?: string }; analysis?: unknown };

let ns: TestNamespace;
let operator: RunningOperator;
let kubeconfig: string;
const watches: LineWatch[] = [];

const { kubectl, apply, getJson, rollout, targetModels } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);
const restart = async () =>
  (operator = await startOperator({ namespaces: [ns.name], kubeconfig, name: ns.name }));

beforeAll(async () => {
  process.stderr.write(`[chaos] seed ${seed} (replay with CHAOS_SEED=${seed})\n`);
  ns = createTestNamespace("chaos");
  kubeconfig = operatorKubeconfig(env().info);
  await restart();
});

afterAll(async () => {
  watches.forEach(w => w.stop());
  await operator?.stop();
  await ns?.cleanup();
});

const gate = (name: string, count: number, interval: string) => ({
  analysis: {
    metrics: [{ name, query: "vector(0)", interval, count, successCondition: "result[0] == 0" }],
  },
});
/**
 * The seed's weights with short pauses and gates. The pause at steps[4] waits for a promote
 * (as in the seed's scenario 2), so that no rollout can end before the kills are done; the gate
 * after it needs 8 measurements 2 s apart, more than the last three kills leave the operator
 * running for, so those kills also fall while the rollouts are under way.
 */
const scenario1: Step[] = [
  { setWeight: 10 },
  { pause: { duration: "8s" } },
  gate("prometheus-answers", 3, "1s"),
  { setWeight: 50 },
  { pause: {} },
  gate("still-answers", 8, "2s"),
  { setWeight: 100 },
];
const scenario2: Step[] = [
  { setWeight: 10 },
  { pause: { duration: "6s" } },
  gate("step-check", 3, "1s"),
  { setWeight: 50 },
  { pause: {} },
  gate("final-check", 8, "2s"),
  { setWeight: 100 },
];
const PROMOTE_AT = 4;
/** Kills before the promote; the rest come after it, during the last gate. */
const KILLS_BEFORE_PROMOTE = 7;

/** A JSON list of {name, weight} (backendRefs, targetModels) → name → weight. */
function parseSplit(json: string): Map<string, number> {
  const refs = (json ? JSON.parse(json) : []) as { name: string; weight?: number }[];
  return new Map(refs.map(r => [r.name, r.weight ?? 1]));
}

interface TargetState {
  at: number;
  resourceVersion: string;
  weights: Map<string, number>;
}

function targetStates(w: LineWatch): TargetState[] {
  return w.lines.map(l => {
    // {.type}|{resourceVersion}|{JSON list}: range templates break kubectl's watch printing.
    const [, resourceVersion] = l.text.split("|", 2);
    const split = l.text.slice(l.text.indexOf("|", l.text.indexOf("|") + 1) + 1);
    return { at: l.at, resourceVersion, weights: parseSplit(split) };
  });
}

interface RolloutState {
  at: number;
  name: string;
  phase: string;
  currentStep?: number;
  stepStartedAt: string;
  canaryWeight?: number;
}

function rolloutStates(w: LineWatch): RolloutState[] {
  return w.lines.map(l => {
    const [name, phase, step, stepStartedAt, weight] = l.text.split("|");
    return {
      at: l.at,
      name,
      phase,
      currentStep: step === "" ? undefined : Number(step),
      stepStartedAt,
      canaryWeight: weight === "" ? undefined : Number(weight),
    };
  });
}

/** Consecutive duplicates removed. */
function distinct<T>(xs: T[]): T[] {
  return xs.filter((x, i) => i === 0 || x !== xs[i - 1]);
}

interface Kill {
  n: number;
  at: number;
  how: string;
  /** Phase and step of each rollout just before the kill. */
  state: string;
}

interface StepEvent {
  reason: string;
  step: number;
  message: string;
  at: number;
}

/** The step Events of a rollout, in the order of their transitions. */
function stepEvents(name: string): StepEvent[] {
  const items = JSON.parse(
    kubectl(["get", "events", "--field-selector", `involvedObject.name=${name}`, "-o", "json"]),
  ).items as {
    metadata: { name: string };
    reason: string;
    message: string;
    firstTimestamp: string;
  }[];
  return items
    .filter(e => ["WeightSet", "PauseStarted", "AnalysisStarted"].includes(e.reason))
    .map(e => {
      const step = e.message.match(/^steps\[(\d+)\] of \d+:/)?.[1];
      // The recorder names an Event <rollout>.<transition time in ms, hex><4 random hex digits>.
      const hex = e.metadata.name.slice(name.length + 1, -4);
      const at = /^[0-9a-f]+$/.test(hex) ? parseInt(hex, 16) : Date.parse(e.firstTimestamp);
      return {
        reason: e.reason,
        step: step === undefined ? -1 : Number(step),
        message: e.message,
        at,
      };
    })
    .filter(e => e.step >= 0) // the background analysis' AnalysisStarted names no step
    .sort((a, b) => a.at - b.at || a.step - b.step);
}

describe("kill chaos: both seed scenarios while the operator is SIGKILLed 10 times", () => {
  it("writes exactly 0 → 10 → 50 → 100 to both targets, runs every step once and succeeds", async () => {
    const began = Date.now();
    const rnd = prng(seed);
    // Scenario 1's objects (seed names), as in operator.test.ts.
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: mymodel-pool-v1}
spec:
  extensionRef: {group: "", kind: Service, name: mymodel-pool-v1-ext-proc}
  selector: {app: custom-serving, release: qwen}
  targetPortNumber: 8000
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: mymodel-v1}
spec:
  criticality: Critical
  modelName: mymodel
  poolRef: {group: inference.networking.x-k8s.io, kind: InferencePool, name: mymodel-pool-v1}
  targetModels: [{name: mymodel, weight: 100}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: inference-route}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: inference-gateway, sectionName: llm-gw}]
  rules:
  - backendRefs:
    - {group: inference.networking.x-k8s.io, kind: InferencePool, name: mymodel-pool-v1, port: 8000, weight: 1}
    matches:
    - path: {type: PathPrefix, value: /v1/completions}
    - path: {type: PathPrefix, value: /v1/chat/completions}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: loramodel}
spec:
  criticality: Critical
  modelName: travelhelper
  poolRef: {group: inference.networking.x-k8s.io, kind: InferencePool, name: mymodel-pool-v1}
  targetModels: [{name: travel-helper-v1, weight: 100}]
`);
    const routeWatch = watchLines(ns.name, [
      "httproute",
      "inference-route",
      "-o",
      'jsonpath={.type}|{.object.metadata.resourceVersion}|{.object.spec.rules[0].backendRefs}{"\\n"}',
    ]);
    const modelWatch = watchLines(ns.name, [
      "inferencemodel",
      "loramodel",
      "-o",
      'jsonpath={.type}|{.object.metadata.resourceVersion}|{.object.spec.targetModels}{"\\n"}',
    ]);
    const rolloutWatch = watchLines(ns.name, [
      "modelrollouts",
      "-o",
      'jsonpath={.object.metadata.name}|{.object.status.phase}|{.object.status.currentStep}|{.object.status.stepStartedAt}|{.object.status.canaryWeight}{"\\n"}',
    ]);
    watches.push(routeWatch, modelWatch, rolloutWatch);
    await Promise.all([routeWatch.started, modelWatch.started]);

    // Does this operator elect a leader? The first one tells (within 30 s of starting).
    let leaderElection = false;
    await waitFor(
      "the operator to start",
      () => {
        const lines = readLog(operator.log);
        leaderElection = lines.some(l => /became the leader/.test(l.msg ?? ""));
        return leaderElection || lines.some(l => /Controller configuration/.test(l.msg ?? ""));
      },
      30_000,
      () => operator.log,
      50,
    );
    if (!leaderElection) await sleep(1000);
    leaderElection ||= readLog(operator.log).some(l => /became the leader/.test(l.msg ?? ""));

    const prometheus = env().info.prometheusUrl;
    apply(
      JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: [
          {
            apiVersion: "rollouts.inference.dev/v1alpha1",
            kind: "ModelRollout",
            metadata: { name: "qwen-to-deepseek" },
            spec: {
              pools: {
                httpRoute: "inference-route",
                stable: "mymodel-pool-v1",
                canary: "mymodel-pool-v2",
                canaryTemplate: {
                  extensionRef: { group: "", kind: "Service", name: "mymodel-v2-ext-proc" },
                  selector: { app: "custom-serving", release: "deepseek-r1" },
                  targetPortNumber: 8000,
                },
              },
              prometheus: { address: prometheus },
              steps: scenario1,
            },
          },
          {
            apiVersion: "rollouts.inference.dev/v1alpha1",
            kind: "ModelRollout",
            metadata: { name: "travel-helper" },
            spec: {
              adapters: {
                inferenceModel: "loramodel",
                stable: "travel-helper-v1",
                canary: "travel-helper-v2",
              },
              prometheus: { address: prometheus },
              analysis: {
                metrics: [
                  {
                    name: "errors",
                    query: "vector(0)",
                    interval: "2s",
                    successCondition: "result[0] < 0.05",
                  },
                ],
              },
              steps: scenario2,
            },
          },
        ],
      }),
    );
    const appliedAt = Date.now();

    // The kills. Each draws two numbers, whatever it does with them, so a seed replays exactly.
    // A kill comes once the new operator leads (it logs "became the leader"; starting takes a few
    // seconds here), either at a random moment within 2.5 s, or — aimed, before the promote —
    // 0-150 ms after the next weight write (at most 6 s later), between a target write and the
    // status write that records it.
    const kills: Kill[] = [];
    const latest = () => {
      const last = new Map<string, RolloutState>();
      for (const s of rolloutStates(rolloutWatch)) last.set(s.name, s);
      return last;
    };
    const writes = () => routeWatch.lines.length + modelWatch.lines.length;
    let logFrom = 0;
    // The operator is working once it leads (leader election) — or, without leader election,
    // once Pepr has logged its configuration.
    const up = /became the leader|Controller configuration/;
    const leads = () => {
      const lines = readLog(operator.log, logFrom);
      return (
        lines.some(l => /became the leader/.test(l.msg ?? "")) ||
        (!leaderElection && lines.some(l => up.test(l.msg ?? "")))
      );
    };
    const kill = async (n: number, how: string) => {
      const state = [...latest().values()]
        .map(s => `${s.name} ${s.phase || "-"} step ${s.currentStep ?? "-"}`)
        .join(", ");
      kills.push({ n, at: Date.now(), how, state });
      await operator.stop("SIGKILL");
      logFrom = logSize(operator.log);
      await restart();
    };
    const nextKill = async (n: number, mayAim: boolean) => {
      const aimed = rnd() < 0.5 && mayAim;
      const r = rnd();
      await waitFor("the restarted operator to lead", leads, 60_000, () => operator.log, 20);
      if (aimed) {
        const before = writes();
        const waitedFrom = Date.now();
        while (writes() === before && Date.now() - waitedFrom < 6000) await sleep(5);
        const delay = Math.floor(r * 150);
        await sleep(delay);
        return kill(
          n,
          writes() > before ? `${delay} ms after a weight write` : "6 s after leading (no write)",
        );
      }
      const delay = Math.floor(r * 2500);
      await sleep(delay);
      return kill(n, `${delay} ms after leading`);
    };
    for (let n = 1; n <= KILLS_BEFORE_PROMOTE; n++) await nextKill(n, true);
    await waitFor(
      "both rollouts waiting for a promote at steps[4]",
      () => [...latest().values()].filter(s => s.currentStep === PROMOTE_AT).length === 2,
      120_000,
      () => JSON.stringify([...latest().values()]),
      100,
    );
    await waitFor("the restarted operator to lead", leads, 60_000, () => operator.log, 20);
    for (const name of ["qwen-to-deepseek", "travel-helper"])
      kubectl(["annotate", "modelrollout", name, "rollouts.inference.dev/action=promote"]);
    for (let n = KILLS_BEFORE_PROMOTE + 1; n <= KILLS; n++) await nextKill(n, false);
    const killsDoneAt = Date.now();
    for (const k of kills)
      process.stderr.write(
        `[chaos] kill ${k.n} at +${((k.at - appliedAt) / 1000).toFixed(2)} s, ${k.how}; ${k.state}\n`,
      );

    await waitFor(
      "both rollouts Succeeded",
      () =>
        rollout("qwen-to-deepseek").status?.phase === "Succeeded" &&
        rollout("travel-helper").status?.phase === "Succeeded",
      120_000,
      () =>
        `qwen-to-deepseek: ${JSON.stringify(rollout("qwen-to-deepseek").status)}; travel-helper: ${JSON.stringify(rollout("travel-helper").status)}; operator log ${operator.log}`,
      250,
    );
    const doneAt = Date.now();
    await sleep(1500); // the last watch events and Events arrive

    // Every kill fell while both rollouts were under way.
    const finishedAt = (name: string) =>
      rolloutStates(rolloutWatch).find(s => s.name === name && s.phase === "Succeeded")?.at ??
      Infinity;
    const firstFinish = Math.min(finishedAt("qwen-to-deepseek"), finishedAt("travel-helper"));
    expect(kills).toHaveLength(KILLS);
    expect(kills.filter(k => k.at >= firstFinish)).toEqual([]);

    // 1. The targets: the exact sequence of distinct canary weights, a complete split in every
    //    state, and the final state with the canary alone at 100.
    const route = targetStates(routeWatch);
    const model = targetStates(modelWatch);
    const canaryOf = (states: TargetState[], canary: string) =>
      distinct(states.map(s => s.weights.get(canary) ?? 0));
    const routeSeq = route.map(s => [...s.weights].map(([k, v]) => `${k}=${v}`).join(","));
    const modelSeq = model.map(s => [...s.weights].map(([k, v]) => `${k}=${v}`).join(","));
    process.stderr.write(`[chaos] inference-route: ${distinct(routeSeq).join(" → ")}\n`);
    process.stderr.write(`[chaos] loramodel: ${distinct(modelSeq).join(" → ")}\n`);
    expect(canaryOf(route, "mymodel-pool-v2")).toEqual([0, 10, 50, 100]);
    expect(canaryOf(model, "travel-helper-v2")).toEqual([0, 10, 50, 100]);
    for (const s of route.slice(1))
      expect([...s.weights.values()].reduce((a, b) => a + b, 0)).toBe(100);
    for (const s of model) expect([...s.weights.values()].reduce((a, b) => a + b, 0)).toBe(100);
    expect(route[route.length - 1].weights).toEqual(new Map([["mymodel-pool-v2", 100]]));
    expect(model[model.length - 1].weights).toEqual(new Map([["travel-helper-v2", 100]]));

    // 2. Status, from the rollouts' watch: steps only move forward, each pause or gate step was
    //    entered exactly once (one stepStartedAt), none was skipped, a pause lasted its duration.
    for (const [name, steps, states, canary] of [
      ["qwen-to-deepseek", scenario1, route, "mymodel-pool-v2"],
      ["travel-helper", scenario2, model, "travel-helper-v2"],
    ] as const) {
      const seen = rolloutStates(rolloutWatch).filter(s => s.name === name);
      const stepsSeen = seen.map(s => s.currentStep).filter((x): x is number => x !== undefined);
      expect(stepsSeen).toEqual([...stepsSeen].sort((a, b) => a - b));
      expect(seen.filter(s => ["Failed", "Aborted"].includes(s.phase))).toEqual([]);
      steps.forEach((step, i) => {
        if (step.setWeight !== undefined) return;
        const starts = new Set(
          seen.filter(s => s.currentStep === i && s.stepStartedAt).map(s => s.stepStartedAt),
        );
        expect({ name, step: i, starts: starts.size }).toEqual({ name, step: i, starts: 1 });
        if (step.pause?.duration) {
          const from = Date.parse([...starts][0]!);
          const ms = Number(step.pause.duration.replace("s", "")) * 1000;
          // The next weight written after the pause came no earlier than its end.
          const next = steps.slice(i + 1).find(x => x.setWeight !== undefined)!.setWeight!;
          const written = states.find(s => (s.weights.get(canary) ?? 0) === next)!;
          expect({ name, step: i, early: written.at < from + ms }).toEqual({
            name,
            step: i,
            early: false,
          });
        }
      });
      const final = rollout(name) as ReturnType<typeof rollout> & {
        status?: { lastAction?: { action: string; result: string } };
      };
      expect(final.status?.phase).toBe("Succeeded");
      // The promote was applied (once: steps[5] above was entered) and its annotation removed.
      expect(final.status?.lastAction).toMatchObject({ action: "promote", result: "Applied" });
      expect(final.metadata.annotations?.["rollouts.inference.dev/action"]).toBeUndefined();
      expect(final.status?.canaryWeight).toBe(100);
      expect(final.status?.currentStep).toBe(steps.length);
    }

    // 3. Events carry the step: each is its step's own kind and weight, and each step has one.
    //    Events are best-effort (posted in the background, like client-go's recorder): one may
    //    be lost when a kill falls right after its transition (the status already written), or
    //    repeated — possibly after a later step's — when a kill falls between the transition's
    //    Events and its status write, so the restarted operator enters the step again. Either is
    //    accepted only with such a kill; the status and the target above show the step itself
    //    ran once.
    const killBetween = (from: number, to: number) => kills.some(k => k.at >= from && k.at <= to);
    for (const [name, steps] of [
      ["qwen-to-deepseek", scenario1],
      ["travel-helper", scenario2],
    ] as const) {
      const events = stepEvents(name);
      process.stderr.write(
        `[chaos] ${name} Events: ${events.map(e => `${e.reason}[${e.step}]`).join(" ")}\n`,
      );
      for (const e of events) {
        const step = steps[e.step];
        const kind =
          step.setWeight !== undefined
            ? "WeightSet"
            : step.pause
              ? "PauseStarted"
              : "AnalysisStarted";
        expect({ step: e.step, reason: e.reason }).toEqual({ step: e.step, reason: kind });
        if (step.setWeight !== undefined)
          expect(e.message).toMatch(new RegExp(`canary \\S+ ${step.setWeight}%`));
      }
      // Back to an earlier step only across a kill.
      events.slice(1).forEach((e, j) => {
        const prev = events[j];
        if (e.step < prev.step)
          expect({
            name,
            from: prev.step,
            backTo: e.step,
            acrossKill: killBetween(prev.at, e.at),
          }).toEqual({ name, from: prev.step, backTo: e.step, acrossKill: true });
      });
      const seen = rolloutStates(rolloutWatch).filter(x => x.name === name);
      /** When the status recording steps[i] as entered (or passed) arrived from the watch. */
      const recordedAt = (i: number): number =>
        seen.find(
          x =>
            x.currentStep !== undefined &&
            (x.currentStep > i || (x.currentStep === i && !!x.stepStartedAt)),
        )?.at ?? Infinity;
      steps.forEach((_step, i) => {
        const of = events.filter(e => e.step === i);
        if (of.length === 0) {
          // Lost: the status recording the step was written, then the operator was killed
          // before the Event went out (had the kill come before the status write, the restarted
          // operator would have entered the step again, with its Event).
          const t = recordedAt(i);
          const kill = kills.find(k => k.at >= t - 50 && k.at <= t + 3000);
          process.stderr.write(
            `[chaos] ${name}: no Event for steps[${i}]; its status arrived at +${((t - appliedAt) / 1000).toFixed(2)} s, ${kill ? `kill ${kill.n} at +${((kill.at - appliedAt) / 1000).toFixed(2)} s` : "no kill right after"}\n`,
          );
          expect({ name, step: i, lost: "after its status, with a kill", kill: !!kill }).toEqual({
            name,
            step: i,
            lost: "after its status, with a kill",
            kill: true,
          });
        }
        for (const dup of of.slice(1))
          expect({
            name,
            step: i,
            repeated: "across a kill",
            kill: killBetween(of[0].at, dup.at),
          }).toEqual({ name, step: i, repeated: "across a kill", kill: true });
      });
    }

    // 4. The canary pool and the clone of the stable pool's InferenceModel exist exactly once.
    const pools = JSON.parse(
      kubectl(["get", "inferencepools.inference.networking.x-k8s.io", "-o", "json"]),
    ).items as { metadata: { name: string } }[];
    expect(pools.map(p => p.metadata.name).sort()).toEqual(["mymodel-pool-v1", "mymodel-pool-v2"]);
    const models = JSON.parse(kubectl(["get", "inferencemodels", "-o", "json"])).items as {
      metadata: { name: string };
      spec: { poolRef: { name: string }; modelName: string };
    }[];
    // Both InferenceModels of the stable pool were cloned for the canary pool, once each.
    expect(
      models
        .filter(m => m.spec.poolRef.name === "mymodel-pool-v2")
        .map(m => m.metadata.name)
        .sort(),
    ).toEqual(["mymodel-pool-v2-loramodel", "mymodel-pool-v2-mymodel-v1"]);
    expect(targetModels("loramodel")).toEqual([{ name: "travel-helper-v2", weight: 100 }]);
    expect(
      getJson<{ spec: { rules: { backendRefs: unknown[] }[] } }>("httproute", "inference-route")
        .spec.rules[0].backendRefs,
    ).toEqual([
      {
        group: "inference.networking.x-k8s.io",
        kind: "InferencePool",
        name: "mymodel-pool-v2",
        port: 8000,
        weight: 100,
      },
    ]);
    process.stderr.write(
      `[chaos] ${KILLS} kills in ${((killsDoneAt - appliedAt) / 1000).toFixed(1)} s; both Succeeded ${((doneAt - appliedAt) / 1000).toFixed(1)} s after apply; test ${((Date.now() - began) / 1000).toFixed(1)} s\n`,
    );
  }, 300_000);
});
