// Benchmark of the ModelRollout operator on the local apiserver:
//   npx tsx bench/operator/run.ts --rollouts 1000
// N scenario-2 rollouts (LoRA adapters of one InferenceModel each) walk setWeight/pause steps at
// the same time. Measured: step lag (pause due → new weight visible to a watcher), API writes per
// step (the kube-apiserver's own apiserver_request_total), operator RSS and CPU (/proc), and the
// writes per minute once every rollout has finished. See README.md in this folder.
//
// It runs in its own local environment (state $TMPDIR/modelrollout-bench-env, apiserver :26443, etcd :33790,
// Prometheus :29090 — override with the MODELROLLOUT_* variables), starts it when it is not
// running and stops it at the end unless --keep (an environment that was already running is left
// running).
import { ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  ensureCluster,
  isClusterRunning,
  kubectlFor,
  stopCluster,
  type ClusterInfo,
} from "../../hack/env/cluster";
import { repoRoot } from "../../hack/env/config";
import { delay, freePort, isAlive, readProc, waitFor } from "../../hack/env/procs";
import { operatorCommand, operatorEnv } from "../../hack/run-operator";
import pLimit from "p-limit";
import { KubeClient, WatchHandle } from "./kube";
import { machineBusySeconds, ProcSampler, Sample } from "./procstat";
import {
  BenchResult,
  classifyWrites,
  deltaCounts,
  isOperatorWrite,
  LagTracker,
  meanServerMs,
  parseServerTimes,
  parseRequestCounts,
  percentile,
  planSteps,
  readsByResource,
  READ_VERBS,
  RequestCount,
  RolloutPlan,
  TABLE_HEADER,
  tableRow,
} from "./stats";

// Outside the checkout on purpose: etcd writes `member/snap/*.snap` files after 10,000 revisions
// (a 1,000-rollout run makes ~30,000), and jest, which crawls the whole checkout including
// .local/, takes them for obsolete snapshots and fails every test run meanwhile.
const BENCH_ENV: Record<string, string> = {
  MODELROLLOUT_STATE: path.join(os.tmpdir(), "modelrollout-bench-env"),
  MODELROLLOUT_APISERVER_PORT: "26443",
  MODELROLLOUT_ETCD_PORT: "33790",
  MODELROLLOUT_ETCD_PEER_PORT: "33800",
  MODELROLLOUT_PROMETHEUS_PORT: "29090",
};

const RUN_LABEL = "bench.modelrollout/run";
const ROLE_LABEL = "bench.modelrollout/role";
const IM_API_VERSION = "inference.networking.x-k8s.io/v1alpha2";
const MRO_API_VERSION = "rollouts.inference.dev/v1alpha1";
const STABLE = "adapter-v1";
const CANARY = "adapter-v2";

interface Options {
  rollouts: number;
  namespaces: number;
  plan: RolloutPlan;
  idleSeconds: number;
  timeoutSeconds: number;
  createConcurrency: number;
  keep: boolean;
  logLevel: string;
  json?: string;
  /** Write a V8 CPU profile of the operator (node --cpu-prof). */
  profile: boolean;
}

