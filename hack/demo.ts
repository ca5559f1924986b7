// `npm run demo` (npx tsx hack/demo.ts [--keep] [--plain] [--namespace NS]): a model release,
// done safely, on the local environment. It deploys the seed document's setup as emulated model
// servers, a picker per InferencePool, a local gateway, the operator and a traffic generator, then
// plays the seed's two releases as ModelRollouts and a bad version that is rolled back, and beside
// them a release between two v1 InferencePools served by the upstream endpoint picker (GIE v1.5.0),
// gated on that picker's own metrics. Exit status 0 when every scenario ends as expected.
import * as path from "node:path";
import {
  ClusterInfo,
  describeCluster,
  ensureCluster,
  isClusterRunning,
  stopCluster,
} from "./env/cluster";
import { repoRoot } from "./env/config";
import { PrerequisitesError } from "./env/prerequisites";
import { delay, tailOf } from "./env/procs";
import { isFinished, RolloutJson } from "../plugin/format";
import { SEED, UPSTREAM } from "./demo/manifests";
import { formatElapsed, ObservedSplit, ProgressBoard, RolloutView } from "./demo/progress";
import {
  adapterReadinessProblems,
  demoUsage,
  failingEvidence,
  gateMeasurements,
  loraModelProblems,
  parseDemoArgs,
  phaseProblems,
  routeProblems,
  Scenario,
  SCENARIOS,
  splitOf,
} from "./demo/scenarios";
import { StreamStats, TrafficGenerator } from "./demo/traffic";
import {
  applyObjects,
  DemoWorld,
  kubectlAsync,
  operatorAlive,
  removeDemo,
  startWorld,
} from "./demo/world";

const OBSERVE_WINDOW = "10s";
const RATE_PER_MODEL = 20;

