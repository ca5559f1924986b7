// `kubectl modelrollout` without a checkout: plugin/ is packed with `npm pack` (its prepack compiles
// plugin/main.ts into one self-contained JavaScript file), the tarball is installed with
// `npm install -g` into a scratch prefix (offline: the package has no dependencies), and kubectl
// finds the installed command on PATH. Run from a directory outside the repository, with nothing of
// the repository on PATH, against a rollout driven by the operator.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "../../hack/env/config";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";

let ns: TestNamespace;
let operator: RunningOperator;
let scratch: string;
let prefix: string;

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  const res = spawnSync(command, args, { ...options, encoding: "utf8", timeout: 120_000 });
  if (res.status !== 0)
    throw new Error(`${command} ${args.join(" ")} failed (${res.status}): ${res.stderr}`);
  return res.stdout;
}

beforeAll(async () => {
  ns = createTestNamespace("kpluginpkg");
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "kubectl-modelrollout-"));
  prefix = path.join(scratch, "prefix");
});

afterAll(async () => {
  await operator?.stop();
  await ns?.cleanup();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/** What a user without the repository has: the installed prefix, kubectl and node on PATH. */
function userEnv(): NodeJS.ProcessEnv {
  const { info } = env();
  return {
    HOME: scratch,
    KUBECONFIG: info.kubeconfig,
    PATH: [
      path.join(prefix, "bin"),
      path.dirname(info.kubectl),
      path.dirname(process.execPath),
      "/usr/bin",
      "/bin",
    ].join(path.delimiter),
  };
}

function plugin(...args: string[]) {
  return spawnSync(env().info.kubectl, ["modelrollout", ...args, "-n", ns.name], {
    cwd: scratch,
    env: userEnv(),
    encoding: "utf8",
    timeout: 60_000,
  });
}

const kubectl = (args: string[], input?: string) => env().kubectl(["-n", ns.name, ...args], input);
const status = (name: string) =>
  JSON.parse(kubectl(["get", "modelrollout", name, "-o", "json"])).status ?? {};

describe("kubectl modelrollout from an npm tarball", () => {
  it("packs into one self-contained JavaScript file, installs globally offline, and is found by kubectl", () => {
    const npm = path.join(path.dirname(process.execPath), "npm");
    const packed = JSON.parse(
      run(npm, ["pack", "--json", "--pack-destination", scratch], {
        cwd: path.join(repoRoot, "plugin"),
      }),
    ) as { filename: string; files: { path: string }[] }[];
    expect(packed[0].files.map(f => f.path).sort()).toEqual([
      "dist/kubectl-modelrollout.js",
      "package.json",
    ]);
    const tarball = path.join(scratch, packed[0].filename);
    run(
      npm,
      ["install", "-g", "--prefix", prefix, tarball, "--offline", "--no-audit", "--no-fund"],
      { cwd: scratch, env: { ...userEnv(), npm_config_cache: path.join(scratch, "npm-cache") } },
    );
    const installed = path.join(prefix, "lib", "node_modules", "kubectl-modelrollout");
    // Nothing but the compiled file: no node_modules, no TypeScript, no tsx.
    expect(fs.existsSync(path.join(installed, "node_modules"))).toBe(false);
    const bin = fs.realpathSync(path.join(prefix, "bin", "kubectl-modelrollout"));
    expect(bin).toBe(path.join(installed, "dist", "kubectl-modelrollout.js"));
    expect(fs.readFileSync(bin, "utf8")).not.toMatch(/require\("(?!node:)[^"]+"\)/);

    const list = spawnSync(env().info.kubectl, ["plugin", "list"], {
      cwd: scratch,
      env: userEnv(),
      encoding: "utf8",
    });
    expect(list.stdout).toContain(path.join(prefix, "bin", "kubectl-modelrollout"));
    const help = plugin("--help");
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/kubectl modelrollout promote NAME \[--full\]/);
  });

  it("gets and promotes a rollout", async () => {
    kubectl(
      ["apply", "-f", "-"],
      `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: packed}
spec:
  modelName: packed
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: packed-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: packed-rollout}
spec:
  adapters: {inferenceModel: packed, stable: packed-v1, canary: packed-v2}
  steps: [{setWeight: 25}, {pause: {}}, {setWeight: 100}]
`,
    );
    await waitFor(
      "packed-rollout paused at 25%",
      () =>
        status("packed-rollout").phase === "Paused" && status("packed-rollout").canaryWeight === 25,
      30_000,
      () => `operator log: ${operator.log}`,
    );
    const list = plugin("get");
    expect(list.stderr).toBe("");
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/packed-rollout\s+Paused\s+1\/3\s+packed-v1 75% \| packed-v2 25%/);

    const promoted = plugin("promote", "packed-rollout");
    expect(promoted.stderr).toBe("");
    expect(promoted.status).toBe(0);
    expect(promoted.stdout).toMatch(/promote Applied/);
    await waitFor(
      "packed-rollout Succeeded",
      () => status("packed-rollout").phase === "Succeeded",
      30_000,
    );
    const detail = plugin("get", "packed-rollout");
    expect(detail.status).toBe(0);
    expect(detail.stdout).toMatch(/Phase:\s+Succeeded/);
  });
});
