// The model server of the local environment, the tests, the benchmarks and the demo: the upstream
// vLLM simulator llm-d-inference-sim (github.com/llm-d/llm-d-inference-sim), built from the exact
// source kept in the `shared` folder beside the repo by `bash hack/build-binaries.sh` and cached
// under the tarball's sha256 (see shared/upstream-src/SOURCES.md). Facts about it that shape the
// flags below: durations need a unit; it has no --host flag and listens on a port of every
// address; a repeated --served-model-name keeps the first (a list is `--served-model-name a b`);
// --enable-kvcache needs POD_IP in the environment; POD_NAME / POD_NAMESPACE come back as the
// x-inference-pod / x-inference-namespace headers of every answer.
import { spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { envConfig, repoRoot } from "./config";
import { freePort } from "./procs";

/** The tarball hack/build-binaries.sh builds the simulator from. */
export const simulatorTarballName = "llm-d-inference-sim-eec055a.tar.gz";

/** The `shared` folder beside the repo (MODELROLLOUT_SHARED moves it). */
export function sharedDir(): string {
  return process.env.MODELROLLOUT_SHARED ?? path.join(path.dirname(repoRoot), "shared");
}

let cachedBinary: string | undefined;

/**
 * The llm-d-inference-sim binary: LLM_D_INFERENCE_SIM when set, else the one hack/build-binaries.sh
 * cached for the tarball in shared/. Throws, naming the fix, when it is not built.
 */
export function simulatorBinary(): string {
  const explicit = process.env.LLM_D_INFERENCE_SIM;
  if (explicit) {
    if (!isExecutable(explicit))
      throw new Error(`LLM_D_INFERENCE_SIM=${explicit} is not an executable file`);
    return explicit;
  }
  if (cachedBinary && isExecutable(cachedBinary)) return cachedBinary;
  const tarball = path.join(sharedDir(), "upstream-src", simulatorTarballName);
  if (!fs.existsSync(tarball)) {
    throw new Error(
      `llm-d-inference-sim's source ${tarball} is missing: put the shared/ folder beside the repo ` +
        `(or set MODELROLLOUT_SHARED), then run \`bash hack/build-binaries.sh\`; or set ` +
        `LLM_D_INFERENCE_SIM to a prebuilt binary`,
    );
  }
  const sha = crypto.createHash("sha256").update(fs.readFileSync(tarball)).digest("hex");
  const binary = path.join(envConfig().cacheDir, "bin", `llm-d-inference-sim-${sha.slice(0, 12)}`);
  if (!isExecutable(binary)) {
    throw new Error(
      `llm-d-inference-sim is not built (${binary} is missing): run \`bash hack/build-binaries.sh\` ` +
        `(~5 min once), or set LLM_D_INFERENCE_SIM to a prebuilt binary`,
    );
  }
  cachedBinary = binary;
  return binary;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export interface SimulatorOptions {
  /** Base model (vLLM --model). */
  model: string;
  /** Names the server answers to (vLLM --served-model-name); defaults to `model`. */
  servedModelNames?: string[];
  loraAdapters?: string[];
  maxLoras?: number;
  maxNumSeqs?: number;
  timeToFirstTokenMs?: number;
  interTokenLatencyMs?: number;
  /** Percentage (0..100) of requests answered with an injected error. */
  failureInjectionRate?: number;
  extraArgs?: string[];
}

/** The simulator's command line for `o`, listening on `port` (of every address). */
export function simulatorArgs(o: SimulatorOptions, port: number): string[] {
  const args = [
    `--port=${port}`,
    `--model=${o.model}`,
    // Never look the model up on Hugging Face: a built-in tokenizer, offline.
    "--force-dummy-tokenizer",
  ];
  if (o.servedModelNames?.length) args.push("--served-model-name", ...o.servedModelNames);
  if (o.loraAdapters?.length) {
    args.push(
      "--lora-modules",
      ...o.loraAdapters.map(name => JSON.stringify({ name, path: `/adapters/${name}` })),
    );
  }
  if (o.maxLoras !== undefined) args.push(`--max-loras=${o.maxLoras}`);
  if (o.maxNumSeqs !== undefined) args.push(`--max-num-seqs=${o.maxNumSeqs}`);
  if (o.timeToFirstTokenMs !== undefined)
    args.push(`--time-to-first-token=${o.timeToFirstTokenMs}ms`);
  if (o.interTokenLatencyMs !== undefined)
    args.push(`--inter-token-latency=${o.interTokenLatencyMs}ms`);
  if (o.failureInjectionRate !== undefined)
    args.push(`--failure-injection-rate=${o.failureInjectionRate}`);
  return [...args, ...(o.extraArgs ?? [])];
}

/**
 * The environment a pod's simulator gets, as the Downward API would set it: POD_NAME and
 * POD_NAMESPACE (echoed as x-inference-pod / x-inference-namespace), POD_IP (--enable-kvcache
 * needs it).
 */
export function simulatorEnv(pod: {
  name?: string;
  namespace?: string;
  ip?: string;
}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, POD_IP: pod.ip ?? "127.0.0.1" };
  if (pod.name !== undefined) env.POD_NAME = pod.name;
  if (pod.namespace !== undefined) env.POD_NAMESPACE = pod.namespace;
  return env;
}

/**
 * Waits until the simulator answers `${url}/health`; fails at once if `alive()` says it exited,
 * with `why()` (its log's tail).
 */
export async function waitForSimulator(
  url: string,
  alive: () => boolean,
  why: () => string,
  timeoutMs = 30000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive()) throw new Error(`llm-d-inference-sim exited: ${why()}`);
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline)
      throw new Error(
        `llm-d-inference-sim did not answer ${url}/health in ${timeoutMs} ms: ${why()}`,
      );
    await new Promise(r => setTimeout(r, 50));
  }
}

export interface RunningSimulator {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  pid: number;
  /** Everything it printed so far. */
  output(): string;
  close(): Promise<void>;
}

/**
 * Starts llm-d-inference-sim as a child of this process on a free port and waits for /health
 * (tests and tools that need a model server but no Pod; the environment's pods use
 * deployModelServer). A port taken between the probe and the bind is retried on another one.
 */
export async function startSimulator(
  o: SimulatorOptions & { pod?: { name?: string; namespace?: string; ip?: string } },
): Promise<RunningSimulator> {
  const binary = simulatorBinary();
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    let out = "";
    let exited = false;
    const child = spawn(binary, simulatorArgs(o, port), {
      env: simulatorEnv(o.pod ?? {}),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (chunk: Buffer) => {
      out = (out + chunk.toString("utf8")).slice(-64 * 1024);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const done = new Promise<void>(resolve =>
      child.on("exit", () => {
        exited = true;
        resolve();
      }),
    );
    const url = `http://127.0.0.1:${port}`;
    const close = async () => {
      if (!exited) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await done;
        clearTimeout(timer);
      }
    };
    try {
      await waitForSimulator(
        url,
        () => !exited,
        () => out.trim().split("\n").slice(-5).join("\n"),
      );
    } catch (err) {
      await close();
      if (attempt < 3 && /address already in use/.test(out)) continue;
      throw err;
    }
    return { url, port, pid: child.pid!, output: () => out, close };
  }
}
