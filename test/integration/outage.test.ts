// Control-plane outages and two replicas, on real components. The outages run on a private
// control plane of this file (its own etcd, kube-apiserver and state folder, started like the
// shared one by hack/cluster.ts), so killing it disturbs no other test. Each case ends with the
// exact sequence of weights on the target and the documented phase.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Agent, request } from "undici";
import { leaseName } from "../../capabilities/leader";
import { repoRoot } from "../../hack/env/config";
import { freePort, isAlive, readProc } from "../../hack/env/procs";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";

const log = (msg: string) => process.stderr.write(`[outage] ${msg}\n`);

function runAsync(args: string[], childEnv: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", ...args], {
      cwd: repoRoot,
      env: childEnv,
    });
    let out = "";
    child.stdout.on("data", d => (out += d));
    child.stderr.on("data", d => (out += d));
    child.on("exit", code =>
      code === 0 ? resolve(out) : reject(new Error(`${args.join(" ")} exited ${code}:\n${out}`)),
    );
  });
}

/** A control plane of this test file alone. */
class PrivateControlPlane {
  readonly state = fs.mkdtempSync(path.join(os.tmpdir(), "modelrollout-outage-"));
  childEnv: NodeJS.ProcessEnv = {};
  get kubeconfig() {
    return path.join(this.state, "kubeconfig");
  }

  async start(): Promise<void> {
    this.childEnv = {
      ...process.env,
      MODELROLLOUT_STATE: this.state,
      MODELROLLOUT_ETCD_PORT: String(await freePort()),
      MODELROLLOUT_ETCD_PEER_PORT: String(await freePort()),
      MODELROLLOUT_APISERVER_PORT: String(await freePort()),
      MODELROLLOUT_PROMETHEUS_PORT: String(await freePort()),
    };
    await this.up();
  }

  /** Starts whatever of it is not running and waits until the apiserver is ready. */
  async up(): Promise<void> {
    await runAsync([path.join("hack", "cluster.ts"), "up"], this.childEnv);
  }

  /** SIGKILLs one of its processes, as a crash would. */
  async kill(name: "kube-apiserver" | "etcd"): Promise<void> {
    const pid = readProc(this.state, name)?.pid;
    if (pid === undefined) throw new Error(`${name} of ${this.state} is not running`);
    process.kill(-pid, "SIGKILL");
    await waitFor(`${name} gone`, () => !isAlive(pid), 10_000);
  }

  async down(): Promise<void> {
    await runAsync([path.join("hack", "cluster.ts"), "down"], this.childEnv).catch(() => "");
    fs.rmSync(this.state, { recursive: true, force: true });
  }

  /** Resolves with the time its /readyz first answers OK (anonymous, as kubelet probes do). */
  async readyAgain(timeoutMs = 120_000): Promise<number> {
    const insecure = new Agent({ connect: { rejectUnauthorized: false } });
    const url = `https://127.0.0.1:${this.childEnv.MODELROLLOUT_APISERVER_PORT}/readyz`;
    try {
      for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
        try {
          const res = await request(url, { dispatcher: insecure, headersTimeout: 1000 });
          await res.body.dump();
          if (res.statusCode === 200) return Date.now();
        } catch {
          // not listening yet
        }
        await new Promise(r => setTimeout(r, 100));
      }
      throw new Error(`${url} not ready after ${timeoutMs} ms`);
    } finally {
      await insecure.close();
    }
  }

  kubectl(args: string[], input?: string): string {
    return env().kubectl(["--kubeconfig", this.kubeconfig, ...args], input);
  }
}

interface TargetModel {
  name: string;
  weight?: number;
}

/** Records the canary's weight on an InferenceModel each time it changes (while readable). */
function weightRecorder(read: () => TargetModel[], canary: string) {
  const seen: number[] = [];
  /** When each weight in `seen` was first read. */
  const at: number[] = [];
  /** True when the target could be read. */
  const sample = (): boolean => {
    try {
      const targets = read();
      const w = targets.find(t => t.name === canary)?.weight ?? 0;
      const total = targets.reduce((s, t) => s + (t.weight ?? 0), 0) || 1;
      const pct = Math.round((100 * w) / total);
      if (seen[seen.length - 1] !== pct) {
        seen.push(pct);
        at.push(Date.now());
      }
      return true;
    } catch {
      // apiserver down: nothing can have been written either
      return false;
    }
  };
  return { seen, at, sample };
}

