// A queueing model of bench part (b), to see what scheduling can buy there at all and how much
// one run's p95 varies — without simulators, pickers or a shared machine in the way:
//   npx tsx bench/picker/queue-sim.ts [--runs 40] [--seconds 30]
// Four pods × two running slots, service time 40 ms + 8 ms per further token, output lengths
// exponential with mean 24 (1–256), Poisson arrivals; the first 3 s are not counted (as in the
// benchmark). Policies: round-robin and join-the-shortest-queue into per-pod FIFO queues (what
// the pods do without flow control), one central FIFO queue (flow control), and with the true
// lengths, which a picker does not know: shortest job first, earliest deadline first for a
// 600-ms target (longer jobs last), and "no waiting at all" (the service time alone: a bound).

import { percentile, seededRandom } from "./stats";

export interface Job {
  arrival: number;
  service: number;
}

export type Policy =
  | "round-robin"
  | "shortest-queue"
  | "central-fifo"
  | "central-sjf"
  | "central-deadline";

/** Latency target of "central-deadline" (s). */
export const deadlineTarget = 0.6;

export const pods = 4;
export const slotsPerPod = 2;

export function jobs(rate: number, seconds: number, seed: number): Job[] {
  const random = seededRandom(seed);
  const out: Job[] = [];
  for (let t = -Math.log(1 - random()) / rate; t < seconds; t += -Math.log(1 - random()) / rate) {
    const tokens = Math.min(256, Math.max(1, Math.round(-24 * Math.log(1 - random()))));
    out.push({ arrival: t, service: 0.04 + (tokens - 1) * 0.008 });
  }
  return out;
}

/** Latency (s) of every job. */
export function simulate(all: readonly Job[], policy: Policy): number[] {
  const latency = new Array<number>(all.length);
  if (policy === "round-robin" || policy === "shortest-queue") {
    const slotFree = Array.from({ length: pods }, () => new Array<number>(slotsPerPod).fill(0));
    const ends = Array.from({ length: pods }, () => [] as number[]);
    all.forEach((job, i) => {
      let pod = i % pods;
      if (policy === "shortest-queue") {
        let best = Infinity;
        for (let p = 0; p < pods; p++) {
          ends[p] = ends[p].filter(e => e > job.arrival);
          if (ends[p].length < best) [best, pod] = [ends[p].length, p];
        }
      }
      const slots = slotFree[pod];
      const k = slots.indexOf(Math.min(...slots));
      const start = Math.max(job.arrival, slots[k]);
      slots[k] = start + job.service;
      ends[pod].push(slots[k]);
      latency[i] = slots[k] - job.arrival;
    });
    return latency;
  }
  const slots = pods * slotsPerPod;
  const queue: number[] = [];
  const running: number[] = []; // end times
  let next = 0;
  while (next < all.length || queue.length > 0) {
    const arrival = next < all.length ? all[next].arrival : Infinity;
    const end = running.length ? Math.min(...running) : Infinity;
    const now = Math.min(arrival, end);
    if (arrival <= end) queue.push(next++);
    else running.splice(running.indexOf(end), 1);
    while (running.length < slots && queue.length > 0) {
      let pick = 0;
      if (policy === "central-sjf" || policy === "central-deadline") {
        const key = (i: number) => {
          const j = all[i];
          if (policy === "central-sjf") return j.service;
          // Latest start that meets the target; jobs that cannot meet it at all go last.
          return j.service > deadlineTarget
            ? 1e9 + j.arrival
            : j.arrival + deadlineTarget - j.service;
        };
        for (let q = 1; q < queue.length; q++) {
          if (key(queue[q]) < key(queue[pick])) pick = q;
        }
      }
      const [i] = queue.splice(pick, 1);
      running.push(now + all[i].service);
      latency[i] = now + all[i].service - all[i].arrival;
    }
  }
  return latency;
}

export function p95(all: readonly Job[], latency: readonly number[], fromSeconds = 3): number {
  const counted = latency.filter((_, i) => all[i].arrival >= fromSeconds).sort((a, b) => a - b);
  return percentile(counted, 95);
}

function main(): void {
  const args = process.argv.slice(2);
  const flag = (name: string, fallback: number) =>
    args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback;
  const runs = flag("--runs", 40);
  const seconds = flag("--seconds", 30);
  const capacity = (pods * slotsPerPod) / (0.04 + 0.008 * 23);
  const policies: Policy[] = ["shortest-queue", "central-fifo", "central-sjf", "central-deadline"];
  console.log(
    `p95 latency ÷ round-robin's, ${runs} runs of ${seconds} s each (10th percentile / median / ` +
      `90th percentile of the runs); capacity ≈ ${capacity.toFixed(1)} req/s`,
  );
  for (const rate of [29, 32]) {
    const ratios = new Map<string, number[]>();
    for (let run = 0; run < runs; run++) {
      const js = jobs(rate, seconds, 1000 + run);
      const rr = p95(js, simulate(js, "round-robin"));
      for (const p of policies) {
        ratios.set(p, [...(ratios.get(p) ?? []), p95(js, simulate(js, p)) / rr]);
      }
      const serviceOnly = js.map(j => j.service);
      ratios.set("no waiting (bound)", [
        ...(ratios.get("no waiting (bound)") ?? []),
        p95(js, serviceOnly) / rr,
      ]);
    }
    for (const [name, values] of ratios) {
      const v = values.sort((a, b) => a - b);
      const at = (q: number) => v[Math.min(v.length - 1, Math.floor(q * v.length))].toFixed(2);
      console.log(`${rate} req/s  ${name.padEnd(20)} ${at(0.1)} / ${at(0.5)} / ${at(0.9)}`);
    }
  }
}

if (require.main === module) main();
