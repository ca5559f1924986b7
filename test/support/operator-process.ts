// The operator as a child process a test can watch: like ./operator.ts's startOperator (same
// command, environment and log file), plus whether it is still running, how it exited, and its log
// read back as Pepr's JSON lines, so a test can prove the operator never crashed or hot-looped.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { connectCluster } from "../../hack/env/cluster";
import { freePort } from "../../hack/env/procs";
import { operatorCommand, operatorEnv } from "../../hack/run-operator";

export interface LogLine {
  level?: number;
  time?: number;
  msg?: string;
  rollout?: string;
  /** The raw line (also for lines that are not JSON, e.g. a stack trace on stderr). */
  raw: string;
}

export interface WatchedOperator {
  pid: number;
  log: string;
  startedAt: number;
  /** True while the process has not exited. */
  running(): boolean;
  /** How it exited (undefined while running). */
  exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Stops it gracefully (SIGTERM) or as a crash (SIGKILL); resolves once it has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startWatchedOperator(opts: {
  namespaces: string[];
  kubeconfig?: string;
  name: string;
  env?: NodeJS.ProcessEnv;
}): Promise<WatchedOperator> {
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
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const done = new Promise<void>(resolve =>
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve();
    }),
  );
  return {
    pid: child.pid ?? -1,
    log,
    startedAt: Date.now(),
    running: () => exited === undefined,
    exit: () => exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (exited === undefined) child.kill(signal);
      await done;
    },
  };
}

/** The operator's log lines (Pepr logs JSON, one object a line), optionally from a byte offset. */
export function readLog(file: string, fromByte = 0): LogLine[] {
  const text = fs.readFileSync(file).subarray(fromByte).toString("utf8");
  return text
    .split("\n")
    .filter(Boolean)
    .map(raw => {
      try {
        const parsed = JSON.parse(raw) as Omit<LogLine, "raw">;
        return { ...parsed, raw };
      } catch {
        return { raw };
      }
    });
}

export function logSize(file: string): number {
  return fs.statSync(file).size;
}

/**
 * Lines that show a crash or a bug rather than a reported problem: an uncaught exception or
 * unhandled rejection, a JavaScript runtime error, Node's fatal errors.
 */
export function crashLines(lines: LogLine[]): LogLine[] {
  const crash =
    /uncaught|unhandled|TypeError|RangeError|ReferenceError|SyntaxError|Maximum call stack|heap out of memory|FATAL ERROR|Segmentation fault|Aborted \(core dumped\)/i;
  return lines.filter(l => crash.test(l.raw));
}
