// Emulated model-server pods. There is no kubelet here, so for each "pod" we:
//   1. create the Pod object with the caller's labels,
//   2. run the upstream vLLM simulator llm-d-inference-sim (hack/env/simulator.ts) on a free port
//      with the Downward API's POD_NAME / POD_NAMESPACE / POD_IP, and a forwarder that makes it
//      answer at podIP:targetPort (a distinct loopback address 127.0.0.N per pod),
//   3. mark the Pod Ready with that podIP through the status subresource,
//   4. register it as a Prometheus scrape target.
// Removing it undoes all four.
import * as path from "node:path";
import { ClusterInfo, kubectlFor } from "./cluster";
import { repoRoot } from "./config";
import { freePort, isAlive, readProc, startProc, stopProc, tailOf } from "./procs";
import {
  SimulatorOptions,
  simulatorArgs,
  simulatorBinary,
  simulatorEnv,
  waitForSimulator,
} from "./simulator";
import { addScrapeTarget, removeScrapeTarget } from "./prometheus";
import { claimIp, modelServerProcName as procName, releaseIp } from "./ip-claims";

export interface ModelServerOptions extends SimulatorOptions {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The pool's target port: the simulator answers at podIP:port. */
  port: number;
}

export interface ModelServer {
  namespace: string;
  name: string;
  podIP: string;
  port: number;
  url: string;
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
    const binary = simulatorBinary();
    // llm-d-inference-sim has no --host flag: it listens on a port of every address. So it runs
    // on a free port and a forwarder gives the pod its own podIP:port.
    const listenPort = await freePort();
    kubectlFor(info)(
      ["apply", "--server-side", "--field-manager=modelrollout-env", "-f", "-"],
      podYaml(o, simulatorArgs(o, o.port)),
    );
    const proc = startProc(
      info.stateDir,
      info.logDir,
      procName(o.namespace, o.name),
      binary,
      simulatorArgs(o, listenPort),
      simulatorEnv({ name: o.name, namespace: o.namespace, ip: podIP }),
    );
    const forward = startProc(
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
    const url = `http://${podIP}:${o.port}`;
    await waitForSimulator(
      url,
      () => isAlive(proc.pid) && isAlive(forward.pid),
      () =>
        `model server ${owner}: see ${proc.log}:\n${tailOf(proc.log, 5)}\n${forward.log}:\n${tailOf(forward.log, 3)}`,
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
