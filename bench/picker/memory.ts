// Where the picker's memory goes (issue 19), and what its Node runtime flags trade: part (c)'s
// setup (one v1 pool of 3 simulated pods that answer at once; the picker, the upstream EPP v1.5.0
// and lwepp beside it), the picker started once per variant of runtime flags, variants
// alternating per round. Per variant: RSS and V8's heap spaces idle and under load (from
// memory-probe.cjs, preloaded), GC pauses, throughput with 64 in flight (both phases, request
// phase) and p99 at 1,000 req/s (both phases); the EPP under the same phases for reference.
//
//   npx tsx bench/picker/memory.ts [--variants "--max-semi-space-size=4 --heap-growing-percent=30 --v8-pool-size=1|"] [--rounds 2] [--seconds 4]
//
// Variants are separated by "|", flags within one by spaces; "" is Node's defaults. A NAME=value
// token is an environment variable of the picker (e.g. MALLOC_ARENA_MAX=2).

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ensureBinaries } from "../../hack/env/cluster";
import { delay } from "../../hack/env/procs";
import { Bench, closeBench, deployPods, loadAverage, openBench } from "./env";
import { GoLoadPhase, GoLoadTarget, goLoad } from "./load";
import {
  SidePicker,
  memoryOf,
  sampleRss,
  startSidePickers,
  v1PoolYaml,
} from "./side-by-side-pickers";
import { percentile } from "./stats";

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const variants = (
  flag("--variants") ?? "--max-semi-space-size=4 --heap-growing-percent=30 --v8-pool-size=1|"
).split("|");
const rounds = Number(flag("--rounds") ?? 2);
const seconds = Number(flag("--seconds") ?? 4);
const log = (message: string) => process.stderr.write(`[memory] ${message}\n`);
const MiB = 1024 * 1024;
const probe = path.join(__dirname, "memory-probe.cjs");

interface Probe {
  memory: NodeJS.MemoryUsage;
  spaces: Record<string, { size: number; used: number }>;
  code: { code_and_metadata_size: number; bytecode_and_metadata_size: number };
  gc: Record<string, { count: number; ms: number; maxMs: number }>;
}

function readProbe(pid: number): Probe | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(os.tmpdir(), `picker-memory-${pid}.json`), "utf8"));
  } catch {
    return undefined;
  }
}

/** One line of what V8 holds: spaces' committed size (used), MiB. */
function probeText(p: Probe | undefined): string {
  if (!p) return "(no probe)";
  const s = (name: string) => {
    const x = p.spaces[name];
    return x ? `${(x.size / MiB).toFixed(1)} (${(x.used / MiB).toFixed(1)})` : "–";
  };
  const m = p.memory;
  const gc = Object.entries(p.gc)
    .map(([k, g]) => `${k} ${g.count}× ${g.ms.toFixed(0)} ms (max ${g.maxMs.toFixed(1)})`)
    .join(", ");
  return (
    `rss ${(m.rss / MiB).toFixed(1)}, heap ${(m.heapTotal / MiB).toFixed(1)} (${(m.heapUsed / MiB).toFixed(1)}), ` +
    `external ${(m.external / MiB).toFixed(1)} (arrayBuffers ${(m.arrayBuffers / MiB).toFixed(1)}); ` +
    `new ${s("new_space")}, old ${s("old_space")}, code ${s("code_space")}, map ${s("map_space")}, ` +
    `large ${s("large_object_space")}, new-large ${s("new_large_object_space")}; ` +
    `bytecode+metadata ${(p.code.bytecode_and_metadata_size / MiB).toFixed(1)}; gc: ${gc}`
  );
}

interface Figures {
  idleRss: number[];
  loadRss: number[];
  throughputBoth: number[];
  throughputRequest: number[];
  p99Ms: number[];
  notes: string[];
}

const body = {
  bodies: [Buffer.from(JSON.stringify({ model: "mymodel", prompt: "Hi there", max_tokens: 1 }))],
  weights: [1],
};

async function phaseOn(loadgen: string, p: SidePicker, phase: GoLoadPhase, both: boolean) {
  const target: GoLoadTarget = {
    kind: "extproc",
    addr: `127.0.0.1:${p.grpcPort}`,
    path: "/v1/completions",
    responsePhase: both,
  };
  const stop = sampleRss(p.pid);
  const result = await goLoad(loadgen, target, body, phase, 0);
  const ok = result.samples.filter(x => x.status === 200);
  return {
    rss: stop(),
    ok: ok.length,
    seconds: result.seconds,
    latencies: ok.map(x => x.latencyMs),
  };
}

