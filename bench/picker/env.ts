// The benchmark's world: pickers as child processes, pools and simulated pods in one namespace of
// the local environment, and what to read from a /metrics page.

import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import * as os from "node:os";
import {
  ClusterInfo,
  ensureCluster,
  isClusterRunning,
  kubectlFor,
  namespaceYaml,
  stopCluster,
} from "../../hack/env/cluster";
import { repoRoot } from "../../hack/env/config";
import { deployModelServer, ModelServer, removeModelServer } from "../../hack/env/model-servers";
import { waitFor } from "../../hack/env/procs";
import {
  pickerBundle,
  pickerRuntimeFlags,
  startPickerProcess,
} from "../../test/support/picker-process";
import { Strategy } from "./baselines";
import { keepAliveAgent, post } from "./load";

export const V1 = "travel-helper-v1";
export const V2 = "travel-helper-v2";
export const PORT = 8000;

// --- Pickers as child processes ----------------------------------------------------------------

export interface RunningPicker {
  proxyUrl: string;
  grpcPort: number;
  metricsUrl: string;
  logFile: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startPicker(
  info: ClusterInfo,
  namespace: string,
  pool: string,
  strategy: Strategy,
  nodeArgs: string[] = [],
  pickerArgs: string[] = [],
  runtimeFlags?: readonly string[],
): Promise<RunningPicker> {
  const logFile = path.join(info.logDir, `picker-bench-${pool}-${strategy}.log`);
  const p = await startPickerProcess({
    pool,
    namespace,
    kubeconfig: info.kubeconfig,
    nodeArgs,
    runtimeFlags,
    args: pickerArgs,
    bundled: true, // as the image runs it (picker/Dockerfile)
    script:
      strategy === "picker"
        ? undefined
        : [path.join(repoRoot, "bench", "picker", "baseline-picker.ts"), "--strategy", strategy],
    logFile,
  });
  return {
    proxyUrl: p.proxyUrl!,
    grpcPort: p.grpcPort!,
    metricsUrl: `${p.metricsBaseUrl}/metrics`,
    logFile,
    pid: p.pid,
    stop: p.stop,
  };
}

/**
 * A reference process of part (a) in front of `upstream`, bundled and run as the picker is:
 * bare-proxy.ts (HTTP) or bare-extproc.ts (ext_proc gRPC). Resolves with its port once it listens.
 */
export async function startBareServer(
  kind: "proxy" | "extproc",
  upstream: string,
): Promise<{ port: number; pid: number; stop(): void }> {
  const script = kind === "proxy" ? "bare-proxy.ts" : "bare-extproc.ts";
  const child = spawn(
    process.execPath,
    [
      ...pickerRuntimeFlags,
      pickerBundle(path.join(repoRoot, "bench", "picker", script)),
      "--upstream",
      upstream,
    ],
    { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] },
  );
  let output = "";
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  const listening = () => /^bare \S+ on :(\d+)$/m.exec(output)?.[1];
  await waitFor(`the reference ${script} to listen`, () => listening() !== undefined, 20000);
  return { port: Number(listening()), pid: child.pid!, stop: () => child.kill("SIGTERM") };
}

/**
 * Moves every thread of a process onto these CPUs (Linux `taskset`). Children started later
 * inherit the setting.
 */
export function pinToCpus(pid: number, cpus: string): void {
  execFileSync("taskset", ["--all-tasks", "--pid", "--cpu-list", cpus, String(pid)], {
    stdio: "ignore",
  });
}

/**
 * Limits a process (all its threads) to `cores` of CPU time, as a pod's `resources.limits.cpu`
 * does: a CFS quota per 100-ms period, in a cgroup of its own (cgroup v1's `cpu` controller, or
 * v2's `cpu.max`; needs root). Returns what undoes it.
 */
export function limitCpu(pid: number, cores: number): () => void {
  const v1 = "/sys/fs/cgroup/cpu";
  const v2 = "/sys/fs/cgroup";
  const periodUs = 100_000;
  const quotaUs = Math.round(cores * periodUs);
  const isV1 = fs.existsSync(path.join(v1, "cpu.cfs_quota_us"));
  const root = isV1 ? v1 : v2;
  if (!isV1 && !fs.existsSync(path.join(v2, "cgroup.controllers")))
    throw new Error(
      "no cgroup cpu controller here: --picker-cpu-limit needs cgroup v1 or v2 and root",
    );
  const dir = path.join(root, `modelrollout-bench-${pid}`);
  fs.mkdirSync(dir, { recursive: true });
  if (isV1) {
    fs.writeFileSync(path.join(dir, "cpu.cfs_period_us"), String(periodUs));
    fs.writeFileSync(path.join(dir, "cpu.cfs_quota_us"), String(quotaUs));
  } else fs.writeFileSync(path.join(dir, "cpu.max"), `${quotaUs} ${periodUs}`);
  fs.writeFileSync(path.join(dir, "cgroup.procs"), String(pid));
  return () => {
    try {
      fs.writeFileSync(path.join(root, "cgroup.procs"), String(pid));
    } catch {
      // the process is gone
    }
    try {
      fs.rmdirSync(dir); // a cgroup's directory goes with rmdir once it holds no process
    } catch {
      // already removed
    }
  };
}