const adapterRollout = (model: string) => `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${model}}
spec:
  modelName: ${model}
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: travel-helper-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${model}}
spec:
  adapters: {inferenceModel: ${model}, stable: travel-helper-v1, canary: travel-helper-v2}
  steps:
  - setWeight: 10
  - pause: {duration: 4s}
  - setWeight: 50
  - pause: {duration: 4s}
  - setWeight: 100
`;

describe("control-plane outages (private control plane)", () => {
  const cp = new PrivateControlPlane();
  let ns: string;
  let operator: RunningOperator | undefined;
  const k = (args: string[], input?: string) => cp.kubectl(["-n", ns, ...args], input);
  const targetModels = (model: string) =>
    JSON.parse(k(["get", "inferencemodel", model, "-o", "json"])).spec
      .targetModels as TargetModel[];
  const phase = (name: string) =>
    JSON.parse(k(["get", "modelrollout", name, "-o", "json"])).status?.phase as string | undefined;

  beforeAll(async () => {
    await cp.start();
    ns = `outage-${process.pid}`;
    cp.kubectl(["create", "namespace", ns]);
  }, 180_000);

  afterAll(async () => {
    await operator?.stop();
    await cp.down();
  }, 60_000);

  const startOp = async (name: string) =>
    startOperator({ namespaces: [ns], kubeconfig: cp.kubeconfig, name: `${ns}-${name}` });

  /** Runs an adapter rollout through an outage of `what`; returns the recovery time in ms. */
  async function throughOutage(what: "kube-apiserver" | "etcd", model: string) {
    operator ??= await startOp("op");
    const rec = weightRecorder(() => targetModels(model), "travel-helper-v2");
    k(["apply", "-f", "-"], adapterRollout(model));
    await waitFor(
      "canary at 10%",
      () => (rec.sample(), rec.seen.includes(10)),
      30_000,
      () => operator!.log,
      50,
    );
    await cp.kill(what);
    log(`${what} killed; down for 60 s`);
    const downUntil = Date.now() + 60_000;
    while (Date.now() < downUntil) {
      rec.sample();
      await new Promise(r => setTimeout(r, 1000));
    }
    // Restarted in the background. "back" is when the apiserver's /readyz (which includes etcd)
    // answers OK again, polled every 100 ms in this process.
    const restarted = cp.up();
    const back = await cp.readyAgain();
    await waitFor(
      "progress after the outage",
      () => (rec.sample(), rec.seen.some(w => w > 10)),
      120_000,
      () => operator!.log,
      50,
    );
    await restarted;
    const recoveryMs = Math.max(0, rec.at[rec.seen.findIndex(w => w > 10)] - back);
    log(
      `${what} back: the rollout was seen moving ${(recoveryMs / 1000).toFixed(1)} s after /readyz`,
    );
    await waitFor(
      "Succeeded",
      () => (rec.sample(), phase(model) === "Succeeded"),
      60_000,
      () => operator!.log,
      50,
    );
    rec.sample();
    // The operator's own record of every weight it wrote (it logs each write that changed the
    // target): exactly one per setWeight step, in order. The sampled weights (kubectl may not read
    // right after a restart) are the same sequence with possibly a gap.
    const written = [
      ...fs
        .readFileSync(operator!.log, "utf8")
        .matchAll(new RegExp(`ModelRollout ${ns}/${model}: canary weight (\\d+)%`, "g")),
    ].map(m => Number(m[1]));
    expect(written).toEqual([10, 50, 100]);
    expect([0, 10, 50, 100].filter(w => rec.seen.includes(w))).toEqual(rec.seen);
    expect(rec.seen.slice(-1)).toEqual([100]);
    expect(targetModels(model)).toEqual([{ name: "travel-helper-v2", weight: 100 }]);
    return recoveryMs;
  }

  it("rides out the apiserver down for 60 s mid-rollout: no exit, no step repeated or skipped, progress within seconds", async () => {
    const recovery = await throughOutage("kube-apiserver", "api-outage");
    expect(recovery).toBeLessThan(15_000);
    expect(fs.readFileSync(operator!.log, "utf8")).not.toMatch(/GiveUp/);
  }, 240_000);

  it("rides out etcd down for 60 s mid-rollout", async () => {
    const recovery = await throughOutage("etcd", "etcd-outage");
    expect(recovery).toBeLessThan(15_000);
  }, 240_000);

  it("an operator started while the apiserver is down waits, then works once it is up", async () => {
    await operator?.stop();
    operator = undefined;
    await cp.kill("kube-apiserver");
    const late = await startOp("late");
    operator = late;
    await new Promise(r => setTimeout(r, 20_000));
    expect(fs.readFileSync(late.log, "utf8")).toMatch(/waiting for the apiserver/);
    await cp.up();
    const back = Date.now();
    k(["apply", "-f", "-"], adapterRollout("late-start"));
    await waitFor(
      "Succeeded",
      () => phase("late-start") === "Succeeded",
      90_000,
      () => late.log,
      100,
    );
    log(
      `late start: rollout Succeeded ${((Date.now() - back) / 1000).toFixed(1)} s after the apiserver was ready`,
    );
    expect(targetModels("late-start")).toEqual([{ name: "travel-helper-v2", weight: 100 }]);
  }, 240_000);
});

