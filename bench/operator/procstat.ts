// CPU time and resident memory of local processes from /proc, sampled once a second.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";

function clockTicks(): number {
  const out = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const n = Number(out.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
}
const TICKS = clockTicks();

export interface ProcReading {
  /** user + system CPU seconds since the process started. */
  cpuSeconds: number;
  rssMiB: number;
  /** Open sockets (file descriptors that are sockets): connections to the apiserver and others. */
  sockets: number;
}

function countSockets(pid: number): number {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

/** User and system CPU seconds since the process started; throws when it is gone. */
export function cpuTimes(pid: number): { user: number; system: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name: state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
  return { user: Number(rest[11]) / TICKS, system: Number(rest[12]) / TICKS };
}

/** undefined when the process is gone. */
export function readProcStat(pid: number): ProcReading | undefined {
  try {
    const { user, system } = cpuTimes(pid);
    const cpuSeconds = user + system;
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    return { cpuSeconds, rssMiB: rssKb / 1024, sockets: countSockets(pid) };
  } catch {
    return undefined;
  }
}

export interface Sample extends ProcReading {
  atMs: number;
  /** CPU use over the last interval, percent of one core. */
  cpuPercent: number;
}

/** Samples one process every `intervalMs` until stopped. */
export class ProcSampler {
  readonly samples: Sample[] = [];
  readonly #pid: number;
  #timer?: NodeJS.Timeout;

  constructor(pid: number) {
    this.#pid = pid;
  }

  start(intervalMs = 1000): void {
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** A reading now, to mark a phase boundary (not added to the 1 s samples). */
  mark(): Sample | undefined {
    const r = readProcStat(this.#pid);
    return r && { ...r, atMs: Date.now(), cpuPercent: NaN };
  }

  sample(): Sample | undefined {
    const r = readProcStat(this.#pid);
    if (!r) return undefined;
    const atMs = Date.now();
    const prev = this.samples[this.samples.length - 1];
    const cpuPercent =
      prev && atMs > prev.atMs
        ? ((r.cpuSeconds - prev.cpuSeconds) * 100_000) / (atMs - prev.atMs)
        : 0;
    const s = { ...r, atMs, cpuPercent };
    this.samples.push(s);
    return s;
  }

  /** CPU use between two samples, percent of one core. */
  static cpuBetween(a: Sample | undefined, b: Sample | undefined): number {
    if (!a || !b || b.atMs <= a.atMs) return NaN;
    return ((b.cpuSeconds - a.cpuSeconds) * 100_000) / (b.atMs - a.atMs);
  }

  /** Samples taken in [fromMs, toMs]. */
  between(fromMs: number, toMs: number): Sample[] {
    return this.samples.filter(s => s.atMs >= fromMs && s.atMs <= toMs);
  }
}

/** Busy CPU seconds of the whole machine (all cores) since boot, from /proc/stat. */
export function machineBusySeconds(): number {
  const cpu = fs
    .readFileSync("/proc/stat", "utf8")
    .split("\n")[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
  const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3] - (cpu[4] ?? 0);
  return busy / TICKS;
}