/** Sum of a metric's series on a Prometheus text page whose line contains `labels`. */
export function metricSum(text: string, name: string, labels = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (line.includes(labels)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

export async function pageOf(url: string): Promise<string> {
  return (await fetch(url)).text();
}

/** Ready once it sees `pods` ready pods and splits travel-helper onto an adapter. */
export async function waitPickerReady(p: RunningPicker, pool: string, pods: number): Promise<void> {
  const agent = keepAliveAgent(1);
  const probe = Buffer.from(
    JSON.stringify({ model: "travel-helper", prompt: "hi", max_tokens: 1 }),
  );
  await waitFor(
    `picker to see ${pods} pods of ${pool} and the InferenceModel`,
    async () => {
      const page = await pageOf(p.metricsUrl);
      if (metricSum(page, "inference_pool_ready_pods", `name="${pool}"`) !== pods) return false;
      const r = await post(agent, `${p.proxyUrl}/v1/completions`, probe);
      const model = r.status === 200 ? JSON.parse(r.body.toString()).model : "";
      return model === V1 || model === V2;
    },
    30000,
    `see ${p.logFile}`,
  );
  await agent.close();
}

// --- Pools and pods ------------------------------------------------------------------------------

export interface Bench {
  info: ClusterInfo;
  namespace: string;
  kubectl: (args: string[], input?: string) => string;
  servers: ModelServer[];
}

/**
 * The local environment (started here when none runs: `startedHere` says to stop it at the end)
 * and a fresh namespace `<prefix>-<random>` for one benchmark run.
 */
export async function openBench(
  prefix: string,
  log: (msg: string) => void,
): Promise<{ b: Bench; startedHere: boolean }> {
  const startedHere = !isClusterRunning();
  const info = await ensureCluster(log);
  const namespace = `${prefix}-${randomBytes(3).toString("hex")}`;
  const kubectl = kubectlFor(info);
  kubectl(["apply", "-f", "-"], namespaceYaml(namespace));
  const b: Bench = {
    info,
    namespace,
    kubectl: (a, input) => kubectl(["-n", namespace, ...a], input),
    servers: [],
  };
  return { b, startedHere };
}

/** Removes the run's pods, pools, models and namespace; stops the environment if it started it. */
export async function closeBench(
  b: Bench,
  startedHere: boolean,
  log: (msg: string) => void,
): Promise<void> {
  await removePods(b, b.servers);
  b.kubectl([
    "delete",
    "inferencemodels.inference.networking.x-k8s.io,inferencepools.inference.networking.x-k8s.io",
    "--all",
    "--ignore-not-found",
  ]);
  b.kubectl(["delete", "namespace", b.namespace, "--wait=false", "--ignore-not-found"]);
  if (startedHere) await stopCluster(log);
}

/** The machine's load averages (1, 5, 15 min), for the reports. */
export function loadAverage(): string {
  return os
    .loadavg()
    .map(l => l.toFixed(1))
    .join(" ");
}

export function poolYaml(name: string, weights: [number, number]): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${name}}
spec:
  selector: {app: ${name}}
  targetPortNumber: ${PORT}
  extensionRef: {name: ${name}-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: travel-helper-${name}}
spec:
  modelName: travel-helper
  criticality: Critical
  poolRef: {name: ${name}}
  targetModels: [{name: ${V1}, weight: ${weights[0]}}, {name: ${V2}, weight: ${weights[1]}}]
`;
}

export async function deployPods(
  b: Bench,
  pool: string,
  count: number,
  sim: {
    maxNumSeqs: number;
    ttftMs: number;
    itlMs: number;
    maxLoras?: number;
    /** More simulator flags, e.g. the prefix cache's. */
    simArgs?: string[];
  },
): Promise<ModelServer[]> {
  const started = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      deployModelServer(b.info, {
        namespace: b.namespace,
        name: `${pool}-${i}`,
        labels: { app: pool },
        port: PORT,
        model: "Qwen/Qwen2.5-1.5B-Instruct",
        servedModelNames: ["mymodel"],
        loraAdapters: [V1, V2],
        maxLoras: sim.maxLoras ?? 2,
        maxNumSeqs: sim.maxNumSeqs,
        timeToFirstTokenMs: sim.ttftMs,
        interTokenLatencyMs: sim.itlMs,
        extraArgs: ["--max-model-len=4096", "--seed=7", ...(sim.simArgs ?? [])],
      }),
    ),
  );
  // Whatever started is recorded (and so removed at the end) even if another one failed.
  const servers = started.filter(r => r.status === "fulfilled").map(r => r.value);
  b.servers.push(...servers);
  const failed = started.find(r => r.status === "rejected");
  if (failed) throw failed.reason;
  return servers;
}

/** Removes pods `deployPods` started, and forgets them. */
export async function removePods(b: Bench, servers: readonly ModelServer[]): Promise<void> {
  for (const s of [...servers]) await removeModelServer(b.info, s.namespace, s.name);
  b.servers = b.servers.filter(s => !servers.includes(s));
}

/** Waits until no pod runs or queues a request (the previous phase has drained). */
export async function waitIdle(servers: ModelServer[]): Promise<void> {
  await waitFor(
    "the simulated pods to drain",
    async () => {
      for (const s of servers) {
        const page = await pageOf(`${s.url}/metrics`);
        if (
          metricSum(page, "vllm:num_requests_running") +
          metricSum(page, "vllm:num_requests_waiting")
        )
          return false;
      }
      return true;
    },
    60000,
  );
}