describe("two replicas (shared control plane)", () => {
  let ns: TestNamespace;
  const replicas = new Map<string, RunningOperator>();
  beforeAll(() => {
    ns = createTestNamespace("replicas");
  });
  afterAll(async () => {
    for (const op of replicas.values()) await op.stop();
    await ns.cleanup();
  });
  const k = (args: string[], input?: string) => env().kubectl(["-n", ns.name, ...args], input);
  const holder = (): string | undefined => {
    try {
      return JSON.parse(
        env().kubectl(["-n", "pepr-system", "get", "lease", leaseName([ns.name]), "-o", "json"]),
      ).spec?.holderIdentity;
    } catch {
      return undefined;
    }
  };
  const start = async (identity: string) => {
    replicas.set(
      identity,
      await startOperator({
        namespaces: [ns.name],
        name: `${ns.name}-${identity}`,
        env: { MODELROLLOUT_IDENTITY: identity },
      }),
    );
  };

  it("only the leader reconciles; a SIGKILLed leader is replaced within ~15 s, and both seed rollouts end exactly", async () => {
    await start("replica-a");
    await start("replica-b");
    await waitFor("a leader", () => !!holder(), 30_000);
    let seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);
    log(`two replicas, seed ${seed}`);
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;

    k(["apply", "-f", "-"], adapterRollout("lora"));
    k(
      ["apply", "-f", "-"],
      `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: mymodel-pool-v1}
spec: {extensionRef: {name: v1-epp}, selector: {app: qwen}, targetPortNumber: 8000}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: mymodel-pool-v2}
spec: {extensionRef: {name: v2-epp}, selector: {app: deepseek}, targetPortNumber: 8000}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: inference-route}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: mymodel-pool-v1, port: 8000, weight: 1}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: pools}
spec:
  pools: {httpRoute: inference-route, stable: mymodel-pool-v1, canary: mymodel-pool-v2}
  steps:
  - setWeight: 10
  - pause: {duration: 4s}
  - setWeight: 50
  - pause: {duration: 4s}
  - setWeight: 100
`,
    );
    const lora = weightRecorder(
      () => JSON.parse(k(["get", "inferencemodel", "lora", "-o", "json"])).spec.targetModels,
      "travel-helper-v2",
    );
    const pools = weightRecorder(
      () =>
        JSON.parse(
          k(["get", "httproute", "inference-route", "-o", "json"]),
        ).spec.rules[0].backendRefs.map((r: { name: string; weight?: number }) => ({
          name: r.name,
          weight: r.weight,
        })),
      "mymodel-pool-v2",
    );
    const phase = (name: string) =>
      JSON.parse(k(["get", "modelrollout", name, "-o", "json"])).status?.phase as
        | string
        | undefined;
    const done = () => phase("lora") === "Succeeded" && phase("pools") === "Succeeded";
    const takeovers: number[] = [];
    for (let kill = 0; kill < 3 && !done(); kill++) {
      const until = Date.now() + 500 + random() * 3000;
      while (Date.now() < until) {
        lora.sample();
        pools.sample();
        await new Promise(r => setTimeout(r, 50));
      }
      const leader = holder()!;
      await replicas.get(leader)!.stop("SIGKILL");
      const killedAt = Date.now();
      await waitFor(
        "the other replica takes over",
        () => (lora.sample(), pools.sample(), !!holder() && holder() !== leader),
        30_000,
        "",
        50,
      );
      takeovers.push(Date.now() - killedAt);
      await start(leader); // back as the standby
    }
    await waitFor("both Succeeded", () => (lora.sample(), pools.sample(), done()), 90_000, "", 50);
    lora.sample();
    pools.sample();
    log(
      `takeover after SIGKILL of the leader: ${takeovers.map(ms => (ms / 1000).toFixed(1)).join(", ")} s`,
    );
    expect(takeovers.length).toBeGreaterThan(0);
    for (const ms of takeovers) expect(ms).toBeLessThan(17_000);
    for (const seen of [lora.seen, pools.seen]) {
      expect(seen).toEqual([0, 10, 50, 100].slice(seen[0] === 0 ? 0 : 1));
    }
  }, 300_000);
});
