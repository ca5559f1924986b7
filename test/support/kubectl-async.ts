// kubectl without blocking the test's event loop: many applies side by side (a corpus of specs),
// and `kubectl get -w` streams whose every line is kept with the time it arrived.
import { ChildProcess, execFile, spawn } from "node:child_process";
import { env } from "./env";

export interface KubectlResult {
  ok: boolean;
  stdout: string;
  /** kubectl's error output (the apiserver's message when it refused). */
  stderr: string;
}

/** Runs kubectl with the environment's kubeconfig; never throws for a non-zero exit. */
export function kubectlAsync(args: string[], input?: string): Promise<KubectlResult> {
  const { info } = env();
  return new Promise(resolve => {
    const child = execFile(
      info.kubectl,
      ["--kubeconfig", info.kubeconfig, ...args],
      { maxBuffer: 64 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => resolve({ ok: !err, stdout, stderr: stderr || err?.message || "" }),
    );
    child.stdin?.end(input ?? "");
  });
}

/** Runs `jobs` with at most `limit` at once; results in the jobs' order. */
export async function inBatches<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

export interface WatchLine {
  /** Milliseconds since the epoch when the line arrived. */
  at: number;
  text: string;
}

export interface LineWatch {
  lines: WatchLine[];
  /** Resolves once the first line (the object's current state) has arrived. */
  started: Promise<void>;
  stop(): void;
}

/**
 * `kubectl get ... -w --output-watch-events -o jsonpath=TEMPLATE`: one line per watch event, the
 * current state first, then every change in the apiserver's order — no change is missed, unlike a
 * poll. TEMPLATE reads the event: `{.type}`, `{.object.spec...}`, and must end with {"\n"}
 * (without --output-watch-events kubectl prints only the first object through a jsonpath).
 */
export function watchLines(namespace: string, args: string[]): LineWatch {
  const { info } = env();
  const child: ChildProcess = spawn(
    info.kubectl,
    [
      "--kubeconfig",
      info.kubeconfig,
      "-n",
      namespace,
      "get",
      ...args,
      "-w",
      "--output-watch-events",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const lines: WatchLine[] = [];
  let buffered = "";
  let errors = "";
  let onFirst: () => void = () => undefined;
  let onFail: (err: Error) => void = () => undefined;
  const started = new Promise<void>((resolve, reject) => {
    onFirst = resolve;
    onFail = reject;
  });
  // A watch that ends before its first line rejects `started`; nobody has to wait for it.
  started.catch(() => undefined);
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    const at = Date.now();
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      lines.push({ at, text: buffered.slice(0, nl) });
      buffered = buffered.slice(nl + 1);
      onFirst();
    }
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => (errors += chunk));
  child.once("exit", code => onFail(new Error(`kubectl get -w exited (${code}): ${errors}`)));
  return {
    lines,
    started,
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    },
  };
}
