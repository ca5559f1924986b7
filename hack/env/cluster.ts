// The local world: real etcd + kube-apiserver (RBAC on, client-certificate admin), the CRDs the
// product speaks, Pepr's namespace and store CRD, and a real Prometheus. `ensureCluster` is
// idempotent: on a running environment it checks health and returns the same connection info.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { ensurePki, kubeconfigYaml, Pki } from "./certs";
import { releaseAllIps } from "./ip-claims";
import { EnvConfig, envConfig, repoRoot } from "./config";
import { isAlive, listProcs, readProc, run, startProc, stopProc, tailOf, waitFor } from "./procs";
import { ensurePrerequisites } from "./prerequisites";
import { prometheusArgs, prometheusDirs, writePrometheusConfig } from "./prometheus";

export interface Binaries {
  kubeApiserver: string;
  kubectl: string;
  etcd: string;
  /** hack/envoy-side: Envoy's side of ext_proc with go-control-plane's types (picker tests). */
  envoySide: string;
  /** bench/loadgen: bench/picker's load generator (Envoy's side through the same Go package). */
  loadgen: string;
  /** helm v3 (helm.sh/helm/v3) for the chart's tests (deploy/chart). */
  helm: string;
  /** The upstream endpoint picker, GIE v1.5.0 cmd/epp (./upstream-epp.ts). */
  epp: string;
  /** The upstream lightweight reference picker, GIE v1.6.2 cmd/lwepp (bench/picker part c). */
  lwepp: string;
}

export interface ClusterInfo {
  kubeconfig: string;
  apiserverUrl: string;
  prometheusUrl: string;
  kubectl: string;
  stateDir: string;
  logDir: string;
  pki: Pki;
}

type Progress = (msg: string) => void;
const defaultProgress: Progress = msg => process.stderr.write(`[cluster] ${msg}\n`);

/**
 * Finds or builds kube-apiserver, kubectl, etcd, envoy-side, loadgen and helm (hack/build-binaries.sh,
 * cached).
 */
