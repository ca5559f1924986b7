// The demo's world on the local environment: the seed's objects in one namespace, emulated
// model-server pods, one picker per InferencePool (ours for the seed's v1alpha2 pools, the upstream
// EPP for scenario 4's v1 pools), the local gateway and the operator. The long-running parts are
// detached processes recorded like the environment's own (named `demo.<namespace>.*`, the EPPs
// `upstream-epp.<namespace>.*`), so `--keep` can leave them running and `npm run cluster:down`
// stops them.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { ClusterInfo, namespaceYaml } from "../env/cluster";
import { repoRoot } from "../env/config";
import { deployModelServer, removeModelServer } from "../env/model-servers";
import { freePort, isAlive, listProcs, startProc, stopProc, tailOf, waitFor } from "../env/procs";
import { addScrapeTarget, prometheusDirs, removeScrapeTarget } from "../env/prometheus";
import { operatorKubeconfig } from "../env/rbac";
import {
  deployUpstreamEpp,
  publishPicker,
  removeUpstreamEpp,
  unpublishPicker,
} from "../env/upstream-epp";
import { operatorCommand, operatorEnv } from "../run-operator";
import {
  DemoPod,
  PICKER_SERVICES,
  PODS,
  SEED,
  seedObjects,
  UPSTREAM,
  UPSTREAM_EPP_SERVICES,
  UPSTREAM_PODS,
  upstreamObjects,
} from "./manifests";
import { pickerCommand, pickerLogPatterns } from "../../test/support/picker-process";

export type Log = (message: string) => void;

export interface PickerEndpoint {
  pool: string;
  proxyUrl: string;
  metricsUrl: string;
  log: string;
}

export interface DemoWorld {
  info: ClusterInfo;
  namespace: string;
  gatewayUrl: string;
  pickers: PickerEndpoint[];
  operatorLog: string;
  operatorProc: string;
}

/** The kinds the demo creates in its namespace, deleted explicitly (no namespace controller here). */
const DEMO_KINDS = [
  "modelrollouts.rollouts.inference.dev",
  "httproutes.gateway.networking.k8s.io",
  "gateways.gateway.networking.k8s.io",
  "inferencemodels.inference.networking.x-k8s.io",
  "inferencepools.inference.networking.x-k8s.io",
  "inferencepools.inference.networking.k8s.io",
];

export const POOLS = [SEED.stablePool, SEED.canaryPool, SEED.badPool];

/** kubectl without blocking the event loop (traffic keeps flowing while it runs). */
export function kubectlAsync(info: ClusterInfo, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(info.kubectl, ["--kubeconfig", info.kubeconfig, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", d => (out += d));
    child.stderr.on("data", d => (err += d));
    child.on("error", reject);
    child.on("close", code =>
      code === 0
        ? resolve(out)
        : reject(
            new Error(`kubectl ${args.join(" ")} failed (exit ${code}): ${(err || out).trim()}`),
          ),
    );
    child.stdin.end(input ?? "");
  });
}

export function applyObjects(
  info: ClusterInfo,
  namespace: string,
  objects: object[],
): Promise<string> {
  return kubectlAsync(
    info,
    [
      "-n",
      namespace,
      "apply",
      "--server-side",
      "--force-conflicts",
      "--field-manager=modelrollout-demo",
      "-f",
      "-",
    ],
    JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }),
  );
}

function procPrefix(namespace: string): string {
  return `demo.${namespace}.`;
}

/** Starts a detached process and waits for `patterns` in what it logs from now on. */
async function startAndWatch(
  info: ClusterInfo,
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  patterns: RegExp[],
  timeoutMs: number,
): Promise<{ log: string; found: RegExpExecArray[] }> {
  const log = path.join(info.logDir, `${name}.log`);
  const offset = fs.existsSync(log) ? fs.statSync(log).size : 0;
  const proc = startProc(info.stateDir, info.logDir, name, command, args, env);
  const found: RegExpExecArray[] = [];
  await waitFor(
    `${name} to start`,
    () => {
      if (!isAlive(proc.pid)) throw new Error(`${name} exited: ${tailOf(log, 10)}`);
      const fd = fs.openSync(log, "r");
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, size - offset));
      fs.readSync(fd, buf, 0, buf.length, offset);
      fs.closeSync(fd);
      const text = buf.toString("utf8");
      found.length = 0;
      for (const p of patterns) {
        const m = p.exec(text);
        if (!m) return false;
        found.push(m);
      }
      return true;
    },
    timeoutMs,
    `see ${log}`,
    200,
  );
  return { log, found };
}

/**
 * Removes the demo's processes, pods, scrape targets and objects from the namespace (also what an
 * earlier run with --keep left). Returns whether there was anything to remove.
 */
