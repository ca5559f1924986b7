// Where the local environment keeps its state and which loopback ports it uses.
// Every value can be overridden by an environment variable so two checkouts can run side by side.
import * as os from "node:os";
import * as path from "node:path";
import * as fs from "node:fs";

/** The checkout this code runs from: MODELROLLOUT_ROOT, or the nearest folder up with our package.json. */
function findRepoRoot(): string {
  if (process.env.MODELROLLOUT_ROOT) return process.env.MODELROLLOUT_ROOT;
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    try {
      if (
        JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).name === "modelrollout"
      )
        return dir;
    } catch {
      /* keep looking */
    }
    if (path.dirname(dir) === dir)
      throw new Error("run this from inside the modelrollout checkout (or set MODELROLLOUT_ROOT)");
  }
}
export const repoRoot = findRepoRoot();

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) {
    throw new Error(`${name}=${raw} is not a port number; unset it or give 1..65535`);
  }
  return n;
}

export interface EnvConfig {
  /** Binaries built once and reused (outside git). */
  cacheDir: string;
  /** Certificates, etcd data, logs, pids, kubeconfig of one running environment. */
  stateDir: string;
  logDir: string;
  kubeconfig: string;
  etcdPort: number;
  etcdPeerPort: number;
  apiserverPort: number;
  prometheusPort: number;
}

export function envConfig(): EnvConfig {
  const stateDir = process.env.MODELROLLOUT_STATE ?? path.join(repoRoot, ".local", "env");
  return {
    cacheDir: process.env.MODELROLLOUT_CACHE ?? path.join(os.homedir(), ".cache", "modelrollout"),
    stateDir,
    logDir: path.join(stateDir, "logs"),
    kubeconfig: path.join(stateDir, "kubeconfig"),
    etcdPort: intFromEnv("MODELROLLOUT_ETCD_PORT", 23790),
    etcdPeerPort: intFromEnv("MODELROLLOUT_ETCD_PEER_PORT", 23800),
    apiserverPort: intFromEnv("MODELROLLOUT_APISERVER_PORT", 16443),
    prometheusPort: intFromEnv("MODELROLLOUT_PROMETHEUS_PORT", 19090),
  };
}
