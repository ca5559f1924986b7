// Test support: starts a picker as a child process, as `npm run picker` does — for tests,
// benchmarks and demos: every port chosen by the OS (read back from its log), ready once /readyz
// answers 200, stopped with SIGTERM (SIGKILL after 5 s). Not part of the picker (it bundles with
// esbuild, a devDependency).

import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildSync } from "esbuild";

const repoRoot = path.resolve(__dirname, "..", "..");
const pickerRoot = path.join(repoRoot, "picker");

/**
 * Node flags the picker runs with (also in picker/Dockerfile and package.json's "picker" script):
 * semi-spaces of at most 2 MB instead of 16 MB, the old generation grown by 30 % after a
 * mark-compact instead of up to 4×, and one V8 worker thread instead of 4, so that under load the
 * picker holds ~85 MiB instead of 150–275 (bench/picker/README.md, "Memory (issue 19)": the young generation, the
 * promoted per-stream objects awaiting a mark-compact and the threads' memory were most of it), at
 * the cost of more frequent, short GC pauses.
 */
export const pickerRuntimeFlags: readonly string[] = [
  "--max-semi-space-size=4",
  "--heap-growing-percent=30",
  "--v8-pool-size=1",
];

/** Log lines that carry the ports, in the order `picker/main.ts` prints them. */
export const pickerLogPatterns = {
  metrics: /metrics on :(\d+)/,
  grpcHealth: /gRPC health on :(\d+)/,
  extProc: /ext_proc on :(\d+)/,
  proxy: /HTTP proxy on :(\d+)/,
  serving: /serving pool/,
} as const;

export interface PickerProcessOptions {
  pool: string;
  namespace: string;
  kubeconfig: string;
  /** Further picker flags (e.g. `--disable-grpc`, `--weights ...`). */
  args?: string[];
  /** Node flags ahead of the script (e.g. `--cpu-prof`), after `runtimeFlags`. */
  nodeArgs?: string[];
  /** Replaces `pickerRuntimeFlags`. */
  runtimeFlags?: readonly string[];
  /** Another entry point taking the picker's flags (benchmark baselines); default picker/main.ts. */
  script?: string[];
  /** Run the entry point as the image does: an esbuild bundle run by plain node, without tsx. */
  bundled?: boolean;
  /**
   * Run this command line instead of the repository's picker — a built image's ENTRYPOINT in
   * its filesystem (hack/images.ts openImage(...).command(), which carries the image's whole
   * environment and its KUBECONFIG) — with only PATH of this process' environment; the picker's
   * flags follow it.
   */
  entrypoint?: { command: string; args: readonly string[] };
  /** Child output is appended here. */
  logFile?: string;
  /** Extra environment variables. */
  env?: NodeJS.ProcessEnv;
  readyTimeoutMs?: number;
}

export interface PickerProcess {
  /** http://127.0.0.1:PORT, or undefined with --disable-proxy. */
  proxyUrl?: string;
  /** ext_proc port, or undefined with --disable-grpc. */
  grpcPort?: number;
  metricsPort: number;
  /** http://127.0.0.1:PORT (append /metrics, /healthz, /readyz). */
  metricsBaseUrl: string;
  pid: number;
  /** Everything the process printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * The command line that runs a picker on loopback with OS-chosen ports, and the folder to run it
 * from (for process managers that start it themselves); `picker/main.ts` through tsx unless
 * `script`, `bundled` or `entrypoint` says otherwise.
 */
export function pickerCommand(o: Omit<PickerProcessOptions, "kubeconfig">): {
  command: string;
  args: string[];
  cwd: string;
} {
  const pickerArgs = [
    ...["--pool", o.pool, "--namespace", o.namespace, "--host", "127.0.0.1"],
    ...["--grpc-port", "0", "--health-port", "0", "--metrics-port", "0", "--proxy-port", "0"],
    ...(o.args ?? []),
  ];
  if (o.entrypoint) {
    if (o.script || o.bundled || o.nodeArgs || o.runtimeFlags) {
      throw new Error(
        "pickerCommand: entrypoint replaces script, bundled, nodeArgs and runtimeFlags",
      );
    }
    return { command: o.entrypoint.command, args: [...o.entrypoint.args, ...pickerArgs], cwd: "/" };
  }
  const [entry, ...entryArgs] = o.script ?? [path.join(pickerRoot, "main.ts")];
  return {
    command: process.execPath,
    args: [
      ...(o.runtimeFlags ?? pickerRuntimeFlags),
      ...(o.nodeArgs ?? []),
      ...(o.bundled ? [pickerBundle(entry)] : ["--import", "tsx", entry]),
      ...entryArgs,
      ...pickerArgs,
    ],
    cwd: repoRoot,
  };
}

/** Bundles built by this process, by entry point. */
const bundles = new Map<string, string>();

/**
 * Bundles an entry point as picker/Dockerfile does (esbuild, CommonJS, packages left external)
 * into .local/picker-bundle/, and returns the file. Built once per process (~0.3 s), so a new
 * run never runs stale code.
 */
export function pickerBundle(entry: string): string {
  const done = bundles.get(entry);
  if (done) return done;
  const outfile = path.join(
    repoRoot,
    ".local",
    "picker-bundle",
    `${path.basename(entry, ".ts")}.cjs`,
  );
  buildSync({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    packages: "external",
    outfile,
    logLevel: "warning",
  });
  bundles.set(entry, outfile);
  return outfile;
}

/** Ports from the picker's log, once it printed "serving pool"; undefined before. */
export function portsFromLog(
  output: string,
): { metrics: number; proxy?: number; extProc?: number } | undefined {
  if (!pickerLogPatterns.serving.test(output)) return undefined;
  const port = (re: RegExp) => {
    const m = re.exec(output);
    return m ? Number(m[1]) : undefined;
  };
  const metrics = port(pickerLogPatterns.metrics);
  if (metrics === undefined) return undefined;
  return {
    metrics,
    proxy: port(pickerLogPatterns.proxy),
    extProc: port(pickerLogPatterns.extProc),
  };
}

async function isReady(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Starts the picker and resolves once its /readyz answers 200 (pool known, pods listed). */
export async function startPickerProcess(o: PickerProcessOptions): Promise<PickerProcess> {
  const { command, args, cwd } = pickerCommand(o);
  // An image's entry point gets nothing of this process' environment (whose NODE_OPTIONS,
  // NODE_PATH or PICKER_PROTO_DIR could lend it what the image lacks): its command line sets it.
  const child: ChildProcess = spawn(command, args, {
    cwd,
    env: o.entrypoint
      ? { PATH: process.env.PATH }
      : { ...process.env, ...o.env, KUBECONFIG: o.kubeconfig },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const collect = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    if (o.logFile) fs.appendFileSync(o.logFile, chunk);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  };
  const hint = o.logFile ? `; see ${o.logFile}` : "";
  const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000);
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`picker exited (${child.exitCode ?? child.signalCode}): ${output}`);
      }
      const ports = portsFromLog(output);
      if (ports && (await isReady(`http://127.0.0.1:${ports.metrics}/readyz`))) {
        return {
          proxyUrl: ports.proxy !== undefined ? `http://127.0.0.1:${ports.proxy}` : undefined,
          grpcPort: ports.extProc,
          metricsPort: ports.metrics,
          metricsBaseUrl: `http://127.0.0.1:${ports.metrics}`,
          pid: child.pid!,
          output: () => output,
          stop,
        };
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for the picker of ${o.pool} to be ready${hint}`);
      }
      await new Promise(resolve => setTimeout(resolve, 50));
    }
  } catch (err) {
    await stop();
    throw err;
  }
}
