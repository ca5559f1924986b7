// Runs the operator (pepr.ts in watch mode, as `npm run operator` does) as a child process for a
// test, limited to the test's namespaces so test files running in parallel do not share rollouts.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { operatorCommand, operatorEnv } from "../../hack/run-operator";
import { connectCluster } from "../../hack/env/cluster";
import { freePort } from "../../hack/env/procs";

export interface RunningOperator {
  log: string;
  /** Stops it gracefully (SIGTERM) or as a crash (SIGKILL). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startOperator(opts: {
  namespaces: string[];
  kubeconfig?: string;
  name: string;
  /** Extra environment (e.g. MODELROLLOUT_IDENTITY for a second replica). */
  env?: NodeJS.ProcessEnv;
}): Promise<RunningOperator> {
  const info = connectCluster();
  const log = path.join(info.logDir, `operator-${opts.name}.log`);
  const out = fs.openSync(log, "a");
  const { command, args } = operatorCommand();
  const child: ChildProcess = spawn(command, args, {
    stdio: ["ignore", out, out],
    env: operatorEnv({
      KUBECONFIG: opts.kubeconfig ?? info.kubeconfig,
      MODELROLLOUT_NAMESPACES: opts.namespaces.join(","),
      PEPR_PORT: String(await freePort()),
      LOG_LEVEL: "info",
      ...opts.env,
    }),
  });
  fs.closeSync(out);
  const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
  return {
    log,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
