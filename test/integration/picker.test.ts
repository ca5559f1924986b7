// The picker on the real control plane with simulated model-server pods: the picker runs as its
// own process (`picker/main.ts`, as `npm run picker` does), discovers the InferencePool, its pods
// and InferenceModels by watching the real kube-apiserver, scrapes the simulators' /metrics, and
// serves real traffic through its two front doors. Every test has its own namespace, pods and
// picker, and removes them again.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { repoRoot } from "../../hack/env/config";
import {
  ModelServer,
  ModelServerOptions,
  deployModelServer,
  removeModelServer,
  setPodReady,
} from "../../hack/env/model-servers";
import { addScrapeTarget, removeScrapeTarget } from "../../hack/env/prometheus";
import { loadExtProcDefinition } from "../../picker/protos";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";

const V1 = "travel-helper-v1";
const V2 = "travel-helper-v2";
const POOL = "travel-pool";
const PORT = 8000;

// --- The picker as a child process -------------------------------------------------------------

interface RunningPicker {
  proxyUrl: string;
  grpcPort: number;
  metricsUrl: string;
  metricsPort: number;
  logFile: string;
  stop(): Promise<void>;
}

/** Starts `picker/main.ts` on loopback with every port chosen by the OS (read back from its log). */
async function startPicker(namespace: string, extraArgs: string[] = []): Promise<RunningPicker> {
  const { info } = env();
  const logFile = path.join(info.logDir, `picker-${namespace}.log`);
  const child: ChildProcess = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(repoRoot, "picker", "main.ts"),
      ...["--pool", POOL, "--namespace", namespace, "--host", "127.0.0.1"],
      ...["--grpc-port", "0", "--health-port", "0", "--metrics-port", "0", "--proxy-port", "0"],
      ...extraArgs,
    ],
    { cwd: repoRoot, env: { ...process.env, KUBECONFIG: info.kubeconfig }, stdio: "pipe" },
  );
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    fs.appendFileSync(logFile, chunk);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  };
  const portOf = (pattern: RegExp) => Number(pattern.exec(output)?.[1]);
  try {
    await waitFor(
      "the picker to listen and start serving its pool",
      () => {
        if (child.exitCode !== null) throw new Error(`picker exited: ${output}`);
        return /serving pool/.test(output);
      },
      30000,
      `see ${logFile}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const metricsPort = portOf(/metrics on :(\d+)/);
  return {
    proxyUrl: `http://127.0.0.1:${portOf(/HTTP proxy on :(\d+)/)}`,
    grpcPort: portOf(/ext_proc on :(\d+)/),
    metricsUrl: `http://127.0.0.1:${metricsPort}`,
    metricsPort,
    logFile,
    stop,
  };
}

/** The value of one series on the picker's /metrics (labels matched as a substring). */
async function pickerMetric(p: RunningPicker, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${p.metricsUrl}/metrics`)).text();
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    found = true;
  }
  return found ? sum : NaN;
}

// --- A namespace with a pool, its pods and its picker ------------------------------------------

interface Fixture {
  ns: TestNamespace;
  servers: ModelServer[];
  picker: RunningPicker;
  kubectl: (args: string[], input?: string) => string;
  cleanups: (() => void | Promise<void>)[];
}

type SimOptions = Partial<Omit<ModelServerOptions, "namespace" | "name" | "labels" | "port">>;

/**
 * Deploys one emulated model-server pod. POD_NAME/POD_NAMESPACE reach the simulator as the
 * Downward API would set them, so every answer carries `x-inference-pod` (as llm-d-inference-sim
 * does): the client sees which pod served it. deployModelServer starts the process (with this
 * process' environment) before its first await, so the variables are set only around that call.
 */
function deployPod(namespace: string, name: string, sim: SimOptions): Promise<ModelServer> {
  const saved = { name: process.env.POD_NAME, namespace: process.env.POD_NAMESPACE };
  process.env.POD_NAME = name;
  process.env.POD_NAMESPACE = namespace;
  try {
    return deployModelServer(env().info, {
      model: "Qwen/Qwen2.5-1.5B-Instruct",
      servedModelNames: ["mymodel"],
      loraAdapters: [V1, V2],
      maxLoras: 2,
      maxNumSeqs: 64,
      ...sim,
      namespace,
      name,
      labels: { app: "vllm-travel" },
      port: PORT,
    });
  } finally {
    restoreEnv("POD_NAME", saved.name);
    restoreEnv("POD_NAMESPACE", saved.namespace);
  }
}

function restoreEnv(key: string, value: string | undefined): void {
  if (value === undefined) delete process.env[key];
  else process.env[key] = value;
}

const poolYaml = `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${POOL}}
spec:
  selector: {app: vllm-travel}
  targetPortNumber: ${PORT}
  extensionRef: {name: ${POOL}-epp}
