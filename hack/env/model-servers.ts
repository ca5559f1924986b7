// Emulated model-server pods. There is no kubelet here, so for each "pod" we:
//   1. create the Pod object with the caller's labels,
//   2. run a vLLM simulator process that really answers at podIP:targetPort (a distinct loopback
//      address 127.0.0.N per pod),
//   3. mark the Pod Ready with that podIP through the status subresource,
//   4. register it as a Prometheus scrape target.
// Removing it undoes all four.
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { ClusterInfo, kubectlFor } from "./cluster";
import { repoRoot } from "./config";
import { freePort, isAlive, readProc, startProc, stopProc, tailOf, waitFor } from "./procs";
import { addScrapeTarget, removeScrapeTarget } from "./prometheus";
import { claimIp, modelServerProcName as procName, releaseIp } from "./ip-claims";

export interface ModelServerOptions {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The pool's target port: the simulator answers at podIP:port. */
  port: number;
  /** Base model (vLLM --model). */
  model: string;
  /** Names the server answers to (vLLM --served-model-name); defaults to `model`. */
  servedModelNames?: string[];
  loraAdapters?: string[];
  maxLoras?: number;
  maxNumSeqs?: number;
  timeToFirstTokenMs?: number;
  interTokenLatencyMs?: number;
  /** Percentage (0..100) of requests answered with an injected error. */
  failureInjectionRate?: number;
  extraArgs?: string[];
}

export interface ModelServer {
  namespace: string;
  name: string;
  podIP: string;
  port: number;
  url: string;
}

/** The upstream simulator when present (LLM_D_INFERENCE_SIM or on PATH), else our stand-in. */
export function simulatorCommand(): { command: string; prefix: string[]; upstream: boolean } {
  const explicit = process.env.LLM_D_INFERENCE_SIM;
  if (explicit) return { command: explicit, prefix: [], upstream: true };
  const which = spawnSync("sh", ["-c", "command -v llm-d-inference-sim"], { encoding: "utf8" });
  if (which.status === 0 && which.stdout.trim())
    return { command: which.stdout.trim(), prefix: [], upstream: true };
  return {
    command: process.execPath,
    prefix: ["--import", "tsx", path.join(repoRoot, "hack", "model-server-sim", "main.ts")],
    upstream: false,
  };
}

function simulatorArgs(o: ModelServerOptions, listenPort: number): string[] {
  const args = [`--port=${listenPort}`, `--model=${o.model}`];
  for (const served of o.servedModelNames ?? []) args.push(`--served-model-name=${served}`);
  if (o.loraAdapters?.length) {
    args.push(
      "--lora-modules",
      ...o.loraAdapters.map(name => JSON.stringify({ name, path: `/adapters/${name}` })),
    );
  }
  if (o.maxLoras !== undefined) args.push(`--max-loras=${o.maxLoras}`);
  if (o.maxNumSeqs !== undefined) args.push(`--max-num-seqs=${o.maxNumSeqs}`);
  if (o.timeToFirstTokenMs !== undefined)
    args.push(`--time-to-first-token=${o.timeToFirstTokenMs}ms`);
  if (o.interTokenLatencyMs !== undefined)
    args.push(`--inter-token-latency=${o.interTokenLatencyMs}ms`);
  if (o.failureInjectionRate !== undefined)
    args.push(`--failure-injection-rate=${o.failureInjectionRate}`);
  return [...args, ...(o.extraArgs ?? [])];
}

function podYaml(o: ModelServerOptions, args: string[]): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: o.name,
      namespace: o.namespace,
      labels: o.labels,
      annotations: {
        "modelrollout.dev/emulated": "model server process run by hack/env (no kubelet here)",
      },
    },
    spec: {
      nodeName: "local",
      containers: [
        {
          name: "vllm",
          image: "ghcr.io/llm-d/llm-d-inference-sim:latest",
          args,
          ports: [{ name: "http", containerPort: o.port }],
        },
      ],
    },
  });
}

/** Marks the Pod Ready (or not) with its podIP, through the status subresource. */
export function setPodReady(
  info: ClusterInfo,
  namespace: string,
  name: string,
  podIP: string,
  ready: boolean,
): void {
  const now = new Date().toISOString();
  const condition = (type: string) => ({
    type,
    status: ready ? "True" : "False",
    lastTransitionTime: now,
  });
  const status = {
    status: {
      phase: "Running",
      podIP,
      podIPs: [{ ip: podIP }],
      hostIP: "127.0.0.1",
      conditions: [
        condition("Ready"),
        condition("ContainersReady"),
        { type: "PodScheduled", status: "True" },
      ],
    },
  };
  kubectlFor(info)([
    "-n",
    namespace,
    "patch",
    "pod",
    name,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify(status),
  ]);
}

export async function deployModelServer(
  info: ClusterInfo,
  o: ModelServerOptions,
): Promise<ModelServer> {
  const owner = `${o.namespace}/${o.name}`;
  const podIP = claimIp(info, owner);
  try {
    const sim = simulatorCommand();
    // Ours binds the pod's own address; the upstream simulator listens on a port of every
    // address, so it runs on a free port and a forwarder gives it podIP:port.
    const listenPort = sim.upstream ? await freePort() : o.port;
    const args = simulatorArgs(o, listenPort);
    const fullArgs = sim.upstream ? args : [...args, `--host=${podIP}`];
    kubectlFor(info)(
      ["apply", "--server-side", "--field-manager=modelrollout-env", "-f", "-"],
      podYaml(o, simulatorArgs(o, o.port)),
    );
    const proc = startProc(info.stateDir, info.logDir, procName(o.namespace, o.name), sim.command, [
      ...sim.prefix,
      ...fullArgs,
    ]);
    if (sim.upstream) {
      startProc(
        info.stateDir,
        info.logDir,
        `${procName(o.namespace, o.name)}.forward`,
        process.execPath,
        [
          "--import",
          "tsx",
          path.join(repoRoot, "hack", "env", "forward.ts"),
          `${podIP}:${o.port}`,
          `127.0.0.1:${listenPort}`,
        ],
      );
    }
    const url = `http://${podIP}:${o.port}`;
    await waitFor(
      `model server ${owner} at ${url}/health`,
      async () => {
        if (!isAlive(proc.pid)) throw new Error(`simulator exited: ${tailOf(proc.log, 5)}`);
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
        return res.ok;
      },
      30000,
      `see ${proc.log}`,
    );
    setPodReady(info, o.namespace, o.name, podIP, true);
    addScrapeTarget(info.stateDir, procName(o.namespace, o.name), `${podIP}:${o.port}`, {
      namespace: o.namespace,
      pod: o.name,
      component: "model-server",
    });
    return { namespace: o.namespace, name: o.name, podIP, port: o.port, url };
  } catch (err) {
    await removeModelServer(info, o.namespace, o.name);
    throw err;
  }
}

export async function removeModelServer(
  info: ClusterInfo,
  namespace: string,
  name: string,
): Promise<void> {
  const pname = procName(namespace, name);
  removeScrapeTarget(info.stateDir, pname);
  for (const p of [pname, `${pname}.forward`])
    if (readProc(info.stateDir, p)) await stopProc(info.stateDir, p);
  // No kubelet confirms a graceful deletion here: delete at once, or the Pod stays Terminating.
  kubectlFor(info)([
    "-n",
    namespace,
    "delete",
    "pod",
    name,
    "--ignore-not-found",
    "--force",
    "--grace-period=0",
  ]);
  releaseIp(info, `${namespace}/${name}`);
}
