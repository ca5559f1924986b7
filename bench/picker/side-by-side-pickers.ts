// Part (c)'s pickers: the picker, the upstream EPP v1.5.0 (cmd/epp, its default scorers) and the
// upstream lightweight reference picker v1.6.2 (cmd/lwepp, round-robin) serving one v1
// InferencePool at once, each its own process on loopback, each found ready by its own signal; and
// what /proc says about a process' memory.

import * as fs from "node:fs";
import { ClusterInfo } from "../../hack/env/cluster";
import { ModelServer } from "../../hack/env/model-servers";
import { freePort, isAlive, startProc, stopProc, tailOf, waitFor } from "../../hack/env/procs";
import { readyPods, upstreamEppArgs } from "../../hack/env/upstream-epp";
import { Bench, PORT, metricSum, pageOf, startPicker } from "./env";
import { goLoad } from "./load";
import { PickerKind } from "./side-by-side-report";

export interface SidePicker {
  kind: PickerKind;
  grpcPort: number;
  pid: number;
  log: string;
  stop(): Promise<void>;
}

/** A v1 InferencePool (the API all three pickers read) over the pods labelled app=<name>. */
export function v1PoolYaml(name: string): string {
  return `
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: ${name}}
spec:
  selector: {matchLabels: {app: ${name}}}
  targetPorts: [{number: ${PORT}}]
  endpointPickerRef: {name: ${name}-epp, port: {number: 9002}}
`;
}

export interface SidePickerOptions {
  loadgen: string;
  epp: string;
  lwepp: string;
  /** The picker's Node flags (profiles), its own flags, its runtime flags (as run.ts passes them). */
  nodeArgs: string[];
  pickerFlags: string[];
  runtimeFlags?: readonly string[];
}

/** Starts the three pickers for `pool` (its pods `servers`) and waits until each serves them all. */
export async function startSidePickers(
  b: Bench,
  pool: string,
  servers: ModelServer[],
  o: SidePickerOptions,
): Promise<SidePicker[]> {
  const started: SidePicker[] = [];
  try {
    started.push(await startOurs(b, pool, servers.length, o));
    started.push(await startEpp(b.info, b.namespace, pool, servers.length, o.epp));
    started.push(await startLwepp(b.info, b.namespace, pool, servers, o));
    return started;
  } catch (err) {
    for (const p of started) await p.stop();
    throw err;
  }
}

async function startOurs(
  b: Bench,
  pool: string,
  pods: number,
  o: SidePickerOptions,
): Promise<SidePicker> {
  const p = await startPicker(
    b.info,
    b.namespace,
    pool,
    "picker",
    o.nodeArgs,
    o.pickerFlags,
    o.runtimeFlags,
  );
  await waitFor(
    `the picker to see the ${pods} pods of ${pool}`,
    async () =>
      metricSum(await pageOf(p.metricsUrl), "inference_pool_ready_pods", `name="${pool}"`) === pods,
    30_000,
    `see ${p.logFile}`,
  );
  return { kind: "picker", grpcPort: p.grpcPort, pid: p.pid, log: p.logFile, stop: p.stop };
}

async function ports(): Promise<{ grpc: number; health: number; metrics: number }> {
  return { grpc: await freePort(), health: await freePort(), metrics: await freePort() };
}

function recorded(info: ClusterInfo, kind: PickerKind, name: string, grpcPort: number) {
  return (proc: { pid: number; log: string }): SidePicker => ({
    kind,
    grpcPort,
    pid: proc.pid,
    log: proc.log,
    stop: () => stopProc(info.stateDir, name),
  });
}

