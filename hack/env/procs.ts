// Background processes of the local environment. Each one is started detached (its own process
// group, so it outlives the command that started it), logs into one folder and is recorded in a pid
// file, so that `cluster:down` can find and stop every one of them later.
import * as net from "node:net";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface ProcRecord {
  name: string;
  pid: number;
  command: string;
  args: string[];
  log: string;
  startedAt: string;
}

function pidDir(stateDir: string): string {
  return path.join(stateDir, "pids");
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); treat it as gone.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

export function readProc(stateDir: string, name: string): ProcRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(pidDir(stateDir), `${name}.json`), "utf8"));
  } catch {
    return undefined;
  }
}

export function listProcs(stateDir: string): ProcRecord[] {
  const dir = pidDir(stateDir);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter(f => f.endsWith(".json"))
    .map(f => readProc(stateDir, f.slice(0, -5)))
    .filter((p): p is ProcRecord => p !== undefined);
}

/** Starts `command` detached, appending its output to `<logDir>/<name>.log`. */
export function startProc(
  stateDir: string,
  logDir: string,
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): ProcRecord {
  fs.mkdirSync(pidDir(stateDir), { recursive: true });
  fs.mkdirSync(logDir, { recursive: true });
  const log = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(log, "a");
  const child = spawn(command, args, { detached: true, stdio: ["ignore", fd, fd], env });
  fs.closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${command} (${name}); see ${log}`);
  child.unref();
  const record: ProcRecord = {
    name,
    pid: child.pid,
    command,
    args,
    log,
    startedAt: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(pidDir(stateDir), `${name}.json`), JSON.stringify(record, null, 2));
  return record;
}

/** Stops the process group of a recorded process: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopProc(stateDir: string, name: string, graceMs = 5000): Promise<void> {
  const record = readProc(stateDir, name);
  if (record) await killGroup(record.pid, graceMs);
  fs.rmSync(path.join(pidDir(stateDir), `${name}.json`), { force: true });
}

async function killGroup(pid: number, graceMs: number): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  if (!isAlive(pid)) return;
  signal("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await delay(50);
  if (isAlive(pid)) signal("SIGKILL");
  while (isAlive(pid)) await delay(20);
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a child process to bind). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true; the error names what was awaited and where to look. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  hint: string | (() => string) = "",
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await delay(intervalMs);
  }
  const cause = lastError ? ` (last error: ${(lastError as Error).message ?? lastError})` : "";
  const more = typeof hint === "function" ? hint() : hint; // a function reads the last state
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${cause}${more ? `; ${more}` : ""}`,
  );
}

/** Runs a command to completion; throws with its output when it fails. */
export function run(
  command: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv } = {},
): string {
  const res = spawnSync(command, args, {
    input: opts.input,
    env: opts.env ?? process.env,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.error) throw new Error(`${command} could not run: ${res.error.message}`);
  if (res.status !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} failed (exit ${res.status}): ${res.stderr || res.stdout}`.trim(),
    );
  }
  return res.stdout;
}

export function tailOf(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}
