// `kubectl modelrollout` through the real kubectl: kubectl finds bin/kubectl-modelrollout on PATH
// and runs it as a plugin, against a real rollout driven by the operator (limited to this test's
// namespace).
import { spawn, spawnSync } from "node:child_process";
import * as path from "node:path";
import { repoRoot } from "../../hack/env/config";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";

interface Rollout {
  metadata: { annotations?: Record<string, string> };
  spec: { paused?: boolean };
  status?: {
    phase?: string;
    canaryWeight?: number;
    lastAction?: { action: string; result: string };
  };
}

let ns: TestNamespace;
let operator: RunningOperator;

beforeAll(async () => {
  ns = createTestNamespace("kplugin");
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
});

afterAll(async () => {
  await operator?.stop();
  await ns.cleanup();
});

/** The environment of a user who put bin/ and the environment's kubectl on PATH. */
function pluginEnv(): NodeJS.ProcessEnv {
  const { info } = env();
  return {
    ...process.env,
    KUBECONFIG: info.kubeconfig,
    PATH: [path.join(repoRoot, "bin"), path.dirname(info.kubectl), process.env.PATH].join(
      path.delimiter,
    ),
  };
}

/** `kubectl modelrollout ARGS -n <test namespace>` through the real kubectl binary. */
function plugin(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const res = spawnSync(env().info.kubectl, ["modelrollout", ...args, "-n", ns.name], {
    env: pluginEnv(),
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

const kubectl = (args: string[], input?: string) => env().kubectl(["-n", ns.name, ...args], input);
const rollout = (name: string): Rollout =>
  JSON.parse(kubectl(["get", "modelrollout", name, "-o", "json"]));
const targetModels = (model: string) =>
  JSON.parse(kubectl(["get", "inferencemodel", model, "-o", "json"])).spec.targetModels;

async function waitForRollout(
  name: string,
  what: string,
  check: (r: Rollout) => boolean,
): Promise<Rollout> {
  let last: Rollout | undefined;
  await waitFor(
    `ModelRollout ${name}: ${what}`,
    () => check((last = rollout(name))),
    30_000,
    `last status: ${JSON.stringify(last?.status)}; operator log: ${operator.log}`,
  );
  return last!;
}

function lora(model: string, rolloutName: string, steps: string): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${model}}
spec:
  modelName: ${model}
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: ${model}-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${rolloutName}}
spec:
  adapters: {inferenceModel: ${model}, stable: ${model}-v1, canary: ${model}-v2}
  steps: ${steps}
`;
}

describe("kubectl modelrollout (as a kubectl plugin)", () => {
  it("is found by kubectl on PATH and prints its help", () => {
    const list = spawnSync(env().info.kubectl, ["plugin", "list"], {
      env: pluginEnv(),
      encoding: "utf8",
    });
    expect(list.stdout).toContain(path.join(repoRoot, "bin", "kubectl-modelrollout"));
    const help = plugin("--help");
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/kubectl modelrollout promote NAME \[--full\]/);
  });

  it("shows steps, weights and gates; promotes, pauses, resumes, aborts, retries and promotes fully", async () => {
    kubectl(
      ["apply", "-f", "-"],
      lora(
        "travel",
        "travel-rollout",
        "[{setWeight: 20}, {pause: {}}, {setWeight: 60}, {pause: {}}, {setWeight: 100}]",
      ),
    );
    await waitForRollout(
      "travel-rollout",
      "Paused at 20%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 20,
    );

    const list = plugin("get");
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/NAME\s+PHASE\s+STEP\s+WEIGHTS/);
    expect(list.stdout).toMatch(/travel-rollout\s+Paused\s+1\/5\s+travel-v1 80% \| travel-v2 20%/);

    const detail = plugin("get", "travel-rollout");
    expect(detail.status).toBe(0);
    expect(detail.stdout).toMatch(
      /Target:\s+InferenceModel travel: stable travel-v1 -> canary travel-v2/,
    );
    expect(detail.stdout).toContain("[####----------------]  travel-v1 80% | travel-v2 20%");
    expect(detail.stdout).toContain("[x] 0  setWeight 20");
    expect(detail.stdout).toContain("[>] 1  pause (until promoted)");
    expect(detail.stdout).toContain("[ ] 4  setWeight 100");
    expect(detail.stdout).toMatch(/WeightSet\s+steps\[0\]/);

    const promoted = plugin("promote", "travel-rollout");
    expect(promoted.stderr).toBe("");
    expect(promoted.status).toBe(0);
    expect(promoted.stdout).toMatch(/promote Applied/);
    await waitForRollout(
      "travel-rollout",
      "Paused at 60%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 60,
    );
    expect(targetModels("travel")).toEqual([
      { name: "travel-v1", weight: 40 },
      { name: "travel-v2", weight: 60 },
    ]);

    const paused = plugin("pause", "travel-rollout");
    expect(paused.status).toBe(0);
    expect(rollout("travel-rollout").spec.paused).toBe(true);
    const resumed = plugin("resume", "travel-rollout");
    expect(resumed.status).toBe(0);
    expect(rollout("travel-rollout").spec.paused).toBe(false);

    const aborted = plugin("abort", "travel-rollout");
    expect(aborted.status).toBe(0);
    expect(aborted.stdout).toMatch(/abort Applied/);
    await waitForRollout("travel-rollout", "Aborted", r => r.status?.phase === "Aborted");
    expect(targetModels("travel")).toEqual([{ name: "travel-v1", weight: 100 }]);

    // The same kind of command can be given again: --overwrite, and the operator removed the annotation.
    const retried = plugin("retry", "travel-rollout");
    expect(retried.status).toBe(0);
    expect(retried.stdout).toMatch(/retry Applied/);
    await waitForRollout(
      "travel-rollout",
      "Paused at 20% again",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 20,
    );

    const full = plugin("promote", "travel-rollout", "--full");
    expect(full.status).toBe(0);
    expect(full.stdout).toMatch(/promote-full Applied/);
    await waitForRollout("travel-rollout", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("travel")).toEqual([{ name: "travel-v2", weight: 100 }]);

    // An action that does not apply any more is reported by the operator and fails the command.
    const late = plugin("abort", "travel-rollout");
    expect(late.stdout).toMatch(/abort (Ignored|Rejected)/);
    expect(late.status).toBe(1);
  });

  it("--watch prints each change (no cursor tricks when stdout is not a terminal) and ends when the rollout finishes", async () => {
    kubectl(
      ["apply", "-f", "-"],
      lora(
        "watched",
        "watched-rollout",
        "[{setWeight: 30}, {pause: {duration: 3s}}, {setWeight: 100}]",
      ),
    );
    const child = spawn(
      env().info.kubectl,
      ["modelrollout", "get", "watched-rollout", "--watch", "-n", ns.name],
      {
        env: pluginEnv(),
      },
    );
    let out = "";
    child.stdout.on("data", d => (out += d));
    child.stderr.on("data", d => (out += d));
    const code = await new Promise<number | null>(resolve => child.on("exit", resolve));
    expect(code).toBe(0);
    expect(out).not.toContain("\x1b[");
    const blocks = out.split(/^--- /m).filter(Boolean);
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    expect(blocks[blocks.length - 1]).toMatch(/Phase:\s+Succeeded/);
    expect(rollout("watched-rollout").status?.phase).toBe("Succeeded");
  });

  it("reports bad usage and missing rollouts with a message and a non-zero exit status", () => {
    const unknown = plugin("frobnicate");
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    const noName = plugin("promote");
    expect(noName.status).toBe(2);
    expect(noName.stderr).toMatch(/promote needs the name of a ModelRollout/);
    const missing = plugin("promote", "no-such-rollout");
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/not found/);
  });
});