`;

function modelYaml(weights: [number, number] | undefined): string {
  const targets = weights
    ? `[{name: ${V1}, weight: ${weights[0]}}, {name: ${V2}, weight: ${weights[1]}}]`
    : `[{name: ${V1}}, {name: ${V2}}]`;
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: travel-helper}
spec:
  modelName: travel-helper
  criticality: Critical
  poolRef: {name: ${POOL}}
  targetModels: ${targets}
`;
}

async function setUp(
  prefix: string,
  opts: { pods: number; sim?: SimOptions; weights?: [number, number]; pickerArgs?: string[] },
): Promise<Fixture> {
  const ns = createTestNamespace(prefix);
  const kubectl = (args: string[], input?: string) =>
    env().kubectl(["-n", ns.name, ...args], input);
  const fixture: Fixture = {
    ns,
    servers: [],
    picker: undefined as unknown as RunningPicker,
    kubectl,
    cleanups: [],
  };
  try {
    kubectl(["apply", "-f", "-"], poolYaml + "---" + modelYaml(opts.weights));
    const names = Array.from({ length: opts.pods }, (_, i) => `vllm-travel-${i}`);
    const [picker, ...servers] = await Promise.all([
      startPicker(ns.name, opts.pickerArgs),
      ...names.map(n => deployPod(ns.name, n, opts.sim ?? {})),
    ]);
    fixture.picker = picker as RunningPicker;
    fixture.servers = servers as ModelServer[];
    await waitFor(
      `the picker to see ${opts.pods} ready pods`,
      async () =>
        (await pickerMetric(fixture.picker, "inference_pool_ready_pods", `name="${POOL}"`)) ===
        opts.pods,
      30000,
      `see ${fixture.picker.logFile}`,
    );
    // The InferenceModel is known once a request for the public name is split onto an adapter.
    await waitFor(
      "the picker to split travel-helper onto its adapters",
      async () => [V1, V2].includes((await complete(fixture.picker.proxyUrl)).model ?? ""),
      30000,
      `see ${fixture.picker.logFile}`,
    );
    return fixture;
  } catch (err) {
    await tearDown(fixture);
    throw err;
  }
}

async function tearDown(f: Fixture): Promise<void> {
  for (const c of f.cleanups.reverse()) await c();
  await f.picker?.stop();
  await Promise.all(f.servers.map(s => removeModelServer(env().info, s.namespace, s.name)));
  await f.ns.cleanup();
}

// --- Traffic ----------------------------------------------------------------------------------

interface Outcome {
  status: number;
  /** `model` of the answer: the adapter that answered a LoRA request. */
  model?: string;
  /** `x-inference-pod` of the answer. */
  pod?: string;
  /** The `x-session-id` the request carried. */
  session?: string;
  error?: string;
  startMs: number;
  endMs: number;
}