export function ensureBinaries(progress: Progress = defaultProgress): Binaries {
  const script = path.join(repoRoot, "hack", "build-binaries.sh");
  progress("looking for kube-apiserver, kubectl and etcd (building them with Go on first use)");
  const res = spawnSync("bash", [script], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (res.status !== 0)
    throw new Error(`hack/build-binaries.sh failed (exit ${res.status}); see the messages above`);
  const found = Object.fromEntries(
    res.stdout
      .trim()
      .split("\n")
      .map(line => line.split("=", 2) as [string, string]),
  );
  return {
    kubeApiserver: found["kube-apiserver"],
    kubectl: found.kubectl,
    etcd: found.etcd,
    envoySide: found["envoy-side"],
    loadgen: found.loadgen,
    helm: found.helm,
    epp: found.epp,
    lwepp: found.lwepp,
  };
}

function apiserverHealthy(cfg: EnvConfig, pki: Pki, pathName = "/readyz"): Promise<boolean> {
  return new Promise(resolve => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port: cfg.apiserverPort,
        path: pathName,
        ca: fs.readFileSync(pki.caCert),
        cert: fs.readFileSync(pki.admin.cert),
        key: fs.readFileSync(pki.admin.key),
        timeout: 2000,
      },
      res => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}

function running(cfg: EnvConfig, name: string): boolean {
  const rec = readProc(cfg.stateDir, name);
  return rec !== undefined && isAlive(rec.pid);
}

export function kubectlFor(info: { kubectl: string; kubeconfig: string }) {
  return (args: string[], input?: string) =>
    run(info.kubectl, ["--kubeconfig", info.kubeconfig, ...args], { input });
}

/**
 * Starts whatever part of the environment is not running; returns connection info. Every
 * prerequisite is checked first (./prerequisites.ts: fails at once with the fixes, or obtains
 * what the project can), before the long Go builds of ensureBinaries.
 */
export async function ensureCluster(progress: Progress = defaultProgress): Promise<ClusterInfo> {
  const cfg = envConfig();
  const { prometheus: promBin } = await ensurePrerequisites(progress);
  const bins = ensureBinaries(progress);
  fs.mkdirSync(cfg.logDir, { recursive: true });
  const pki = ensurePki(cfg.stateDir);
  const apiserverUrl = `https://127.0.0.1:${cfg.apiserverPort}`;
  const info: ClusterInfo = {
    kubeconfig: cfg.kubeconfig,
    apiserverUrl,
    prometheusUrl: `http://127.0.0.1:${cfg.prometheusPort}`,
    kubectl: bins.kubectl,
    stateDir: cfg.stateDir,
    logDir: cfg.logDir,
    pki,
  };

  if (!running(cfg, "etcd")) {
    progress(`starting etcd on 127.0.0.1:${cfg.etcdPort}`);
    const url = `http://127.0.0.1:${cfg.etcdPort}`;
    const peer = `http://127.0.0.1:${cfg.etcdPeerPort}`;
    startProc(cfg.stateDir, cfg.logDir, "etcd", bins.etcd, [
      "--name=local",
      `--data-dir=${path.join(cfg.stateDir, "etcd")}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=local=${peer}`,
      "--unsafe-no-fsync", // a throwaway test database: durability is not worth the disk waits
      "--log-level=warn",
    ]);
    await waitFor(
      "etcd health",
      () => httpOk(`${url}/health`),
      30000,
      `see ${path.join(cfg.logDir, "etcd.log")}`,
    );
  }

  if (!running(cfg, "kube-apiserver")) {
    progress(`starting kube-apiserver on ${apiserverUrl}`);
    startProc(cfg.stateDir, cfg.logDir, "kube-apiserver", bins.kubeApiserver, [
      `--etcd-servers=http://127.0.0.1:${cfg.etcdPort}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${cfg.apiserverPort}`,
      `--cert-dir=${path.join(cfg.stateDir, "apiserver-certs")}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      "--authorization-mode=RBAC",
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      // No controller-manager runs here, so no "default" ServiceAccount is ever created: without
      // this the ServiceAccount admission plugin would reject every Pod.
      "--disable-admission-plugins=ServiceAccount",
      "--allow-privileged=true",
      "--v=1",
    ]);
    await waitFor(
      "kube-apiserver /readyz",
      () => apiserverHealthy(cfg, pki),
      90000,
      `see ${path.join(cfg.logDir, "kube-apiserver.log")}:\n${tailOf(path.join(cfg.logDir, "kube-apiserver.log"), 5)}`,
      250,
    );
  }
  fs.writeFileSync(cfg.kubeconfig, kubeconfigYaml(apiserverUrl, pki.caCert, pki.admin, "admin"), {
    mode: 0o600,
  });

  await installCrds(info, progress);

  if (!running(cfg, "prometheus")) {
    progress(`starting Prometheus on ${info.prometheusUrl}`);
    writePrometheusConfig(cfg.stateDir);
    startProc(
      cfg.stateDir,
      cfg.logDir,
      "prometheus",
      promBin,
      prometheusArgs(cfg.stateDir, cfg.prometheusPort),
    );
    await waitFor(
      "Prometheus /-/ready",
      () => httpOk(`${info.prometheusUrl}/-/ready`),
      60000,
      `see ${path.join(cfg.logDir, "prometheus.log")}`,
    );
  }
  fs.writeFileSync(
    path.join(cfg.stateDir, "env.json"),
    JSON.stringify(
      {
        kubeconfig: info.kubeconfig,
        apiserverUrl,
        prometheusUrl: info.prometheusUrl,
        kubectl: info.kubectl,
      },
      null,
      2,
    ),
  );
  return info;
}

/** CRD files installed in the local control plane (the exact upstream files plus ours). */
export function crdFiles(): string[] {
  const upstream = path.join(repoRoot, "crds", "upstream");
  const ours = path.join(repoRoot, "crds");
  return [
    ...fs
      .readdirSync(upstream)
      .filter(f => f.endsWith(".yaml"))
      .map(f => path.join(upstream, f)),
    ...fs
      .readdirSync(ours)
      .filter(f => f.endsWith(".yaml"))
      .map(f => path.join(ours, f)),
  ].sort();
}

async function installCrds(info: ClusterInfo, progress: Progress): Promise<void> {
  const kubectl = kubectlFor(info);
  const files = crdFiles();
  // Server-side apply: the HTTPRoute CRD is larger than the last-applied annotation allows.
  const out = kubectl([
    "apply",
    "--server-side",
    "--force-conflicts",
    "--field-manager=modelrollout-env",
    ...files.flatMap(f => ["-f", f]),
  ]);
  const changed = out
    .split("\n")
    .filter(l => l && !l.endsWith("unchanged") && !l.includes("serverside-applied"));
  if (changed.length) progress(changed.join("\n"));
  kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
  kubectl(
    ["apply", "--server-side", "--field-manager=modelrollout-env", "-f", "-"],
    namespaceYaml("pepr-system"),
  );
  progress(`${files.length} CRD files installed and Established; namespace pepr-system present`);
}

export function namespaceYaml(name: string): string {
  return `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;
}

/** Stops every process of the environment (model servers, pickers, Prometheus, apiserver, etcd). */
export async function stopCluster(
  progress: Progress = defaultProgress,
  opts: { wipe?: boolean } = {},
): Promise<void> {
  const cfg = envConfig();
  // Dependents first, etcd last.
  const order = (name: string) =>
    name === "etcd" ? 3 : name === "kube-apiserver" ? 2 : name === "prometheus" ? 1 : 0;
  const procs = listProcs(cfg.stateDir).sort((a, b) => order(a.name) - order(b.name));
  for (const p of procs) {
    progress(`stopping ${p.name} (pid ${p.pid})`);
    await stopProc(cfg.stateDir, p.name);
  }
  releaseAllIps(cfg.stateDir);
  for (const dir of ["model-servers", path.join("prometheus", "targets")]) {
    fs.rmSync(path.join(cfg.stateDir, dir), { recursive: true, force: true });
  }
  if (opts.wipe) {
    fs.rmSync(path.join(cfg.stateDir, "etcd"), { recursive: true, force: true });
    fs.rmSync(prometheusDirs(cfg.stateDir).data, { recursive: true, force: true });
  }
  progress(procs.length ? "environment stopped" : "environment was not running");
}

export function describeCluster(info: ClusterInfo): string {
  return [
    `export KUBECONFIG=${info.kubeconfig}`,
    `export PATH=${path.dirname(info.kubectl)}:$PATH   # the kubectl built for this environment`,
    `# apiserver:  ${info.apiserverUrl}`,
    `# Prometheus: ${info.prometheusUrl}`,
    `# logs:       ${info.logDir}`,
  ].join("\n");
}

/** Connection info of the environment `ensureCluster` started, without starting anything. */
export function connectCluster(): ClusterInfo {
  const cfg = envConfig();
  const file = path.join(cfg.stateDir, "env.json");
  if (!fs.existsSync(file) || !running(cfg, "kube-apiserver")) {
    throw new Error(
      `no local environment is running (state: ${cfg.stateDir}); start it with \`npm run cluster:up\``,
    );
  }
  const saved = JSON.parse(fs.readFileSync(file, "utf8"));
  return { ...saved, stateDir: cfg.stateDir, logDir: cfg.logDir, pki: ensurePki(cfg.stateDir) };
}

export function isClusterRunning(): boolean {
  const cfg = envConfig();
  return running(cfg, "etcd") && running(cfg, "kube-apiserver") && running(cfg, "prometheus");
}