const USAGE = `usage: npx tsx bench/operator/run.ts [--rollouts 100] [--namespaces 1] [--weights 10,30,60,100]
       [--pause 30] [--idle 60] [--timeout SECONDS] [--create-concurrency 32] [--log-level info] [--json FILE] [--keep] [--profile]`;

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      rollouts: { type: "string", default: "100" },
      namespaces: { type: "string", default: "1" },
      weights: { type: "string", default: "10,30,60,100" },
      pause: { type: "string", default: "30" },
      idle: { type: "string", default: "60" },
      timeout: { type: "string" },
      "create-concurrency": { type: "string", default: "32" },
      "log-level": { type: "string", default: "info" },
      json: { type: "string" },
      keep: { type: "boolean", default: false },
      profile: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name: string, raw: string, min: number) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name} must be an integer >= ${min}\n${USAGE}`);
    return n;
  };
  const plan: RolloutPlan = {
    weights: values.weights.split(",").map(w => int("weights", w.trim(), 1)),
    pauseMs: int("pause", values.pause, 1) * 1000,
  };
  planSteps(plan); // validates
  return {
    rollouts: int("rollouts", values.rollouts, 1),
    namespaces: int("namespaces", values.namespaces, 1),
    plan,
    idleSeconds: int("idle", values.idle, 0),
    // Long enough for the pauses plus a backlog; bounded so a collapsing run still reports.
    timeoutSeconds: values.timeout
      ? int("timeout", values.timeout, 10)
      : (plan.pauseMs / 1000) * (plan.weights.length - 1) + 240,
    createConcurrency: int("create-concurrency", values["create-concurrency"], 1),
    keep: values.keep,
    logLevel: values["log-level"],
    json: values.json,
    profile: values.profile,
  };
}

const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

/**
 * Fingerprint of the operator's code (capabilities/, pepr.ts, and the files the launch command
 * names, such as hack/run-operator.ts and its preloads), so results name what they measured.
 */
function codeFingerprint(): string {
  const hash = createHash("sha256");
  const walk = (dir: string): string[] =>
    fs
      .readdirSync(dir, { withFileTypes: true })
      .flatMap(e => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
      .filter(f => f.endsWith(".ts") && !f.endsWith(".test.ts"));
  const launch = operatorCommand()
    .args.map(a => (a.startsWith("file://") ? fileURLToPath(a) : a))
    .filter(f => f.startsWith(repoRoot) && fs.existsSync(f));
  const files = new Set([
    ...walk(path.join(repoRoot, "capabilities")),
    path.join(repoRoot, "pepr.ts"),
    path.join(repoRoot, "hack", "run-operator.ts"),
    ...launch,
  ]);
  for (const file of [...files].sort()) hash.update(file).update(fs.readFileSync(file));
  return hash.digest("hex").slice(0, 12);
}

interface KubeObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
}
interface InferenceModelObject extends KubeObject {
  spec?: { targetModels?: { name: string; weight?: number }[] };
}
interface RolloutObject extends KubeObject {
  status?: { phase?: string; currentStep?: number; stepStartedAt?: string };
}

function inferenceModel(ns: string, name: string, runId: string, role: string) {
  return {
    apiVersion: IM_API_VERSION,
    kind: "InferenceModel",
    metadata: { name, namespace: ns, labels: { [RUN_LABEL]: runId, [ROLE_LABEL]: role } },
    spec: {
      modelName: name,
      criticality: "Standard",
      poolRef: { name: "bench-pool" },
      targetModels: [{ name: STABLE, weight: 100 }],
    },
  };
}

function modelRollout(ns: string, name: string, runId: string, role: string, plan: RolloutPlan) {
  return {
    apiVersion: MRO_API_VERSION,
    kind: "ModelRollout",
    metadata: { name, namespace: ns, labels: { [RUN_LABEL]: runId, [ROLE_LABEL]: role } },
    spec: {
      adapters: { inferenceModel: name, stable: STABLE, canary: CANARY },
      steps: planSteps(plan),
    },
  };
}

const keyOf = (o: KubeObject) => `${o.metadata?.namespace}/${o.metadata?.name}`;

function canaryWeight(o: InferenceModelObject): number {
  return o.spec?.targetModels?.find(t => t.name === CANARY)?.weight ?? 0;
}

/** Operator writes and reads seen by the apiserver between two snapshots. */
function requestDelta(before: RequestCount[], after: RequestCount[], ownCreates: number) {
  const delta = deltaCounts(before, after);
  const writes = classifyWrites(delta, [
    { verb: "POST", resource: "modelrollouts", count: ownCreates },
  ]);
  const reads = readsByResource(delta);
  const totalReads = delta
    .filter(c => READ_VERBS.includes(c.verb) && c.resource)
    .reduce((n, c) => n + c.count, 0);
  return { delta, writes, reads, totalReads };
}

class Bench {
  readonly #opts: Options;
  readonly #runId = randomBytes(3).toString("hex");
  #info!: ClusterInfo;
  #client!: KubeClient;
  #startedCluster = false;
  #operator?: ChildProcess;
  #operatorExit?: Promise<void>;
  #watches: WatchHandle[] = [];
  #namespaces: string[] = [];
  #cleaned = false;
  #lockFile?: string;
  readonly #code = codeFingerprint();

  constructor(opts: Options) {
    this.#opts = opts;
  }

  get #warmupNs() {
    return `bench-${this.#runId}-warmup`;
  }

  async run(): Promise<BenchResult> {
    const opts = this.#opts;
    this.#lock();
    this.#startedCluster = !isClusterRunning();
    this.#info = await ensureCluster(say);
    process.env.KUBECONFIG = this.#info.kubeconfig;
    this.#client = new KubeClient(this.#info.kubeconfig);
    const client = this.#client;

    this.#namespaces = Array.from(
      { length: opts.namespaces },
      (_, i) => `bench-${this.#runId}-${i}`,
    );
    for (const ns of [...this.#namespaces, this.#warmupNs])
      await client.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    say(
      `run ${this.#runId}: ${opts.rollouts} rollouts in ${opts.namespaces} namespace(s), steps ${JSON.stringify(planSteps(opts.plan))}`,
    );

    // Watches first, so every write is seen with its arrival time.
    const tracker = new LagTracker(opts.plan);
    const warmup = new LagTracker({ weights: [50, 100], pauseMs: 1000 });
    await this.#startWatches(tracker, warmup);

    const sampler = await this.#startOperator();
    const controlPlane = ["kube-apiserver", "etcd"].map(name => {
      const rec = readProc(this.#info.stateDir, name);
      if (!rec) throw new Error(`no pid file for ${name} in ${this.#info.stateDir}`);
      return new ProcSampler(rec.pid);
    });

    // Warm-up: one short rollout proves the operator's watch is live (and tsx has compiled).
    const w = "warmup";
    await client.create(inferenceModel(this.#warmupNs, w, this.#runId, "warmup"));
    await client.create(
      modelRollout(this.#warmupNs, w, this.#runId, "warmup", { weights: [50, 100], pauseMs: 1000 }),
    );
    await waitFor(
      "the warm-up rollout to succeed",
      () => warmup.isFinished(`${this.#warmupNs}/${w}`),
      180_000,
    );
    say("operator is up (warm-up rollout succeeded)");

    // The InferenceModels exist before the measurement starts; only the rollouts are created in it.
    const names = Array.from({ length: opts.rollouts }, (_, i) => ({
      ns: this.#namespaces[i % opts.namespaces],
      name: `bench-${String(i).padStart(5, "0")}`,
    }));
    const created = Date.now();
    const limit = pLimit(opts.createConcurrency);
    await Promise.all(
      names.map(({ ns, name }) =>
        limit(() => client.create(inferenceModel(ns, name, this.#runId, "measured"))),
      ),
    );
    say(
      `${opts.rollouts} InferenceModels created in ${((Date.now() - created) / 1000).toFixed(1)} s`,
    );
    await this.#quiesce();

    const m0 = await client.metrics();
    const s0 = parseRequestCounts(m0);
    const t0 = sampler.mark();
    const cp0 = controlPlane.map(p => p.mark());
    const machine0 = machineBusySeconds();
    const startMs = Date.now();
    let ownCreates = 0;
    await Promise.all(
      names.map(({ ns, name }) =>
        limit(async () => {
          await client.create(modelRollout(ns, name, this.#runId, "measured", opts.plan));
          ownCreates++;
          tracker.created(`${ns}/${name}`, Date.now());
        }),
      ),
    );
    say(
      `${opts.rollouts} ModelRollouts created in ${((Date.now() - startMs) / 1000).toFixed(1)} s`,
    );

    const progress = setInterval(() => {
      const s = sampler.samples[sampler.samples.length - 1];
      say(
        `${tracker.finishedCount()}/${opts.rollouts} finished, ${tracker.summary().stepLagsMs.length} timed steps seen; ` +
          `operator RSS ${s?.rssMiB.toFixed(0)} MiB, CPU ${s?.cpuPercent.toFixed(0)} %, ${s?.sockets} sockets`,
      );
    }, 5000);
    try {
      await waitFor(
        `${opts.rollouts} rollouts to finish`,
        () => tracker.finishedCount() >= opts.rollouts,
        opts.timeoutSeconds * 1000,
      );
    } catch (err) {
      say(`${(err as Error).message}; reporting what was measured`);
    } finally {
      clearInterval(progress);
    }
    const finishedMs = Date.now();
    say(
      `all finished ${((finishedMs - startMs) / 1000).toFixed(1)} s after the first create; waiting for the operator's last writes`,
    );
    const quiet = await this.#quiesce(60_000).then(
      () => true,
      (err: Error) => {
        say(`${err.message}: the operator is still busy, so the idle numbers below are not idle`);
        return false;
      },
    );
    const m1 = await client.metrics();
    const s1 = parseRequestCounts(m1);
    const t1 = sampler.mark();
    const cp1 = controlPlane.map(p => p.mark());
    const machine1 = machineBusySeconds();
    const active = requestDelta(s0, s1, ownCreates);

    say(`idle: counting writes for ${opts.idleSeconds} s`);
    const idleStart = Date.now();
    await delay(opts.idleSeconds * 1000);
    const s2 = parseRequestCounts(await client.metrics());
    const t2 = sampler.mark();
    const idle = requestDelta(s1, s2, 0);
    sampler.stop();

    const otherCpu = () => {
      const seconds = ((t1?.atMs ?? 0) - (t0?.atMs ?? 0)) / 1000;
      const ours =
        [t1, ...cp1].reduce((n, r) => n + (r?.cpuSeconds ?? 0), 0) -
        [t0, ...cp0].reduce((n, r) => n + (r?.cpuSeconds ?? 0), 0);
      return seconds > 0 ? ((machine1 - machine0 - ours) * 100) / seconds : NaN;
    };
    const activeSamples = sampler.between(t0?.atMs ?? 0, t1?.atMs ?? Infinity);
    const result: BenchResult = {
      rollouts: opts.rollouts,
      namespaces: opts.namespaces,
      weights: opts.plan.weights,
      pauseSeconds: opts.plan.pauseMs / 1000,
      stepsPerRollout: planSteps(opts.plan).length,
      lag: tracker.summary(),
      writes: active.writes,
      reads: active.reads,
      operator: {
        rssPeakMiB: Math.max(...activeSamples.map(s => s.rssMiB), t1?.rssMiB ?? 0),
        rssIdleMiB: t2?.rssMiB ?? NaN,
        cpuActivePercent: ProcSampler.cpuBetween(t0, t1),
        cpuPeakPercent: Math.max(...activeSamples.map(s => s.cpuPercent)),
        cpuIdlePercent: ProcSampler.cpuBetween(t1, t2),
        socketsPeak: Math.max(...activeSamples.map(x => x.sockets), 0),
        socketsIdle: t2?.sockets ?? NaN,
      },
      activeSeconds: ((t1?.atMs ?? finishedMs) - startMs) / 1000,
      serverMs: meanServerMs(parseServerTimes(m0), parseServerTimes(m1)),
      controlPlaneCpuPercent: {
        apiserver: ProcSampler.cpuBetween(cp0[0], cp1[0]),
        etcd: ProcSampler.cpuBetween(cp0[1], cp1[1]),
      },
      otherCpuPercent: otherCpu(),
      cores: os.cpus().length,
      idle: {
        seconds: ((t2?.atMs ?? Date.now()) - idleStart) / 1000,
        writes: idle.writes,
        reads: idle.totalReads,
        valid: quiet && tracker.finishedCount() >= opts.rollouts,
      },
    };
    this.#report(
      result,
      sampler.samples,
      { active: active.delta, idle: idle.delta },
      tracker.perRollout(),
    );
    return result;
  }

  /** Watches this run's InferenceModels (weights) and ModelRollouts (status) into the trackers. */
  async #startWatches(tracker: LagTracker, warmup: LagTracker): Promise<void> {
    const measured = (o: KubeObject) => o.metadata?.labels?.[ROLE_LABEL] === "measured";
    const selector = `${RUN_LABEL}=${this.#runId}`;
    const onWatchError = (err: Error) => say(`watch error: ${err.message}`);
    const from = (apiVersion: string, kind: string) =>
      this.#client.resourceVersion(apiVersion, kind, selector);
    this.#watches.push(
      this.#client.watch<InferenceModelObject>(
        `/apis/${IM_API_VERSION}/inferencemodels`,
        selector,
        await from(IM_API_VERSION, "InferenceModel"),
        (ev, at) => {
          if (ev.type !== "DELETED")
            (measured(ev.object) ? tracker : warmup).weight(
              keyOf(ev.object),
              canaryWeight(ev.object),
              at,
            );
        },
        onWatchError,
      ),
      this.#client.watch<RolloutObject>(
        `/apis/${MRO_API_VERSION}/modelrollouts`,
        selector,
        await from(MRO_API_VERSION, "ModelRollout"),
        ev => {
          if (ev.type !== "DELETED")
            (measured(ev.object) ? tracker : warmup).status(
              keyOf(ev.object),
              ev.object.status ?? {},
            );
        },
        onWatchError,
      ),
    );
  }

  /** Waits until the apiserver has seen no write for 3 s in a row (the operator is done writing). */
  async #quiesce(timeoutMs = 120_000): Promise<void> {
    const writes = async () =>
      parseRequestCounts(await this.#client.metrics())
        .filter(isOperatorWrite)
        .reduce((n, c) => n + c.count, 0);
    let last = await writes();
    let quietSince = Date.now();
    await waitFor(
      "the operator to stop writing",
      async () => {
        const now = await writes();
        if (now !== last) {
          last = now;
          quietSince = Date.now();
        }
        return Date.now() - quietSince >= 3000;
      },
      timeoutMs,
      "",
      500,
    );
  }

  async #startOperator(): Promise<ProcSampler> {
    const log = path.join(this.#info.logDir, `operator-bench-${this.#runId}.log`);
    const out = fs.openSync(log, "a");
    const { command, args } = operatorCommand();
    if (this.#opts.profile) {
      // One file per thread (the main thread's is the largest; tsx's loader runs in a worker).
      const dir = path.join(this.#info.stateDir, "profiles", this.#runId);
      args.unshift("--cpu-prof", `--cpu-prof-dir=${dir}`);
      say(`CPU profiles of the operator's threads go to ${dir} (written when it exits)`);
    }
    const child = spawn(command, args, {
      stdio: ["ignore", out, out],
      env: operatorEnv({
        KUBECONFIG: this.#info.kubeconfig,
        MODELROLLOUT_NAMESPACES: [...this.#namespaces, this.#warmupNs].join(","),
        PEPR_PORT: String(await freePort()),
        LOG_LEVEL: this.#opts.logLevel,
        MODELROLLOUT_ROOT: repoRoot,
      }),
    });
    fs.closeSync(out);
    if (child.pid === undefined) throw new Error(`could not start the operator; see ${log}`);
    this.#operator = child;
    this.#operatorExit = new Promise(resolve => child.once("exit", () => resolve()));
    child.once("exit", (code, signal) => {
      if (!this.#cleaned) say(`the operator exited (code ${code}, signal ${signal}); see ${log}`);
    });
    say(`operator pid ${child.pid}, log ${log}`);
    const sampler = new ProcSampler(child.pid);
    sampler.start(1000);
    return sampler;
  }

  #report(
    r: BenchResult,
    samples: Sample[],
    deltas: { active: RequestCount[]; idle: RequestCount[] },
    perRollout: ReturnType<LagTracker["perRollout"]>,
  ) {
    const lag = r.lag.stepLagsMs;
    const file =
      this.#opts.json ??
      path.join(this.#info.stateDir, "bench-results", `operator-${r.rollouts}-${this.#runId}.json`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(
      file,
      JSON.stringify(
        {
          runId: this.#runId,
          at: new Date().toISOString(),
          loadavg: fs.readFileSync("/proc/loadavg", "utf8").trim(),
          code: this.#code,
          result: { ...r, lag: { ...r.lag, stepLagsMs: undefined, startLatenciesMs: undefined } },
          stepLag: {
            count: lag.length,
            p50: percentile(lag, 50),
            p90: percentile(lag, 90),
            p99: percentile(lag, 99),
            max: Math.max(...lag),
          },
          startLatency: {
            p50: percentile(r.lag.startLatenciesMs, 50),
            p99: percentile(r.lag.startLatenciesMs, 99),
          },
          requests: deltas,
          rollouts: perRollout,
          operatorSamples: samples.map(s => ({
            t: s.atMs,
            rssMiB: +s.rssMiB.toFixed(1),
            cpu: +s.cpuPercent.toFixed(1),
          })),
        },
        null,
        2,
      ),
    );
    const perStep = (n: number) => (n / r.lag.stepsStarted).toFixed(2);
    const readsTotal = Object.values(r.reads).reduce((a, b) => a + b, 0);
    console.log(
      [
        "",
        ...TABLE_HEADER,
        tableRow(r),
        "",
        `active ${r.activeSeconds.toFixed(1)} s; ${lag.length} timed steps measured, ` +
          `${r.lag.finished}/${r.rollouts} finished, ${r.lag.unexpectedWeightChanges} unexpected weight changes, ${r.lag.restartedPauses} restarted pauses`,
        `writes: ${r.writes.total} (target ${r.writes.target}, status ${r.writes.status}, events ${r.writes.events}, ` +
          `rollout ${r.writes.rollout}, other ${r.writes.other}; ${r.writes.failed} failed)`,
        `reads: ${readsTotal} = ${perStep(readsTotal)} per step: ${JSON.stringify(r.reads)}`,
        `idle ${r.idle.seconds.toFixed(0)} s: ${r.idle.writes.total} writes, ${r.idle.reads} reads`,
        `operator sockets: peak ${r.operator.socketsPeak}, after idle ${r.operator.socketsIdle}`,
        `CPU while active (% of one core; ${r.cores} cores): operator ${r.operator.cpuActivePercent.toFixed(0)}, apiserver ${r.controlPlaneCpuPercent.apiserver.toFixed(0)}, etcd ${r.controlPlaneCpuPercent.etcd.toFixed(0)}, everything else (this benchmark, other workloads) ${r.otherCpuPercent.toFixed(0)}`,
        `mean apiserver time per request (ms): ${JSON.stringify(r.serverMs)}`,
        `operator code ${this.#code} (sha256 of capabilities/, pepr.ts and the launch files); details: ${file}`,
      ].join("\n"),
    );
  }

  /**
   * The apiserver's counters are global: a second benchmark in the same environment would count
   * the first one's writes. One run per environment, then.
   */
  #lock(): void {
    const stateDir = process.env.MODELROLLOUT_STATE!;
    fs.mkdirSync(stateDir, { recursive: true });
    const file = path.join(stateDir, "bench-operator.lock");
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, String(process.pid), { flag: "wx" });
        this.#lockFile = file;
        return;
      } catch {
        let holder = 0;
        try {
          holder = Number(fs.readFileSync(file, "utf8"));
        } catch {
          /* removed meanwhile */
        }
        if (holder && isAlive(holder))
          throw new Error(
            `another benchmark run (pid ${holder}) is using ${stateDir}; wait for it, or give this one ` +
              "its own environment (MODELROLLOUT_STATE and the MODELROLLOUT_*_PORT variables)",
          );
        fs.rmSync(file, { force: true }); // left by a run that died
      }
    }
  }

  async cleanup(): Promise<void> {
    if (this.#cleaned) return;
    this.#cleaned = true;
    try {
      await this.#cleanupEnvironment();
    } finally {
      if (this.#lockFile) fs.rmSync(this.#lockFile, { force: true });
    }
  }

  async #cleanupEnvironment(): Promise<void> {
    for (const w of this.#watches) w.close();
    if (this.#operator && this.#operator.exitCode === null && this.#operator.signalCode === null) {
      this.#operator.kill("SIGTERM");
      const killed = await Promise.race([
        this.#operatorExit!.then(() => true),
        delay(10_000).then(() => false),
      ]);
      if (!killed) {
        this.#operator.kill("SIGKILL");
        await this.#operatorExit;
      }
    }
    if (!this.#info) return;
    if (this.#startedCluster && !this.#opts.keep) {
      await stopCluster(say, { wipe: true });
      return;
    }
    // The environment stays: delete what this run created (nothing garbage-collects here).
    const kubectl = kubectlFor(this.#info);
    for (const ns of [...this.#namespaces, this.#warmupNs]) {
      try {
        kubectl([
          "-n",
          ns,
          "delete",
          "modelrollouts,inferencemodels,events",
          "--all",
          "--wait=false",
        ]);
        kubectl(["delete", "namespace", ns, "--wait=false", "--ignore-not-found"]);
      } catch (err) {
        say(`cleanup of ${ns} failed: ${(err as Error).message}`);
      }
    }
    say(
      `environment left running (${this.#info.stateDir}); stop it with the same MODELROLLOUT_* variables and \`npm run cluster:down\``,
    );
  }
}

async function main() {
  const opts = options(process.argv.slice(2));
  for (const [k, v] of Object.entries(BENCH_ENV)) process.env[k] ??= v;
  const bench = new Bench(opts);
  const stop = (signal: NodeJS.Signals) => {
    say(`${signal}: cleaning up`);
    void bench.cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await bench.run();
  } finally {
    await bench.cleanup();
  }
}

main().then(
  () => process.exit(0),
  err => {
    say(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
