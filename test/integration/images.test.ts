// The two images as they ship, run against the local control plane: built for real with buildah
// (hack/images.ts, cached by their inputs), each started from its image's filesystem with chroot
// as a container runtime would start it (podman cannot run containers here: cgroups). The
// operator image runs exactly what `pepr build -i <image>` deploys — the watcher Deployment's
// args and env, the module from its Secret, the identity of its ClusterRole — and the picker
// image serves the pool whose LoRA adapters the operator rolls out.
import { ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { parseAllDocuments } from "yaml";
import { deployModelServer, ModelServer, removeModelServer } from "../../hack/env/model-servers";
import { freePort } from "../../hack/env/procs";
import { operatorKubeconfig, PolicyRule } from "../../hack/env/rbac";
import { operatorEnv } from "../../hack/run-operator";
import {
  BuiltImage,
  ensureImage,
  ImageFilesystem,
  imageKubeconfigPath,
  openImage,
} from "../../hack/images";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { PickerProcess, startPickerProcess } from "../support/picker-process";
import { rolloutHelpers } from "../support/rollouts";

const report = (line: string) => process.stderr.write(`[images] ${line}\n`);

const V1 = "travel-helper-v1";
const V2 = "travel-helper-v2";
const POOL = "travel-pool";
const PORT = 8000;

interface K8sObject {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  rules?: PolicyRule[];
  spec?: {
    template: {
      spec: {
        containers: {
          image: string;
          args: string[];
          env?: { name: string; value: string }[];
          volumeMounts: { mountPath: string; name: string }[];
        }[];
      };
    };
  };
}

/** The objects `pepr build` wrote for the operator image, by kind and name. */
function peprManifests(file: string): (kind: string, name: string) => K8sObject {
  const objects = parseAllDocuments(fs.readFileSync(file, "utf8"))
    .map(d => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => !!o);
  return (kind, name) => {
    const o = objects.find(x => x.kind === kind && x.metadata.name === name);
    if (!o) throw new Error(`${file} has no ${kind} ${name}`);
    return o;
  };
}

let ns: TestNamespace;
let operatorBuild: BuiltImage;
let pickerBuild: BuiltImage;
const opened: ImageFilesystem[] = [];
const servers: ModelServer[] = [];
let picker: PickerProcess | undefined;
let operator: { child: ChildProcess; log: string; exited: Promise<void> } | undefined;

beforeAll(async () => {
  // Cached images come back in seconds; a cold build takes ~10-20 min on 2 shared cores.
  pickerBuild = await ensureImage("picker", report);
  operatorBuild = await ensureImage("operator", report);
  ns = createTestNamespace("images");
}, 3_600_000);

afterAll(async () => {
  if (operator) {
    // The whole process group: Pepr's controller and the module it forked, as the container's
    // end would take both.
    try {
      process.kill(-operator.child.pid!, "SIGTERM");
    } catch {
      // already gone
    }
    await operator.exited;
  }
  await picker?.stop();
  await Promise.all(servers.map(s => removeModelServer(env().info, s.namespace, s.name)));
  for (const image of opened) image.remove();
  await ns?.cleanup();
});

const { apply, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator?.log ?? "(operator not started)",
);

/** What the picker's HTTP proxy sent a request for the public model name to. */
async function answeredBy(proxyUrl: string): Promise<string | undefined> {
  const res = await fetch(`${proxyUrl}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "travel-helper",
      prompt: "Plan a weekend in Lisbon",
      max_tokens: 1,
    }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`picker answered ${res.status}: ${text}`);
  return (JSON.parse(text) as { model?: string }).model;
}

describe("the operator and picker images", () => {
  it("the operator image runs the module pepr build bundled, connection fix included, and a LoRA rollout served by the picker image succeeds", async () => {
    const { info } = env();
    const uuid = JSON.parse(fs.readFileSync(path.join(__dirname, "../../package.json"), "utf8"))
      .pepr.uuid as string;
    const manifest = peprManifests(operatorBuild.pepr!.manifests);

    // What pepr build deploys: the watcher runs our image with the controller and the module's hash.
    const watcher = manifest("Deployment", `pepr-${uuid}-watcher`).spec!.template.spec
      .containers[0];
    expect(watcher.image).toBe(operatorBuild.ref);
    const [controller, hash] = watcher.args;
    expect(controller).toBe("/app/node_modules/pepr/dist/controller.js");
    const secret = manifest("Secret", `pepr-${uuid}-module`);
    const moduleGz = Buffer.from(secret.data![`module-${hash}.js.gz`], "base64");
    const moduleCode = gunzipSync(moduleGz);
    expect(createHash("sha256").update(moduleCode).digest("hex")).toBe(hash);
    // The connection fix (capabilities/shared-http-agent.ts) is inside the module.
    expect(moduleCode.toString("utf8")).toContain("[shared-agent] created undici Agent #");

    // --- The picker, from its image, serving the pool ---------------------------------------
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${POOL}}
spec:
  selector: {app: vllm-travel}
  targetPortNumber: ${PORT}
  extensionRef: {name: ${POOL}-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: travel-helper}
spec:
  modelName: travel-helper
  criticality: Critical
  poolRef: {name: ${POOL}}
  targetModels: [{name: ${V1}, weight: 100}]
`);
    servers.push(
      await deployModelServer(info, {
        model: "Qwen/Qwen2.5-1.5B-Instruct",
        servedModelNames: ["mymodel"],
        loraAdapters: [V1, V2],
        maxLoras: 2,
        namespace: ns.name,
        name: "vllm-travel-0",
        labels: { app: "vllm-travel" },
        port: PORT,
      }),
    );
    const pickerImage = openImage(pickerBuild.ref);
    opened.push(pickerImage);
    pickerImage.writeFile(imageKubeconfigPath, fs.readFileSync(info.kubeconfig), 0o600);
    picker = await startPickerProcess({
      pool: POOL,
      namespace: ns.name,
      kubeconfig: imageKubeconfigPath,
      entrypoint: pickerImage.command({ args: [], env: { KUBECONFIG: imageKubeconfigPath } }),
      logFile: path.join(info.logDir, `picker-${ns.name}.log`),
    });
    expect(fs.realpathSync(`/proc/${picker.pid}/root`)).toBe(fs.realpathSync(pickerImage.root));
    const proxyUrl = picker.proxyUrl!;
    await waitFor(
      "the picker image to send travel-helper to v1",
      async () => (await answeredBy(proxyUrl)) === V1,
      30000,
      () => picker!.output(),
    );

    // --- The operator, from its image, as the watcher Deployment runs it ---------------------
    const operatorImage = openImage(operatorBuild.ref);
    opened.push(operatorImage);
    // The Deployment's volumes: the module Secret at /app/load, the TLS Secret at /etc/certs.
    const mounts = Object.fromEntries(watcher.volumeMounts.map(m => [m.name, m.mountPath]));
    operatorImage.writeFile(`${mounts.module}/module-${hash}.js.gz`, moduleGz);
    const local = operatorEnv();
    operatorImage.writeFile(
      `${mounts["tls-certs"]}/tls.crt`,
      fs.readFileSync(local.SSL_CERT_PATH!),
    );
    operatorImage.writeFile(
      `${mounts["tls-certs"]}/tls.key`,
      fs.readFileSync(local.SSL_KEY_PATH!),
      0o600,
    );
    // In a cluster the ServiceAccount bound to the generated ClusterRole; here a user bound to
    // the same rules (its CRD rights included: the controller applies Pepr's store CRD).
    const clusterRole = manifest("ClusterRole", `pepr-${uuid}`);
    const kubeconfig = operatorKubeconfig(info, "modelrollout-operator-image", clusterRole.rules);
    operatorImage.writeFile(imageKubeconfigPath, fs.readFileSync(kubeconfig), 0o600);
    const { command, args } = operatorImage.command({
      args: watcher.args,
      env: {
        ...Object.fromEntries((watcher.env ?? []).map(e => [e.name, e.value])),
        // What a cluster gives a Pod and this machine does not: the API server, a free port.
        KUBECONFIG: imageKubeconfigPath,
        PEPR_PORT: String(await freePort()),
        MODELROLLOUT_HEALTH_PORT: "0",
        MODELROLLOUT_NAMESPACES: ns.name,
        MODELROLLOUT_IDENTITY: `image-${ns.name}`,
      },
    });
    const log = path.join(info.logDir, `operator-image-${ns.name}.log`);
    const out = fs.openSync(log, "a");
    const child = spawn(command, args, {
      stdio: ["ignore", out, out],
      env: { PATH: process.env.PATH },
      detached: true, // its own process group: the controller forks the module
    });
    fs.closeSync(out);
    operator = { child, log, exited: new Promise(resolve => child.once("exit", () => resolve())) };
    const pid = child.pid!;
    // A wait ends at once, with the log's tail, if the operator exits.
    const exitedEarly = operator.exited.then(() => {
      const tail = fs.readFileSync(log, "utf8").slice(-3000);
      throw new Error(`the operator image's process exited (${child.exitCode}): ${tail}`);
    });
    exitedEarly.catch(() => undefined);
    const orExit = <T>(wait: Promise<T>) => Promise.race([wait, exitedEarly]);
    // Once unshare and chroot have exec'd, the process (same PID) lives in the image.
    await waitFor(
      "the operator process to enter the image's filesystem",
      () => fs.realpathSync(`/proc/${pid}/root`) === fs.realpathSync(operatorImage.root),
      10000,
      log,
    );
    await orExit(
      waitFor(
        "the controller to check the module's hash and write it into the image's /app",
        () => fs.existsSync(path.join(operatorImage.root, `app/module-${hash}.js`)),
        60000,
        log,
      ),
    );
    expect(fs.readFileSync(path.join(operatorImage.root, `app/module-${hash}.js`))).toEqual(
      moduleCode,
    );
    // Written as the Deployment's user, which /app must let write (the image's chown).
    expect(fs.statSync(path.join(operatorImage.root, `app/module-${hash}.js`)).uid).toBe(65532);

    // --- The rollout ----------------------------------------------------------------------
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: travel-helper}
spec:
  adapters: {inferenceModel: travel-helper, stable: ${V1}, canary: ${V2}}
  steps:
  - setWeight: 50
  - pause: {duration: 2s}
  - setWeight: 100
`);
    const seen: string[] = [];
    await orExit(
      waitForRollout(
        "travel-helper",
        "Succeeded",
        r => {
          const pair = JSON.stringify(targetModels("travel-helper"));
          if (seen[seen.length - 1] !== pair) seen.push(pair);
          return r.status?.phase === "Succeeded";
        },
        90000,
      ),
    );
    expect(seen).toContain(
      JSON.stringify([
        { name: V1, weight: 50 },
        { name: V2, weight: 50 },
      ]),
    );
    expect(targetModels("travel-helper")).toEqual([{ name: V2, weight: 100 }]);
    // The picker image follows the InferenceModel: every request now goes to v2.
    await waitFor(
      "the picker image to send travel-helper to v2 only",
      async () => {
        for (let i = 0; i < 10; i++) if ((await answeredBy(proxyUrl)) !== V2) return false;
        return true;
      },
      30000,
      () => picker!.output(),
    );

    // The module ran with the connection fix: one shared undici Agent for every API call.
    const text = fs.readFileSync(log, "utf8");
    expect(text.match(/\[shared-agent\] created undici Agent #\d+/g)).toEqual([
      "[shared-agent] created undici Agent #1",
    ]);
    // Both processes of the operator run as the Deployment's user, inside the image.
    const group = fs
      .readdirSync("/proc")
      .filter(p => /^\d+$/.test(p))
      .filter(p => {
        try {
          return (
            fs.readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" ")[2] === String(pid)
          );
        } catch {
          return false;
        }
      });
    expect(group.length).toBeGreaterThanOrEqual(2);
    for (const p of group) {
      expect(fs.realpathSync(`/proc/${p}/root`)).toBe(fs.realpathSync(operatorImage.root));
      expect(fs.readFileSync(`/proc/${p}/status`, "utf8")).toMatch(/^Uid:\s+65532\s/m);
    }
    expect(
      group.some(p =>
        fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes(`/app/module-${hash}.js`),
      ),
    ).toBe(true);
    expect(child.exitCode).toBeNull();
  }, 300_000);
});