export async function removeDemo(info: ClusterInfo, namespace: string): Promise<boolean> {
  const procs = listProcs(info.stateDir).filter(p => p.name.startsWith(procPrefix(namespace)));
  for (const p of procs) {
    removeScrapeTarget(info.stateDir, p.name);
    await stopProc(info.stateDir, p.name);
  }
  const targets = prometheusDirs(info.stateDir).targets;
  if (fs.existsSync(targets)) {
    for (const f of fs.readdirSync(targets))
      if (f.startsWith(procPrefix(namespace))) fs.rmSync(path.join(targets, f), { force: true });
  }
  for (const service of Object.values(UPSTREAM_EPP_SERVICES))
    await removeUpstreamEpp(info, namespace, service);
  // The pickers' emulated Pods: a Pod's spec cannot change, so a later demo could not re-publish them.
  for (const service of Object.values(PICKER_SERVICES)) unpublishPicker(info, namespace, service);
  await Promise.all(
    [...PODS, ...UPSTREAM_PODS].map(p => removeModelServer(info, namespace, p.name)),
  );
  const existing = (await kubectlAsync(info, ["api-resources", "-o", "name"])).split("\n");
  const kinds = DEMO_KINDS.filter(k => existing.includes(k));
  const deleted = await kubectlAsync(info, [
    "-n",
    namespace,
    "delete",
    kinds.join(","),
    "--all",
    "--ignore-not-found",
    "--wait=false",
  ]);
  return procs.length > 0 || / deleted/.test(deleted);
}

async function waitForNamespace(info: ClusterInfo, namespace: string): Promise<void> {
  await kubectlAsync(info, ["apply", "-f", "-"], namespaceYaml(namespace));
  const phase = (
    await kubectlAsync(info, ["get", "namespace", namespace, "-o", "jsonpath={.status.phase}"])
  ).trim();
  if (phase !== "Active") {
    throw new Error(
      `namespace ${namespace} is ${phase} (this environment has no namespace controller to finish deleting it); run the demo with --namespace <another name>`,
    );
  }
}

function httpsOk(url: string): Promise<boolean> {
  return new Promise(resolve => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 1000 }, res => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
  });
}

async function promUp(info: ClusterInfo, namespace: string, component: string): Promise<number> {
  const q = encodeURIComponent(`sum(up{namespace="${namespace}",component="${component}"})`);
  const res = await fetch(`${info.prometheusUrl}/api/v1/query?query=${q}`);
  const body = (await res.json()) as { data?: { result?: { value: [number, string] }[] } };
  return Number(body.data?.result?.[0]?.value[1] ?? 0);
}

