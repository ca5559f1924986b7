// Preloaded into a picker by bench/picker/memory.ts (`node --require`): every 250 ms it writes
// the process' memory as V8 sees it (heap spaces, code, external) and its GC pauses so far to
// <tmpdir>/picker-memory-<pid>.json. Only for measuring: no picker runs with it otherwise.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const v8 = require("node:v8");
const { PerformanceObserver, constants } = require("node:perf_hooks");

const file = path.join(os.tmpdir(), `picker-memory-${process.pid}.json`);
const kinds = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "scavenge",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "markCompact",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weak",
};
const gc = {};
new PerformanceObserver(list => {
  for (const e of list.getEntries()) {
    const kind = kinds[e.detail?.kind] ?? "other";
    const g = (gc[kind] ??= { count: 0, ms: 0, maxMs: 0 });
    g.count++;
    g.ms += e.duration;
    g.maxMs = Math.max(g.maxMs, e.duration);
  }
}).observe({ entryTypes: ["gc"] });

setInterval(() => {
  const spaces = {};
  for (const s of v8.getHeapSpaceStatistics()) {
    spaces[s.space_name] = { size: s.space_size, used: s.space_used_size };
  }
  const snapshot = {
    at: Date.now(),
    memory: process.memoryUsage(),
    spaces,
    code: v8.getHeapCodeStatistics(),
    gc,
  };
  fs.writeFileSync(file, JSON.stringify(snapshot));
}, 250).unref();