interface Result {
  scenario: Scenario;
  startedAt?: number;
  finishedAt?: number;
  rollout?: RolloutJson;
  problems: string[];
  evidence?: string;
  /** The last measurement of each step gate of a rollout that succeeded. */
  measured?: string;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

async function promCounts(
  world: DemoWorld,
  model: string,
  by: string,
): Promise<Record<string, number>> {
  const q = `sum by (${by}) (increase(inference_objective_request_total{namespace="${world.namespace}",model_name="${model}"}[${OBSERVE_WINDOW}]))`;
  const res = await fetch(
    `${world.info.prometheusUrl}/api/v1/query?query=${encodeURIComponent(q)}`,
    {
      signal: AbortSignal.timeout(3000),
    },
  );
  const body = (await res.json()) as {
    data?: { result?: { metric: Record<string, string>; value: [number, string] }[] };
  };
  return Object.fromEntries(
    (body.data?.result ?? []).map(s => [s.metric[by] ?? "", Number(s.value[1])]),
  );
}

async function getRollouts(world: DemoWorld): Promise<Map<string, RolloutJson>> {
  const out = await kubectlAsync(world.info, [
    "-n",
    world.namespace,
    "get",
    "modelrollouts.rollouts.inference.dev",
    "-o",
    "json",
  ]);
  const items = (JSON.parse(out) as { items: RolloutJson[] }).items;
  return new Map(items.map(r => [r.metadata.name, r]));
}

async function getJson<T>(
  world: DemoWorld,
  resource: string,
  name: string,
): Promise<T | undefined> {
  try {
    return JSON.parse(
      await kubectlAsync(world.info, ["-n", world.namespace, "get", resource, name, "-o", "json"]),
    ) as T;
  } catch (err) {
    if (/NotFound|not found/.test(String(err))) return undefined;
    throw err;
  }
}

/** The Qwen pod that starts without travel-helper-v2 (scenario 2 loads it there). */
const ADAPTER_POD = "qwen-0";

/** The Events of a rollout, oldest first. */
async function rolloutEvents(
  world: DemoWorld,
  rollout: string,
): Promise<{ name: string; reason: string; message: string }[]> {
  const out = await kubectlAsync(world.info, [
    ...["-n", world.namespace, "get", "events", "-o", "json"],
    ...["--field-selector", `involvedObject.name=${rollout}`],
  ]);
  const items = (JSON.parse(out) as { items: EventJson[] }).items;
  return items
    .sort((a, b) => (a.lastTimestamp ?? "").localeCompare(b.lastTimestamp ?? ""))
    .map(e => ({ name: e.metadata.name, reason: e.reason, message: e.message }));
}

interface EventJson {
  metadata: { name: string };
  reason: string;
  message: string;
  lastTimestamp?: string;
}

/** The LoRA adapters a model-server pod lists in GET /v1/models (as the operator asks it). */
async function adaptersServedBy(world: DemoWorld, pod: string): Promise<string[] | undefined> {
  const ip = (
    await kubectlAsync(world.info, [
      ...["-n", world.namespace, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"],
    ])
  ).trim();
  try {
    const res = await fetch(`http://${ip}:8000/v1/models`, { signal: AbortSignal.timeout(3000) });
    const body = (await res.json()) as { data?: { id: string; parent?: string }[] };
    return (body.data ?? []).filter(m => m.parent).map(m => m.id);
  } catch {
    return undefined;
  }
}

/** The checks of what a finished scenario left behind (read before the next scenario changes it). */
async function verify(world: DemoWorld, r: Result): Promise<string[]> {
  const problems = phaseProblems(r.scenario, r.rollout);
  if (problems.length) return problems;
  switch (r.scenario.rollout) {
    case SCENARIOS[0].rollout:
      return routeProblems((await getJson(world, "httproute", SEED.route)) ?? {}, SEED.canaryPool);
    case SCENARIOS[1].rollout:
      return [
        ...loraModelProblems(
          (await getJson(world, "inferencemodel", SEED.loraInferenceModel)) ?? {},
        ),
        ...adapterReadinessProblems(
          r.rollout,
          await rolloutEvents(world, r.scenario.rollout),
          await adaptersServedBy(world, ADAPTER_POD),
          ADAPTER_POD,
        ),
      ];
    case SCENARIOS[3].rollout:
      return routeProblems(
        (await getJson(world, "httproute", UPSTREAM.route)) ?? {},
        UPSTREAM.canaryPool,
        UPSTREAM.route,
      );
    default: {
      const route = routeProblems(
        (await getJson(world, "httproute", SEED.route)) ?? {},
        SEED.canaryPool,
      );
      // postRollout.unusedPool: Delete removes the pool the rollout created from canaryTemplate.
      let pool: unknown = {};
      for (let i = 0; i < 20 && pool; i++) {
        pool = await getJson(world, "inferencepools.inference.networking.x-k8s.io", SEED.badPool);
        if (pool) await delay(250);
      }
      return [
        ...route,
        ...(pool
          ? [`InferencePool ${SEED.badPool} should have been deleted after the rollback`]
          : []),
      ];
    }
  }
}

function trafficFooter(stats: Record<string, StreamStats>): string[] {
  const parts = Object.entries(stats).map(
    ([model, s]) => `${model} ${s.sent} sent, ${s.ok} ok, ${s.failed} failed`,
  );
  return [`traffic (${RATE_PER_MODEL} req/s per model through the gateway): ${parts.join(" | ")}`];
}

function describeCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
}

async function smokeRequest(gatewayUrl: string, model: string, content: string): Promise<string> {
  const res = await fetch(`${gatewayUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model,
      temperature: 0,
      max_tokens: 12,
      messages: [{ role: "user", content }],
    }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${model}: HTTP ${res.status} ${text}`);
  const body = JSON.parse(text) as {
    model?: string;
    choices?: { message?: { content?: string } }[];
  };
  const answer = (body.choices?.[0]?.message?.content ?? "").slice(0, 60);
  return `model ${JSON.stringify(model)} -> HTTP ${res.status} from ${res.headers.get("x-gateway-backend")}, answered by ${body.model}: "${answer}..."`;
}

/**
 * Scenario 2's adapter readiness as it happens: the operator's Adapter* Events (the hold naming
 * the pod, the load, the end of the hold), each shown once.
 */
async function showAdapterEvents(
  world: DemoWorld,
  results: Result[],
  shown: Set<string>,
  board: ProgressBoard,
): Promise<void> {
  const r = results.find(x => x.scenario.rollout === SCENARIOS[1].rollout);
  if (r?.startedAt === undefined || r.finishedAt !== undefined) return;
  try {
    for (const e of await rolloutEvents(world, r.scenario.rollout)) {
      if (!e.reason.startsWith("Adapter") || shown.has(e.name)) continue;
      shown.add(e.name);
      board.event(`${r.scenario.rollout}: ${e.reason} - ${e.message}`);
    }
  } catch {
    /* the apiserver is busy: shown on the next round */
  }
}

async function play(
  world: DemoWorld,
  traffic: TrafficGenerator,
  board: ProgressBoard,
  interrupted: () => boolean,
): Promise<Result[]> {
  const prometheus = world.info.prometheusUrl;
  const results: Result[] = SCENARIOS.map(scenario => ({ scenario, problems: [] }));
  const observed = new Map<string, ObservedSplit>();
  const lastPhase = new Map<string, string>();
  let lastObservedAt = 0;
  const shownEvents = new Set<string>();

  for (;;) {
    if (interrupted()) throw new Error("interrupted");
    if (!operatorAlive(world))
      throw new Error(`the operator stopped: ${tailOf(world.operatorLog, 10)}`);
    const now = Date.now();
    const rollouts = await getRollouts(world);

    for (const r of results) {
      const s = r.scenario;
      if (r.finishedAt !== undefined) continue;
      if (r.startedAt === undefined) {
        const dep = results.find(x => x.scenario.rollout === s.after);
        if (dep && dep.finishedAt === undefined) continue;
        if (dep && dep.rollout?.status?.phase !== "Succeeded") {
          r.problems.push(`not started: ${dep.scenario.rollout} did not succeed`);
          r.finishedAt = now;
          continue;
        }
        await applyObjects(world.info, world.namespace, [s.manifest(prometheus, world.gatewayUrl)]);
        r.startedAt = Date.now();
        board.event(`kubectl apply ModelRollout ${s.rollout} - ${s.title}`);
        continue;
      }
      r.rollout = rollouts.get(s.rollout);
      const phase = r.rollout?.status?.phase ?? "Pending";
      if (lastPhase.get(s.rollout) !== phase) {
        if (lastPhase.has(s.rollout) || phase !== "Pending")
          board.event(
            `${s.rollout}: phase ${phase}${r.rollout?.status?.message ? ` - ${r.rollout.status.message}` : ""}`,
          );
        lastPhase.set(s.rollout, phase);
      }
      if (r.rollout && isFinished(r.rollout)) {
        r.finishedAt = Date.now();
        r.problems.push(...(await verify(world, r)));
        r.evidence = failingEvidence(r.rollout);
        if (r.rollout.status?.phase === "Succeeded") r.measured = gateMeasurements(r.rollout);
        const verdict = r.problems.length
          ? `NOT as expected: ${r.problems.join("; ")}`
          : `as expected (${s.expected})`;
        board.event(
          `${s.rollout}: finished in ${formatElapsed(r.finishedAt - r.startedAt)}, ${verdict}`,
        );
      } else if (now - r.startedAt > s.deadlineMs) {
        r.finishedAt = now;
        r.problems.push(
          `still ${phase} after ${formatElapsed(s.deadlineMs)}: ${r.rollout?.status?.message ?? ""}`,
        );
        board.event(`${s.rollout}: gave up waiting (${r.problems[r.problems.length - 1]})`);
      }
    }

    if (now - lastObservedAt >= 2000) {
      lastObservedAt = now;
      await showAdapterEvents(world, results, shownEvents, board);
      for (const r of results) {
        if (r.startedAt === undefined || r.finishedAt !== undefined) continue;
        const o = r.scenario.observe;
        try {
          const split = splitOf(await promCounts(world, o.model, o.by), o.stable, o.canary);
          if (split) observed.set(r.scenario.rollout, { ...split, window: OBSERVE_WINDOW });
          else observed.delete(r.scenario.rollout);
        } catch {
          /* Prometheus busy: keep the last value */
        }
      }
    }

    const views: RolloutView[] = results.map(r => ({
      name: r.scenario.rollout,
      title: r.scenario.title,
      rollout:
        r.startedAt !== undefined ? (r.rollout ?? rollouts.get(r.scenario.rollout)) : undefined,
      waitingFor:
        r.startedAt !== undefined
          ? "applied; waiting for the operator"
          : r.scenario.after
            ? `starts when ${r.scenario.after} has finished`
            : "about to be applied",
      observed: observed.get(r.scenario.rollout),
    }));
    board.update(views, trafficFooter(traffic.snapshot()));
    if (results.every(r => r.finishedAt !== undefined)) return results;
    await delay(1000);
  }
}

function summary(
  results: Result[],
  stats: Record<string, StreamStats>,
  timings: Record<string, number>,
): string[] {
  const lines = ["", "=== Summary"];
  const rows = results.map(r => {
    const took =
      r.startedAt !== undefined && r.finishedAt !== undefined
        ? formatElapsed(r.finishedAt - r.startedAt)
        : "-";
    const ok = r.problems.length === 0;
    return `  ${ok ? "PASS" : "FAIL"}  ${r.scenario.rollout.padEnd(26)} expected ${r.scenario.expected.padEnd(9)} got ${(r.rollout?.status?.phase ?? "-").padEnd(11)} in ${took}`;
  });
  lines.push(...rows);
  for (const r of results) {
    for (const p of r.problems) lines.push(`        ${r.scenario.rollout}: ${p}`);
    if (r.evidence) lines.push(`        ${r.scenario.rollout}: rolled back because ${r.evidence}`);
    if (r.measured) lines.push(`        ${r.scenario.rollout}: last step gates: ${r.measured}`);
  }
  lines.push("  traffic sent through the local gateway:");
  for (const [model, s] of Object.entries(stats)) {
    const answered =
      model === SEED.loraModel ? describeCounts(s.byAnsweringModel) : describeCounts(s.byPool);
    const failures = Object.entries(s.byStatus)
      .filter(([code]) => !code.startsWith("2"))
      .map(([code, n]) => `${n}x ${code}`)
      .join(", ");
    const from = describeCounts(s.failedByPool);
    lines.push(
      `    ${model}: ${s.sent} requests, ${s.ok} ok (answered by ${answered || "-"}), ${s.failed} failed${s.failed ? ` (${failures}; from ${from})` : ""}`,
    );
  }
  lines.push(
    `  time: environment ${formatElapsed(timings.environment)}, set-up ${formatElapsed(timings.setup)}, scenarios ${formatElapsed(timings.scenarios)}, total ${formatElapsed(timings.total)}`,
  );
  return lines;
}

function lookAround(world: DemoWorld, kept: boolean): string[] {
  const ns = world.namespace;
  const kubectlDir = path.dirname(world.info.kubectl);
  const promQuery = `sum by (pool, target_model_name) (rate(inference_objective_request_total{namespace="${ns}"}[30s]))`;
  return [
    "",
    kept
      ? "=== Look around (everything is still running; stop it all with `npm run cluster:down`)"
      : "=== Look around: run `npm run demo -- --keep` to keep the world running, then:",
    `  export KUBECONFIG=${world.info.kubeconfig}`,
    `  export PATH=${kubectlDir}:${path.join(repoRoot, "bin")}:$PATH   # the environment's kubectl and kubectl-modelrollout`,
    `  kubectl -n ${ns} get mro`,
    `  kubectl -n ${ns} describe mro ${SCENARIOS[0].rollout}`,
    `  kubectl modelrollout -n ${ns} get ${SCENARIOS[2].rollout}`,
    `  kubectl -n ${ns} get httproute ${SEED.route} -o yaml`,
    `  kubectl -n ${ns} get inferencemodel ${SEED.loraInferenceModel} -o yaml`,
    `  kubectl -n ${ns} get inferencepools.inference.networking.k8s.io   # the v1 pools the upstream EPP serves`,
    `  curl -s ${world.gatewayUrl}/v1/chat/completions -H 'Content-Type: application/json' \\`,
    `       -d '{"model":"${SEED.loraModel}","messages":[{"role":"user","content":"I just arrived in Beijing. Can you recommend a tourist spot?"}]}'`,
    `  Prometheus: ${world.info.prometheusUrl}/graph?g0.expr=${encodeURIComponent(promQuery)}&g0.tab=0`,
    `  logs: ${path.join(world.info.logDir, `demo.${ns}.*.log`)} (gateway, pickers, operator), upstream EPPs in upstream-epp.${ns}.*.log, model servers in model-server.${ns}.*.log`,
  ];
}

async function main(): Promise<number> {
  const opts = parseDemoArgs(process.argv.slice(2));
  if (opts.help) {
    say(demoUsage);
    return 0;
  }
  process.chdir(repoRoot);
  const live =
    !opts.plain && process.stdout.isTTY === true && !process.env.CI && process.env.TERM !== "dumb";
  const t0 = Date.now();
  let interrupted = false;
  process.on("SIGINT", () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    say("\ninterrupted: cleaning up (Ctrl-C again to quit at once)");
  });

