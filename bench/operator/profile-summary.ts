// Summarises a V8 .cpuprofile (from `run.ts --profile`): self time by package and by function.
//   npx tsx bench/operator/profile-summary.ts <file.cpuprofile> [--top 25]
import * as fs from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a frame's code lives: a package under node_modules, node itself, our code, or V8. */
export function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith("node:")) return `node:${url.slice(5).split("/")[0]}`;
  const m = /\/(capabilities|hack|bench|picker)\//.exec(url);
  return m ? `project ${m[1]}/` : url;
}

/** Self time (ms) per key, largest first. */
export function selfTimes(
  profile: CpuProfile,
  keyOf: (node: ProfileNode) => string,
): [string, number][] {
  const byId = new Map(profile.nodes.map(n => [n.id, n]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (!node) return;
    const key = keyOf(node);
    totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return [...totals.entries()].sort((a, b) => b[1] - a[1]);
}

/** Inclusive time (ms) per key: a sample counts once for every distinct key on its stack. */
export function inclusiveTimes(
  profile: CpuProfile,
  keyOf: (node: ProfileNode) => string | undefined,
): [string, number][] {
  const byId = new Map(profile.nodes.map(n => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur);
      const key = node && keyOf(node);
      if (key) seen.add(key);
    }
    for (const key of seen)
      totals.set(key, (totals.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return [...totals.entries()].sort((a, b) => b[1] - a[1]);
}

function frameName(n: ProfileNode): string {
  const f = n.callFrame;
  return `${f.functionName || "(anonymous)"} ${f.url ? `${f.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(capabilities|hack|bench)\//, "$1/")}:${f.lineNumber + 1}` : ""}`;
}

function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: "string", default: "25" } },
  });
  if (positionals.length !== 1) {
    console.error("usage: npx tsx bench/operator/profile-summary.ts <file.cpuprofile> [--top 25]");
    process.exit(2);
  }
  const profile = JSON.parse(fs.readFileSync(positionals[0], "utf8")) as CpuProfile;
  const top = Number(values.top);
  const total = (profile.endTime - profile.startTime) / 1000;
  const busy = selfTimes(profile, n => (n.callFrame.functionName === "(idle)" ? "idle" : "busy"));
  const busyMs = busy.find(([k]) => k === "busy")?.[1] ?? 0;
  console.log(`profile ${(total / 1000).toFixed(1)} s, busy ${(busyMs / 1000).toFixed(1)} s`);
  const print = (title: string, rows: [string, number][]) => {
    console.log(`\n${title}`);
    for (const [k, ms] of rows.slice(0, top)) {
      console.log(
        `${(ms / 1000).toFixed(2).padStart(8)} s ${((100 * ms) / busyMs).toFixed(1).padStart(5)} %  ${k}`,
      );
    }
  };
  const isIdle = (n: ProfileNode) => n.callFrame.functionName === "(idle)";
  print(
    "self time by package (busy time only)",
    selfTimes(profile, n =>
      isIdle(n) ? "(idle)" : packageOf(n.callFrame.url, n.callFrame.functionName),
    ).filter(([k]) => k !== "(idle)"),
  );
  print(
    "self time by function",
    selfTimes(profile, frameName).filter(([k]) => !k.startsWith("(idle)")),
  );
  print(
    "inclusive time by function (named JavaScript functions)",
    inclusiveTimes(profile, n =>
      n.callFrame.url && n.callFrame.functionName ? frameName(n) : undefined,
    ),
  );
}

if (require.main === module) main();
