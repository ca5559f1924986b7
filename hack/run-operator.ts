// `npm run operator`: runs the Pepr module as its watcher Deployment would (PEPR_WATCH_MODE=true),
// but as a local process against $KUBECONFIG (default: the local environment's kubeconfig).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { envConfig, repoRoot } from "./env/config";
import { ensurePki } from "./env/certs";
import { run } from "./env/procs";

/** Self-signed serving certificate for the watcher's HTTPS /healthz and /metrics endpoint. */
function servingCert(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, "operator-tls.crt");
  const key = path.join(dir, "operator-tls.key");
  if (!fs.existsSync(cert)) {
    run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "3650",
      "-subj",
      "/CN=localhost",
    ]);
  }
  return { cert, key };
}

export function operatorEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const cfg = envConfig();
  const pki = ensurePki(cfg.stateDir);
  const tls = servingCert(pki.dir);
  return {
    ...process.env,
    KUBECONFIG: process.env.KUBECONFIG ?? cfg.kubeconfig,
    PEPR_WATCH_MODE: "true",
    PEPR_PRETTY_LOGS: process.env.PEPR_PRETTY_LOGS ?? "false",
    LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
    SSL_KEY_PATH: tls.key,
    SSL_CERT_PATH: tls.cert,
    // Watches retry for ever (Pepr's default gives up and exits after 5 failures ~30 s apart).
    PEPR_RESYNC_FAILURE_MAX: process.env.PEPR_RESYNC_FAILURE_MAX ?? "2147483647",
    // Health endpoints on any free port unless asked (several local operators run side by side).
    MODELROLLOUT_HEALTH_PORT: process.env.MODELROLLOUT_HEALTH_PORT ?? "0",
    // One identity for this machine's operator: restarted, it re-takes its own Lease at once.
    MODELROLLOUT_IDENTITY: process.env.MODELROLLOUT_IDENTITY ?? `local-${os.hostname()}`,
    ...extra,
  };
}

export function operatorCommand(): { command: string; args: string[] } {
  return {
    command: process.execPath,
    args: ["--import", "tsx", path.join(repoRoot, "pepr.ts")],
  };
}

if (require.main === module) {
  const { command, args } = operatorCommand();
  const child = spawn(command, args, { stdio: "inherit", env: operatorEnv() });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  child.on("exit", code => process.exit(code ?? 1));
}