  say(
    "ModelRollout demo: the seed's two releases as ModelRollouts, plus a bad version that is rolled back, and a",
  );
  say(
    "release between two v1 InferencePools served by the upstream endpoint picker (GIE v1.5.0), gated on its metrics.",
  );
  say(
    `Everything runs on this machine: a real kube-apiserver, etcd and Prometheus, emulated model-server pods, a picker`,
  );
  say(
    `per InferencePool (ours, or the upstream EPP for the v1 pools), the operator, and a local gateway. In a cluster your`,
  );
  say(
    `Gateway (with the Inference Extension) applies the HTTPRoute's weights; here hack/demo/gateway.ts does that job so the`,
  );
  say(`weights the operator writes become real traffic.\n`);

  const envWasRunning = isClusterRunning();
  let info: ClusterInfo;
  try {
    info = await ensureCluster(msg => say(`[env] ${msg}`));
  } catch (err) {
    // Do not leave half an environment behind when the demo was the one starting it (missing
    // prerequisites stop it before anything starts).
    if (!envWasRunning && !(err instanceof PrerequisitesError))
      await stopCluster(msg => say(`[env] ${msg}`));
    throw err;
  }
  process.env.KUBECONFIG = info.kubeconfig;
  const tEnv = Date.now();
  say(
    `[env] ready in ${formatElapsed(tEnv - t0)}${envWasRunning ? " (already running: the demo will leave it running)" : ""}`,
  );