/** Deploys everything the scenarios need; returns where things are. */
export async function startWorld(
  info: ClusterInfo,
  namespace: string,
  log: Log,
): Promise<DemoWorld> {
  await waitForNamespace(info, namespace);
  await applyObjects(info, namespace, seedObjects());
  log(
    `applied the seed's objects: InferencePools ${SEED.stablePool} and ${SEED.canaryPool}, InferenceModels mymodel-v1, mymodel-v2 and ${SEED.loraInferenceModel}, HTTPRoutes ${SEED.route} and ${SEED.loraRoute}`,
  );

  const prefix = procPrefix(namespace);
  const nodeTsx = (script: string, args: string[]) => ({
    command: process.execPath,
    args: ["--import", "tsx", path.join(repoRoot, script), ...args],
  });
  const childEnv = { ...process.env, KUBECONFIG: info.kubeconfig };

  // Model servers (llm-d-inference-sim, each behind a Node forwarder), pickers and the operator
  // start in parallel: the Node processes need a few seconds of compiling on first start.
  const server = (p: DemoPod, served: string) =>
    deployModelServer(info, {
      namespace,
      name: p.name,
      labels: p.labels,
      port: 8000,
      model: p.model,
      servedModelNames: [served],
      loraAdapters: p.loraAdapters,
      maxLoras: p.loraAdapters ? 2 : undefined,
      maxNumSeqs: 16,
      timeToFirstTokenMs: p.timeToFirstTokenMs,
      interTokenLatencyMs: p.interTokenLatencyMs,
      failureInjectionRate: p.failureInjectionRate,
    }).then(s => {
      log(
        `model server pod ${p.name} (${p.model} as "${served}"${p.loraAdapters ? ` + LoRA ${p.loraAdapters.join(", ")}` : ""}${p.failureInjectionRate ? `, fails ${p.failureInjectionRate}% of requests` : ""}) ready at ${s.podIP}:8000`,
      );
      return s;
    });
  const servers = Promise.all(PODS.map(p => server(p, SEED.model)));

  // Scenario 4: v1 InferencePools, each served by the upstream EPP (it watches v1 pools only and
  // needs its pool's pod in its datastore before it is ready).
  const upstream = (async () => {
    await applyObjects(info, namespace, upstreamObjects());
    log(
      `applied v1 InferencePools ${UPSTREAM.stablePool} and ${UPSTREAM.canaryPool} (inference.networking.k8s.io) and HTTPRoute ${UPSTREAM.route} for model "${UPSTREAM.model}"`,
    );
    await Promise.all(UPSTREAM_PODS.map(p => server(p, UPSTREAM.model)));
    for (const pool of [UPSTREAM.stablePool, UPSTREAM.canaryPool]) {
      const epp = await deployUpstreamEpp(info, {
        namespace,
        pool,
        service: UPSTREAM_EPP_SERVICES[pool],
      });
      log(
        `upstream EPP v1.5.0 for v1 InferencePool ${pool}: ext_proc behind Service ${epp.service}:${epp.servicePort}, metrics ${epp.metricsUrl}/metrics (scraped by Prometheus with target label pool=${pool})`,
      );
    }
  })();

  const pickers = Promise.all(
    POOLS.map(async pool => {
      const name = `${prefix}picker.${pool}`;
      const { command, args } = pickerCommand({ pool, namespace });
      const started = await startAndWatch(
        info,
        name,
        command,
        args,
        childEnv,
        [
          pickerLogPatterns.metrics,
          pickerLogPatterns.extProc,
          pickerLogPatterns.proxy,
          pickerLogPatterns.serving,
        ],
        90_000,
      );
      const endpoint: PickerEndpoint = {
        pool,
        metricsUrl: `http://127.0.0.1:${started.found[0][1]}`,
        proxyUrl: `http://127.0.0.1:${started.found[2][1]}`,
        log: started.log,
      };
      // The pool's extensionRef Service, backed by this process as a Pod: the gateway finds the
      // picker through it and calls it over ext_proc (no kubelet or kube-proxy here).
      publishPicker(info, {
        namespace,
        service: PICKER_SERVICES[pool],
        servicePort: 9002,
        grpcPort: Number(started.found[1][1]),
        image: "modelrollout-picker",
      });
      addScrapeTarget(info.stateDir, name, `127.0.0.1:${started.found[0][1]}`, {
        namespace,
        component: "picker",
        inference_pool: pool,
      });
      log(
        `picker for InferencePool ${pool}: ext_proc behind Service ${PICKER_SERVICES[pool]}:9002, metrics ${endpoint.metricsUrl}/metrics (scraped by Prometheus)`,
      );
      return endpoint;
    }),
  );

  const operatorProc = `${prefix}operator`;
  const operator = (async () => {
    const pepPort = await freePort();
    const { command, args } = operatorCommand();
    const env = operatorEnv({
      KUBECONFIG: operatorKubeconfig(info),
      MODELROLLOUT_NAMESPACES: namespace,
      PEPR_PORT: String(pepPort),
    });
    const started = await startAndWatch(info, operatorProc, command, args, env, [], 5_000);
    await waitFor(
      "the operator's /healthz",
      () => httpsOk(`https://127.0.0.1:${pepPort}/healthz`),
      90_000,
      `see ${started.log}`,
      250,
    );
    log(
      `operator (Pepr module, watch mode) running for namespace ${namespace}, with only the RBAC rules package.json declares`,
    );
    return started.log;
  })();

  const [, pickerEndpoints, operatorLog] = await Promise.all([
    servers,
    pickers,
    operator,
    upstream,
  ]);

  const { command, args } = nodeTsx("hack/demo/gateway.ts", [
    ...[
      "--namespace",
      namespace,
      "--gateway",
      SEED.gateway,
      "--port",
      process.env.MODELROLLOUT_DEMO_GATEWAY_PORT ?? "0",
    ],
  ]);
  const gw = await startAndWatch(
    info,
    `${prefix}gateway`,
    command,
    args,
    childEnv,
    [/gateway listening on (http:\/\/[\d.]+:\d+)/],
    60_000,
  );
  const gatewayUrl = gw.found[0][1];
  log(
    `local gateway ${gatewayUrl}: follows the HTTPRoutes of Gateway ${SEED.gateway} (in a cluster, your Gateway does this)`,
  );

  await waitFor(
    "Prometheus to scrape the pickers and the upstream EPPs",
    async () =>
      (await promUp(info, namespace, "picker")) >= POOLS.length &&
      (await promUp(info, namespace, "upstream-epp")) >= UPSTREAM_PODS.length,
    30_000,
    `see ${info.prometheusUrl}/targets`,
    250,
  );
  return { info, namespace, gatewayUrl, pickers: pickerEndpoints, operatorLog, operatorProc };
}

export function operatorAlive(world: DemoWorld): boolean {
  const rec = listProcs(world.info.stateDir).find(p => p.name === world.operatorProc);
  return rec !== undefined && isAlive(rec.pid);
}