export async function startEpp(
  info: ClusterInfo,
  namespace: string,
  pool: string,
  pods: number,
  binary: string,
): Promise<SidePicker> {
  const port = await ports();
  const name = `picker-bench-epp.${namespace}`;
  const args = [
    ...upstreamEppArgs({
      pool,
      namespace,
      grpcPort: port.grpc,
      healthPort: port.health,
      metricsPort: port.metrics,
    }),
    // At its default verbosity (2) it writes 2-3 JSON lines per request; the picker and lwepp
    // log none per request: measured is its work, not its logging.
    "--v=1",
  ];
  const proc = startProc(info.stateDir, info.logDir, name, binary, args, {
    ...process.env,
    KUBECONFIG: info.kubeconfig,
  });
  const epp = recorded(info, "epp", name, port.grpc)(proc);
  try {
    await waitFor(
      `the upstream EPP to see the ${pods} pods of ${pool}`,
      async () =>
        isAlive(proc.pid) && (await readyPods(`http://127.0.0.1:${port.metrics}`, pool)) >= pods,
      60_000,
      () => `see ${proc.log}:\n${tailOf(proc.log, 8)}`,
      250,
    );
    return epp;
  } catch (err) {
    await epp.stop();
    throw err;
  }
}

/** Requests each pod answered so far (the simulator's own counter). */
async function answered(servers: ModelServer[]): Promise<number[]> {
  return Promise.all(
    servers.map(async s =>
      metricSum(await pageOf(`${s.url}/metrics`), "vllm:request_success_total"),
    ),
  );
}

async function startLwepp(
  info: ClusterInfo,
  namespace: string,
  pool: string,
  servers: ModelServer[],
  o: SidePickerOptions,
): Promise<SidePicker> {
  const port = await ports();
  const name = `picker-bench-lwepp.${namespace}`;
  const args = [
    `--pool-name=${pool}`,
    `--pool-namespace=${namespace}`,
    `--grpc-port=${port.grpc}`,
    `--grpc-health-port=${port.health}`,
    `--metrics-port=${port.metrics}`,
    "--secure-serving=false",
    // It logs several lines per request at its default (debug) level: measured is its work,
    // not its logging.
    "--zap-log-level=error",
  ];
  const proc = startProc(info.stateDir, info.logDir, name, o.lwepp, args, {
    ...process.env,
    KUBECONFIG: info.kubeconfig,
  });
  const lwepp = recorded(info, "lwepp", name, port.grpc)(proc);
  // It has no pool gauge: it is ready once round-robin probes reach every pod.
  const target = {
    kind: "extproc" as const,
    addr: `127.0.0.1:${port.grpc}`,
    path: "/v1/completions",
    responsePhase: false,
  };
  const body = {
    bodies: [Buffer.from('{"model":"mymodel","prompt":"hi","max_tokens":1}')],
    weights: [1],
  };
  try {
    await waitFor(
      `lwepp to send requests to all ${servers.length} pods of ${pool}`,
      async () => {
        if (!isAlive(proc.pid)) return false;
        const before = await answered(servers);
        const r = await goLoad(
          o.loadgen,
          target,
          body,
          { phase: "single", count: 3 * servers.length },
          0,
        );
        const after = await answered(servers);
        return r.samples.every(s => s.status === 200) && after.every((n, i) => n > before[i]);
      },
      60_000,
      () => `see ${proc.log}:\n${tailOf(proc.log, 8)}`,
      500,
    );
    return lwepp;
  } catch (err) {
    await lwepp.stop();
    throw err;
  }
}

/** Resident memory now and at its peak (VmRSS, VmHWM), MiB; undefined when the process is gone. */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number } | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1]);
    return { rssMiB: kb("VmRSS") / 1024, peakMiB: kb("VmHWM") / 1024 };
  } catch {
    return undefined;
  }
}

/** Samples a process' VmRSS every `everyMs` until the returned function is called (MiB). */
export function sampleRss(pid: number, everyMs = 200): () => number[] {
  const samples: number[] = [];
  const take = () => {
    const m = memoryOf(pid);
    if (m) samples.push(m.rssMiB);
  };
  take();
  const timer = setInterval(take, everyMs);
  return () => {
    clearInterval(timer);
    take();
    return samples;
  };
}