async function complete(
  url: string,
  opts: { headers?: Record<string, string>; prompt?: string; maxTokens?: number } = {},
): Promise<Outcome> {
  const startMs = performance.now();
  try {
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...opts.headers },
      body: JSON.stringify({
        model: "travel-helper",
        prompt: opts.prompt ?? "Plan a weekend in Lisbon",
        max_tokens: opts.maxTokens ?? 1,
      }),
    });
    const text = await res.text();
    let model: string | undefined;
    try {
      model = (JSON.parse(text) as { model?: string }).model;
    } catch {
      /* an error page */
    }
    return {
      status: res.status,
      session: opts.headers?.["x-session-id"],
      model,
      pod: res.headers.get("x-inference-pod") ?? undefined,
      error: res.ok ? undefined : text,
      startMs,
      endMs: performance.now(),
    };
  } catch (err) {
    return { status: 0, error: String(err), startMs, endMs: performance.now() };
  }
}

type RequestOptions = Parameters<typeof complete>[1];

/** `count` requests, `concurrency` at a time. */
async function drive(
  url: string,
  count: number,
  concurrency: number,
  options: (i: number) => RequestOptions = () => ({}),
): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      out.push(await complete(url, options(i)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

/** Traffic that flows until stopped. */
function flow(url: string, concurrency: number) {
  const outcomes: Outcome[] = [];
  let running = true;
  const workers = Array.from({ length: concurrency }, async () => {
    while (running) outcomes.push(await complete(url));
  });
  return {
    outcomes,
    async stop(): Promise<Outcome[]> {
      running = false;
      await Promise.all(workers);
      return outcomes;
    },
  };
}

function countBy<T>(items: T[], key: (t: T) => string | undefined): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) {
    const k = key(item) ?? "(none)";
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

function failures(outcomes: Outcome[]): Outcome[] {
  return outcomes.filter(o => o.status !== 200);
}

/** Pearson's chi-square statistic of observed counts against expected shares. */
function chiSquare(observed: number[], shares: number[]): number {
  const n = observed.reduce((a, b) => a + b, 0);
  const total = shares.reduce((a, b) => a + b, 0);
  return observed.reduce((sum, o, i) => {
    const expected = (n * shares[i]) / total;
    return sum + (o - expected) ** 2 / expected;
  }, 0);
}

/** Chi-square critical value, 1 degree of freedom, p = 0.001: a false alarm once in 1,000 runs. */
const CHI2_CRITICAL_1DF = 10.828;

const report = (line: string) => process.stderr.write(`[picker] ${line}\n`);

// --- Tests ------------------------------------------------------------------------------------

describe("picker on the real control plane with simulated model servers", () => {
  it("splits travel-helper 90/10 onto its adapters within statistical bounds (HTTP proxy)", async () => {
    const f = await setUp("picker-split", { pods: 2, weights: [90, 10] });
    try {
      const outcomes = await drive(f.picker.proxyUrl, 2000, 16);
      expect(failures(outcomes)).toEqual([]);
      const counts = countBy(outcomes, o => o.model);
      expect(Object.keys(counts).sort()).toEqual([V1, V2]);
      const chi2 = chiSquare([counts[V1], counts[V2]], [90, 10]);
      report(`90/10 split over 2,000 requests: ${JSON.stringify(counts)}, chi² = ${chi2.toFixed(2)}`);
      expect(chi2).toBeLessThan(CHI2_CRITICAL_1DF);
      // Both pods served: the split is per request, the pod choice independent of it.
      expect(Object.keys(countBy(outcomes, o => o.pod)).sort()).toEqual(
        f.servers.map(s => s.name).sort(),
      );
    } finally {
      await tearDown(f);
    }
  });

  it("applies changed weights within a second while traffic flows, without a failed request", async () => {
    const f = await setUp("picker-weights", { pods: 2, weights: [90, 10] });
    try {
      const traffic = flow(f.picker.proxyUrl, 8);
      await waitFor("traffic to flow", () => traffic.outcomes.length >= 200, 30000);

      // 90/10 → v2 only: the cut-over is sharp, so its delay can be measured.
      const patchV2Only = performance.now();
      f.kubectl([
        "patch",
        "inferencemodel",
        "travel-helper",
        "--type=merge",
        "-p",
        JSON.stringify({ spec: { targetModels: [{ name: V2, weight: 100 }] } }),
      ]);
      const patchedV2Only = performance.now();
      await waitFor(
        "1.5 s of traffic after the patch",
        () => traffic.outcomes.some(o => o.startMs > patchedV2Only + 1500),
        30000,
      );

      // → 50/50: the new split must hold from one second after the patch on.
      f.kubectl([
        "patch",
        "inferencemodel",
        "travel-helper",
        "--type=merge",
        "-p",
        JSON.stringify({
          spec: {
            targetModels: [
              { name: V1, weight: 50 },
              { name: V2, weight: 50 },
            ],
          },
        }),
      ]);
      const patchedEven = performance.now();
      await waitFor(
        "800 requests started later than a second after the second patch",
        () => traffic.outcomes.filter(o => o.startMs > patchedEven + 1000).length >= 800,
        30000,
      );
      const outcomes = await traffic.stop();

      expect(failures(outcomes)).toEqual([]);
      const lastV1 = Math.max(
        ...outcomes.filter(o => o.model === V1 && o.startMs < patchedEven).map(o => o.startMs),
      );
      const firstV1Again = Math.min(
        ...outcomes.filter(o => o.model === V1 && o.startMs > patchedEven).map(o => o.startMs),
      );
      report(
        `weights → v2 only: last v1 request started ${(lastV1 - patchV2Only).toFixed(0)} ms after ` +
          `kubectl patch began (${(lastV1 - patchedV2Only).toFixed(0)} ms after it returned); ` +
          `→ 50/50: first v1 ${(firstV1Again - patchedEven).toFixed(0)} ms after the patch returned`,
      );
      expect(lastV1 - patchedV2Only).toBeLessThan(1000);
      expect(firstV1Again - patchedEven).toBeLessThan(1000);
      const onlyV2 = outcomes.filter(
        o => o.startMs > patchedV2Only + 1000 && o.startMs < patchedEven,
      );
      expect(onlyV2.length).toBeGreaterThan(100);
      expect(countBy(onlyV2, o => o.model)).toEqual({ [V2]: onlyV2.length });

      const even = outcomes.filter(o => o.startMs > patchedEven + 1000);
      const counts = countBy(even, o => o.model);
      const chi2 = chiSquare([counts[V1] ?? 0, counts[V2] ?? 0], [50, 50]);
      report(`50/50 after the change: ${JSON.stringify(counts)}, chi² = ${chi2.toFixed(2)}`);
      expect(chi2).toBeLessThan(CHI2_CRITICAL_1DF);
    } finally {
      await tearDown(f);
    }
  });

  it("sends no more traffic to a pod that turned unready", async () => {
    const f = await setUp("picker-unready", { pods: 2, weights: [50, 50] });
    try {
      const [keep, drop] = f.servers;
      const traffic = flow(f.picker.proxyUrl, 8);
      await waitFor(
        "both pods to serve",
        () => new Set(traffic.outcomes.map(o => o.pod)).size === 2,
        30000,
      );
      setPodReady(env().info, f.ns.name, drop.name, drop.podIP, false);
      const unready = performance.now();
      await waitFor(
        "the picker to count one ready pod",
        async () =>
          (await pickerMetric(f.picker, "inference_pool_ready_pods", `name="${POOL}"`)) === 1,
        10000,
      );
      await waitFor(
        "500 requests started a second after the pod turned unready",
        () => traffic.outcomes.filter(o => o.startMs > unready + 1000).length >= 500,
        30000,
      );
      const outcomes = await traffic.stop();
      expect(failures(outcomes)).toEqual([]);
      const lastOnDropped = Math.max(
        ...outcomes.filter(o => o.pod === drop.name).map(o => o.startMs),
      );
      report(
        `unready pod: last request sent to it started ${(lastOnDropped - unready).toFixed(0)} ms ` +
          `after its Ready condition turned False`,
      );
      const later = outcomes.filter(o => o.startMs > unready + 1000);
      expect(countBy(later, o => o.pod)).toEqual({ [keep.name]: later.length });
    } finally {
      await tearDown(f);
    }
  });

  it("keeps each adapter on one pod (LoRA affinity): few adapter swaps", async () => {
    // Two pods that can hold one adapter each, two adapters at 50/50, requests that overlap.
    const f = await setUp("picker-lora", {
      pods: 2,
      weights: [50, 50],
      sim: { maxLoras: 1, maxNumSeqs: 8, timeToFirstTokenMs: 20, interTokenLatencyMs: 2 },
    });
    try {
      const outcomes = await drive(f.picker.proxyUrl, 600, 6, i => ({
        prompt: `request ${i}`,
        maxTokens: 5,
      }));
      expect(failures(outcomes)).toEqual([]);
      // Per pod, how often each adapter answered; requests for the pod's minority adapter are
      // the ones that made it load an adapter it did not hold (an adapter swap, or a wait).
      const perPod: Record<string, Record<string, number>> = {};
      for (const o of outcomes) {
        perPod[o.pod!] ??= {};
        perPod[o.pod!][o.model!] = (perPod[o.pod!][o.model!] ?? 0) + 1;
      }
      const minority = Object.values(perPod).reduce(
        (sum, counts) => sum + Object.values(counts).reduce((a, b) => a + b) - Math.max(...Object.values(counts)),
        0,
      );
      const majorities = Object.values(perPod).map(
        counts => Object.entries(counts).sort((a, b) => b[1] - a[1])[0][0],
      );
      report(
        `LoRA affinity, 600 requests, 2 pods × max-loras 1: ${JSON.stringify(perPod)}; ` +
          `${minority} requests (${((100 * minority) / outcomes.length).toFixed(1)} %) off their pod's adapter`,
      );
      // Each pod mostly serves its own adapter, and the two pods hold different ones. Blind
      // balancing would put about half of the requests on the other adapter's pod.
      expect(majorities.sort()).toEqual([V1, V2]);
      expect(minority / outcomes.length).toBeLessThan(0.05);
    } finally {
      await tearDown(f);
    }
  });

  it("keeps a session on one adapter version (--session-header) while the split stays 50/50", async () => {
    const f = await setUp("picker-sticky", {
      pods: 2,
      weights: [50, 50],
      pickerArgs: ["--session-header", "x-session-id"],
    });
    try {
      const sessions = 100;
      const outcomes = await drive(f.picker.proxyUrl, sessions * 15, 12, i => ({
        headers: { "x-session-id": `session-${i % sessions}` },
      }));
      expect(failures(outcomes)).toEqual([]);
      const versions = new Map<string, Set<string>>();
      for (const o of outcomes) {
        const seen = versions.get(o.session!) ?? new Set<string>();
        seen.add(o.model!);
        versions.set(o.session!, seen);
      }
      const switched = [...versions].filter(([, seen]) => seen.size > 1).map(([s]) => s);
      const perVersion = countBy([...versions.values()], seen => [...seen][0]);
      report(
        `sticky sessions: ${sessions} sessions × 15 requests, ${switched.length} switched version; ` +
          `sessions per version ${JSON.stringify(perVersion)}`,
      );
      expect(versions.size).toBe(sessions);
      expect(switched).toEqual([]);
      // The split still applies per new session: 50/50 over 100 sessions.
      expect(chiSquare([perVersion[V1] ?? 0, perVersion[V2] ?? 0], [50, 50])).toBeLessThan(
        CHI2_CRITICAL_1DF,
      );
      // Without a session key every request is drawn on its own.
      const unkeyed = await drive(f.picker.proxyUrl, 100, 12);
      expect(Object.keys(countBy(unkeyed, o => o.model)).sort()).toEqual([V1, V2]);
    } finally {
      await tearDown(f);
    }
  });
});

void grpc;
void loadExtProcDefinition;
void addScrapeTarget;
void removeScrapeTarget;
void promQuery;
