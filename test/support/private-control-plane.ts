// Test support: a control plane of one test file alone (its own etcd, kube-apiserver, Prometheus
// and state folder, started like the shared one by hack/cluster.ts), for tests that install
// cluster-wide objects (CRDs) the other tests must not see. `down` stops and wipes only it.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { kubectlFor } from "../../hack/env/cluster";
import { repoRoot } from "../../hack/env/config";
import { freePort } from "../../hack/env/procs";

function runTsx(args: string[], childEnv: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", ...args], {
      cwd: repoRoot,
      env: childEnv,
    });
    let out = "";
    child.stdout.on("data", d => (out += d));
    child.stderr.on("data", d => (out += d));
    child.on("exit", code =>
      code === 0 ? resolve(out) : reject(new Error(`${args.join(" ")} exited ${code}:\n${out}`)),
    );
  });
}

export interface PrivateControlPlane {
  kubeconfig: string;
  /** kubectl against it; throws with kubectl's message on failure. */
  kubectl: (args: string[], input?: string) => string;
  down(): Promise<void>;
}

export async function startPrivateControlPlane(prefix: string): Promise<PrivateControlPlane> {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), `modelrollout-${prefix}-`));
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    MODELROLLOUT_STATE: state,
    MODELROLLOUT_ETCD_PORT: String(await freePort()),
    MODELROLLOUT_ETCD_PEER_PORT: String(await freePort()),
    MODELROLLOUT_APISERVER_PORT: String(await freePort()),
    MODELROLLOUT_PROMETHEUS_PORT: String(await freePort()),
  };
  const cluster = path.join("hack", "cluster.ts");
  const down = async () => {
    await runTsx([cluster, "down"], childEnv).catch(() => "");
    fs.rmSync(state, { recursive: true, force: true });
  };
  try {
    await runTsx([cluster, "up"], childEnv);
  } catch (err) {
    await down();
    throw err;
  }
  const info = JSON.parse(fs.readFileSync(path.join(state, "env.json"), "utf8")) as {
    kubeconfig: string;
    kubectl: string;
  };
  return { kubeconfig: info.kubeconfig, kubectl: kubectlFor(info), down };
}