  let world: DemoWorld | undefined;
  let traffic: TrafficGenerator | undefined;
  let code = 1;
  try {
    if (await removeDemo(info, opts.namespace))
      say(`[setup] removed what an earlier demo left in namespace ${opts.namespace}`);
    world = await startWorld(info, opts.namespace, msg => say(`[setup] ${msg}`));
    const tSetup = Date.now();
    say(`[setup] done in ${formatElapsed(tSetup - tEnv)}`);

    // The seed's "validate the inference service" step, through the gateway.
    say(`[check] ${await smokeRequest(world.gatewayUrl, SEED.model, "Who are you?")}`);
    say(
      `[check] ${await smokeRequest(world.gatewayUrl, SEED.loraModel, "I just arrived in Beijing. Can you recommend a tourist spot?")}`,
    );
    say(
      `[check] ${await smokeRequest(world.gatewayUrl, UPSTREAM.model, "Review this change.")} (pod picked by the upstream EPP)`,
    );

    traffic = new TrafficGenerator(world.gatewayUrl, [
      { model: SEED.model, ratePerSecond: RATE_PER_MODEL, prompt: "Who are you?" },
      {
        model: SEED.loraModel,
        ratePerSecond: RATE_PER_MODEL,
        prompt: "I just arrived in Beijing. Can you recommend a tourist spot?",
      },
      { model: UPSTREAM.model, ratePerSecond: RATE_PER_MODEL, prompt: "Review this change." },
    ]);
    traffic.start();
    say(
      `[traffic] ${RATE_PER_MODEL} requests/s each for "${SEED.model}", "${SEED.loraModel}" and "${UPSTREAM.model}" to ${world.gatewayUrl} (loopback only, stops with the demo)`,
    );
    await delay(3000);

    const board = new ProgressBoard(process.stdout, live, t0);
    const results = await play(world, traffic, board, () => interrupted);
    board.finish();
    const stats = traffic.snapshot();
    await traffic.stop();
    traffic = undefined;
    const tEnd = Date.now();
    for (const line of summary(results, stats, {
      environment: tEnv - t0,
      setup: tSetup - tEnv,
      scenarios: tEnd - tSetup,
      total: tEnd - t0,
    }))
      say(line);
    code = results.every(r => r.problems.length === 0) ? 0 : 1;
    say(
      code === 0
        ? "\nAll scenarios ended as expected."
        : "\nSome scenarios did NOT end as expected (see above).",
    );
  } catch (err) {
    say(`\ndemo failed: ${err instanceof Error ? err.message : err}`);
    say(`logs: ${info.logDir}`);
    code = interrupted ? 130 : 1;
  } finally {
    await traffic?.stop();
    if (world) for (const line of lookAround(world, opts.keep)) say(line);
    if (opts.keep) {
      say(`\n--keep: the world stays up.\n${describeCluster(info)}`);
    } else if (envWasRunning) {
      say(
        `\n[cleanup] removing the demo from namespace ${opts.namespace} (the environment was already running: it stays up)`,
      );
      await removeDemo(info, opts.namespace);
      say(`[cleanup] done`);
    } else {
      say("\n[cleanup] stopping the environment the demo started");
      await stopCluster(msg => say(`[cleanup] ${msg}`), { wipe: true });
    }
  }
  return code;
}

main().then(
  code => process.exit(code),
  err => {
    const text =
      err instanceof PrerequisitesError ? err.message : err instanceof Error ? err.stack : err;
    process.stderr.write(`demo: ${text}\n`);
    process.exit(1);
  },
);