/** The phases on one picker: 64 in flight (both, request phase), then 1,000 req/s (both). */
async function loadOf(loadgen: string, p: SidePicker, f: Figures): Promise<void> {
  const closed = { phase: "closed", concurrency: 64, durationMs: seconds * 1000 } as const;
  const both = await phaseOn(loadgen, p, closed, true);
  const request = await phaseOn(loadgen, p, closed, false);
  const count = 1000 * seconds;
  const open = { phase: "open", count, rate: 1000, maxInflight: 2000, drainMs: 5000 } as const;
  const paced = await phaseOn(loadgen, p, open, true);
  f.loadRss.push(...both.rss, ...request.rss, ...paced.rss);
  f.throughputBoth.push(both.ok / both.seconds);
  f.throughputRequest.push(request.ok / request.seconds);
  f.p99Ms.push(
    percentile(
      [...paced.latencies].sort((a, b) => a - b),
      99,
    ),
  );
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

async function oneVariant(
  b: Bench,
  pool: string,
  servers: Parameters<typeof startSidePickers>[2],
  flags: string[],
  figures: { picker: Figures; epp: Figures },
) {
  const bins = ensureBinaries(log);
  const pickers = await startSidePickers(b, pool, servers, {
    loadgen: bins.loadgen,
    epp: bins.epp,
    lwepp: bins.lwepp,
    nodeArgs: ["--require", probe],
    pickerFlags: [],
    runtimeFlags: flags,
  });
  try {
    const [ours, epp] = pickers;
    for (const p of [ours, epp]) {
      await goLoad(
        bins.loadgen,
        {
          kind: "extproc",
          addr: `127.0.0.1:${p.grpcPort}`,
          path: "/v1/completions",
          responsePhase: true,
        },
        body,
        { phase: "closed", concurrency: 16, durationMs: 1000 },
        0,
      );
    }
    await delay(5000); // idle: the pods scraped as usual
    figures.picker.idleRss.push(memoryOf(ours.pid)?.rssMiB ?? NaN);
    figures.epp.idleRss.push(memoryOf(epp.pid)?.rssMiB ?? NaN);
    figures.picker.notes.push(`idle: ${probeText(readProbe(ours.pid))}`);
    await loadOf(bins.loadgen, ours, figures.picker);
    figures.picker.notes.push(
      `after load: ${probeText(readProbe(ours.pid))}; VmHWM ${memoryOf(ours.pid)?.peakMiB.toFixed(0)}`,
    );
    await loadOf(bins.loadgen, epp, figures.epp);
  } finally {
    for (const p of pickers) await p.stop();
  }
}

function row(name: string, f: Figures): string {
  const m = (xs: number[], d = 0) => median(xs).toFixed(d);
  return (
    `| ${name} | ${m(f.idleRss)} | ${m(f.loadRss)} | ${Math.max(...f.loadRss).toFixed(0)} | ` +
    `${m(f.throughputBoth)} / ${m(f.throughputRequest)} | ${m(f.p99Ms, 2)} |`
  );
}

async function main(): Promise<void> {
  const { b, startedHere } = await openBench("picker-mem", msg => log(msg));
  const pool = "bench-mem";
  const load = loadAverage;
  const before = load();
  const empty = (): Figures => ({
    idleRss: [],
    loadRss: [],
    throughputBoth: [],
    throughputRequest: [],
    p99Ms: [],
    notes: [],
  });
  const figures = variants.map(() => ({ picker: empty(), epp: empty() }));
  try {
    b.kubectl(["apply", "-f", "-"], v1PoolYaml(pool));
    const servers = await deployPods(b, pool, 3, { maxNumSeqs: 4096, ttftMs: 0, itlMs: 0 });
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < variants.length; i++) {
        const v = (i + round) % variants.length;
        log(`round ${round + 1}/${rounds}: "${variants[v]}"`);
        const tokens = variants[v].split(" ").filter(Boolean);
        const env = tokens.filter(t => /^[A-Z_]+=/.test(t)).map(t => t.split("="));
        // The picker's process starts with this process' environment (startPickerProcess).
        for (const [k, value] of env) process.env[k] = value;
        try {
          const flags = tokens.filter(t => !/^[A-Z_]+=/.test(t));
          await oneVariant(b, pool, servers, flags, figures[v]);
        } finally {
          for (const [k] of env) delete process.env[k];
        }
      }
    }
  } finally {
    await closeBench(b, startedHere, msg => log(msg));
  }
  const lines = [
    `Picker memory, ${new Date().toISOString()}: ${rounds} rounds, ${seconds} s per phase; load average before ${before}, after ${load()}.`,
    "",
    "| runtime flags | idle RSS (MiB) | RSS under load, median (MiB) | highest | req/s with 64 in flight, both / request phase | p99 at 1,000 req/s, both phases (ms) |",
    "|---|---|---|---|---|---|",
  ];
  variants.forEach((v, i) =>
    lines.push(
      row(`picker \`${v || "(Node defaults)"}\``, figures[i].picker),
      row("upstream EPP, same round", figures[i].epp),
    ),
  );
  lines.push("");
  variants.forEach((v, i) =>
    lines.push(`\`${v}\`:`, ...figures[i].picker.notes.map(n => `- ${n}`), ""),
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().catch(err => {
  process.stderr.write(`[memory] ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
