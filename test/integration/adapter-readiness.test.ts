// Adapter readiness (spec.adapters.readiness) against real llm-d-inference-sim model servers behind
// emulated Pods of an InferencePool: a canary adapter missing on one pod holds the rollout with a
// reason naming that pod and no weight moves; the operator loads it when asked (vLLM's runtime
// LoRA API) and unloads it after a rollback; an unreachable pod holds too.
import * as http from "node:http";
import { deployModelServer, removeModelServer, setPodReady } from "../../hack/env/model-servers";
import type { ModelServer } from "../../hack/env/model-servers";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { Rollout, rolloutHelpers } from "../support/rollouts";

const POOL = "lora-pool";
const STABLE = "s-v1";
/** Pod `full-0` serves every canary of this file from the start; `partial-0` only the stable. */
const CANARIES = ["a-v2", "b-v2", "c-v2"];

let ns: TestNamespace;
let operator: RunningOperator;
const servers: ModelServer[] = [];

const { kubectl, apply, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);
const url = (pod: string) => servers.find(s => s.name === pod)!.url;

async function adaptersOn(pod: string): Promise<Record<string, string>> {
  const res = await fetch(`${url(pod)}/v1/models`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { data: { id: string; root?: string; parent?: string }[] };
  return Object.fromEntries(body.data.filter(m => m.parent).map(m => [m.id, m.root ?? ""]));
}

function pool(name: string, app: string, port: number): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${name}}
spec:
  selector: {app: ${app}}
  targetPortNumber: ${port}
  extensionRef: {name: ${name}-epp}
`;
}

function model(name: string, poolName = POOL): string {
  return `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${name}}
spec:
  modelName: ${name}
  poolRef: {name: ${poolName}}
  targetModels: [{name: ${STABLE}, weight: 100}]
`;
}

function modelRollout(name: string, canary: string, readiness: string, steps: string): string {
  return `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${name}}
spec:
  adapters:
    inferenceModel: ${name}-model
    stable: ${STABLE}
    canary: ${canary}
    readiness: ${readiness}
  steps: ${steps}
`;
}

const progressing = (r: Rollout) => r.status?.conditions?.find(c => c.type === "Progressing");
const canaryWeightIn = (m: string) => targetModels(m).find(t => t.name !== STABLE)?.weight ?? 0;

function eventsOf(name: string): { type: string; reason: string; message: string }[] {
  return JSON.parse(
    kubectl(["get", "events", "--field-selector", `involvedObject.name=${name}`, "-o", "json"]),
  ).items;
}

beforeAll(async () => {
  ns = createTestNamespace("adapter-ready");
  apply(pool(POOL, "vllm-lora", 8000));
  const deploy = (name: string, loraAdapters: string[]) =>
    deployModelServer(env().info, {
      namespace: ns.name,
      name,
      labels: { app: "vllm-lora" },
      port: 8000,
      model: "Qwen/Qwen2.5-1.5B-Instruct",
      servedModelNames: ["base"],
      loraAdapters,
      maxLoras: 4,
    }).then(s => servers.push(s));
  await Promise.all([deploy("full-0", [STABLE, ...CANARIES]), deploy("partial-0", [STABLE])]);
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
});

afterAll(async () => {
  await operator?.stop();
  await Promise.all(servers.map(s => removeModelServer(env().info, s.namespace, s.name)));
  await ns?.cleanup();
});

describe("adapter readiness (real simulator pods)", () => {
  it("holds while one Ready pod lacks the canary adapter, naming it; proceeds once it is loaded", async () => {
    expect(Object.keys(await adaptersOn("partial-0"))).toEqual([STABLE]);
    apply(model("held-model"));
    apply(modelRollout("held", "a-v2", "{}", "[{setWeight: 30}, {setWeight: 100}]"));
    const seen: number[] = [];
    const held = await waitForRollout("held", "held with AdapterNotReady", r => {
      seen.push(canaryWeightIn("held-model"));
      return progressing(r)?.reason === "AdapterNotReady";
    });
    const message = progressing(held)?.message ?? "";
    expect(progressing(held)?.status).toBe("False");
    expect(message).toMatch(/a-v2 is not served by 1 of 2 Ready pods of InferencePool lora-pool/);
    expect(message).toMatch(/partial-0 \(not in \/v1\/models\)/);
    expect(message).not.toMatch(/full-0/);
    expect(held.status?.message).toBe(message);
    expect(held.status?.canaryWeight).toBeUndefined();
    expect(Math.max(...seen)).toBe(0);
    expect(targetModels("held-model")).toEqual([{ name: STABLE, weight: 100 }]);
    await waitFor(
      "a Warning Event AdapterNotReady",
      () =>
        eventsOf("held").some(e => e.reason === "AdapterNotReady" && /partial-0/.test(e.message)),
      15000,
    );
    // Still held after the operator looked again (it re-checks every few seconds).
    await waitFor(
      "a second check of the pods",
      () => /partial-0/.test(kubectl(["get", "mro", "held", "-o", "jsonpath={.status.message}"])),
      10000,
    );
    expect(targetModels("held-model")).toEqual([{ name: STABLE, weight: 100 }]);

    // The user loads it (vLLM's runtime API on the simulator): the rollout proceeds by itself.
    const res = await fetch(`${url("partial-0")}/v1/load_lora_adapter`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ lora_name: "a-v2", lora_path: "/adapters/a-v2" }),
    });
    expect(res.status).toBe(200);
    const done = await waitForRollout("held", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("held-model")).toEqual([{ name: "a-v2", weight: 100 }]);
    expect(done.status?.adapterReadiness?.loadedOn).toBeUndefined();
    expect(eventsOf("held").map(e => e.reason)).toContain("AdapterReady");
  });

  it("loads the canary adapter on every pod that lacks it when the spec asks, then proceeds", async () => {
    apply(model("loads-model"));
    apply(
      modelRollout(
        "loads",
        "b-v2",
        "{load: {path: /adapters/b-v2-checkpoint}}",
        "[{setWeight: 30}, {setWeight: 100}]",
      ),
    );
    const done = await waitForRollout("loads", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("loads-model")).toEqual([{ name: "b-v2", weight: 100 }]);
    // Loaded by the operator with the spec's lora_path (the simulator reports it as `root`).
    expect((await adaptersOn("partial-0"))["b-v2"]).toBe("/adapters/b-v2-checkpoint");
    // full-0 had it from the start (--lora-modules): not loaded again, not recorded.
    expect((await adaptersOn("full-0"))["b-v2"]).toBe("/adapters/b-v2");
    expect(done.status?.adapterReadiness).toEqual({
      loadedOn: ["partial-0"],
    });
    const reasons = eventsOf("loads").map(e => e.reason);
    expect(reasons).toContain("AdapterLoading");
  });

  it("after an abort, unloads the adapter from the pods it loaded it on, and only there (also after a crash)", async () => {
    apply(model("unloads-model"));
    apply(
      modelRollout(
        "unloads",
        "c-v2",
        "{load: {path: /adapters/c-v2}}",
        "[{setWeight: 10}, {pause: {}}]",
      ),
    );
    await waitForRollout(
      "unloads",
      "Paused at 10%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 10,
    );
    expect(Object.keys(await adaptersOn("partial-0"))).toContain("c-v2");
    // A crash: what the operator loaded is known from status alone, by the next operator.
    await operator.stop("SIGKILL");
    operator = await startOperator({ namespaces: [ns.name], name: `${ns.name}-restarted` });
    kubectl(["annotate", "mro", "unloads", "rollouts.inference.dev/action=abort"]);
    await waitForRollout("unloads", "Aborted", r => r.status?.phase === "Aborted");
    // The unload runs before the status write that records Aborted.
    expect(Object.keys(await adaptersOn("partial-0"))).not.toContain("c-v2");
    expect(Object.keys(await adaptersOn("full-0"))).toContain("c-v2");
    // The record goes once a later check sees the adapter gone from the pod.
    await waitForRollout("unloads", "unload seen", r => !r.status?.adapterReadiness?.loadedOn);
    expect(targetModels("unloads-model")).toEqual([{ name: STABLE, weight: 100 }]);
    expect(eventsOf("unloads").map(e => e.reason)).toContain("AdapterUnloaded");
  });

  it("an InferenceModelRewrite on a v1 InferencePool (matchLabels, targetPorts): loads on both pods", async () => {
    apply(`
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: lora-pool-v1}
spec:
  selector: {matchLabels: {app: vllm-lora}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: lora-pool-v1-epp, port: {number: 9002}}
---
apiVersion: llm-d.ai/v1alpha2
kind: InferenceModelRewrite
metadata: {name: rewrite}
spec:
  poolRef: {name: lora-pool-v1}
  rules:
  - matches: [{model: {value: rewritten}}]
    targets: [{modelRewrite: ${STABLE}, weight: 100}]
`);
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: rewrite}
spec:
  adapters:
    inferenceModelRewrite: {name: rewrite}
    stable: ${STABLE}
    canary: d-v2
    readiness: {load: {path: /adapters/d-v2}}
  steps: [{setWeight: 50}, {setWeight: 100}]
`);
    const done = await waitForRollout("rewrite", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(done.status?.adapterReadiness?.loadedOn).toEqual(["full-0", "partial-0"]);
    for (const pod of ["full-0", "partial-0"])
      expect((await adaptersOn(pod))["d-v2"]).toBe("/adapters/d-v2");
    const rewrite = JSON.parse(
      kubectl(["get", "inferencemodelrewrites.llm-d.ai", "rewrite", "-o", "json"]),
    ) as { spec: { rules: { targets: unknown[] }[] } };
    expect(rewrite.spec.rules[0].targets).toEqual([{ modelRewrite: "d-v2", weight: 100 }]);
  });

  it("kubectl explain documents the fields; the apiserver refuses a bad timeout and a load without path", () => {
    const explained = kubectl([
      "explain",
      "modelrollout.spec.adapters.readiness",
      "--recursive=false",
    ]);
    expect(explained).toMatch(/GET \/v1\/models/);
    expect(explained).toMatch(/AdapterNotReady/);
    expect(
      kubectl(["explain", "modelrollout.spec.adapters.readiness.load.unloadOnRollback"]),
    ).toMatch(/unload_lora_adapter/);
    expect(kubectl(["explain", "modelrollout.status.adapterReadiness.loadedOn"])).toMatch(/loaded/);
    apply(model("refused-model"));
    const refused = (readiness: string) => {
      try {
        apply(modelRollout("refused", "a-v2", readiness, "[{setWeight: 100}]"));
        return "accepted";
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(refused("{timeout: 1d}")).toMatch(/readiness.timeout must be a duration like 2s/);
    expect(refused("{timeout: 11m}")).toMatch(/at most 10m/);
    expect(refused("{load: {unloadOnRollback: false}}")).toMatch(
      /spec.adapters.readiness.load.path: Required/,
    );
    expect(kubectl(["get", "mro", "--ignore-not-found", "-o", "name"])).not.toMatch(/refused/);
  });

  it("a Ready pod that does not answer holds the rollout, named with the error", async () => {
    apply(pool("ghost-pool", "ghost", 1));
    kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "ghost-0", labels: { app: "ghost" } },
        spec: { nodeName: "local", containers: [{ name: "vllm", image: "vllm" }] },
      }),
    );
    // Port 1 of this loopback address: nothing listens, the connection is refused.
    setPodReady(env().info, ns.name, "ghost-0", "127.0.0.1", true);
    apply(model("ghost-model", "ghost-pool"));
    apply(modelRollout("ghost", "a-v2", "{timeout: 1s}", "[{setWeight: 100}]"));
    const held = await waitForRollout(
      "ghost",
      "held with AdapterNotReady",
      r => progressing(r)?.reason === "AdapterNotReady",
    );
    expect(progressing(held)?.message).toMatch(/ghost-0 \(unreachable: .*ECONNREFUSED/);
    expect(targetModels("ghost-model")).toEqual([{ name: STABLE, weight: 100 }]);
    expect(held.status?.canaryWeight).toBeUndefined();
  });

  it("a pod that refuses the load (vLLM without runtime LoRA updates) holds, with a Warning, and the reconcile goes on", async () => {
    // vLLM answers 404 on /v1/load_lora_adapter unless VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; the
    // simulator always accepts, so this pod is a small server that answers as such a vLLM does.
    const server = http.createServer((req, res) => {
      if (req.url === "/v1/models") {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            object: "list",
            data: [{ id: "base" }, { id: STABLE, parent: "base" }],
          }),
        );
      } else {
        res.statusCode = 404;
        res.end(JSON.stringify({ detail: "Not Found" }));
      }
    });
    await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as { port: number }).port;
      apply(pool("strict-pool", "strict", port));
      kubectl(
        ["apply", "-f", "-"],
        JSON.stringify({
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "strict-0", labels: { app: "strict" } },
          spec: { nodeName: "local", containers: [{ name: "vllm", image: "vllm" }] },
        }),
      );
      setPodReady(env().info, ns.name, "strict-0", "127.0.0.1", true);
      apply(model("strict-model", "strict-pool"));
      apply(modelRollout("strict", "a-v2", "{load: {path: /adapters/a-v2}}", "[{setWeight: 100}]"));
      await waitFor(
        "a Warning Event AdapterLoadFailed naming the pod and vLLM's answer",
        () =>
          eventsOf("strict").some(
            e => e.reason === "AdapterLoadFailed" && /strict-0.*HTTP 404/.test(e.message),
          ),
        30000,
        () => operator.log,
      );
      const held = await waitForRollout("strict", "held, recorded", r =>
        (r.status?.adapterReadiness?.loadedOn ?? []).includes("strict-0"),
      );
      expect(progressing(held)?.reason).toBe("AdapterNotReady");
      expect(held.status?.conditions?.find(c => c.type === "Ready")?.status).toBe("True");
      expect(targetModels("strict-model")).toEqual([{ name: STABLE, weight: 100 }]);
    } finally {
      server.close();
    }
  });

  it("a pod address the operator's address policy refuses is never called and holds the rollout", async () => {
    await operator.stop();
    operator = await startOperator({
      namespaces: [ns.name],
      name: `${ns.name}-denied`,
      env: { MODELROLLOUT_PROMETHEUS_DENIED: "127.0.0.0/8" },
    });
    apply(model("denied-model"));
    apply(modelRollout("denied", "a-v2", "{load: {path: /adapters/a-v2}}", "[{setWeight: 100}]"));
    const held = await waitForRollout(
      "denied",
      "held with AdapterNotReady",
      r => progressing(r)?.reason === "AdapterNotReady",
    );
    const message = progressing(held)?.message ?? "";
    expect(message).toMatch(/not served by 2 of 2 Ready pods/);
    expect(message).toMatch(
      /full-0 \(unreachable: address refused by the operator's address policy/,
    );
    expect(message).toMatch(/unreachable pods cannot be loaded/);
    expect(targetModels("denied-model")).toEqual([{ name: STABLE, weight: 100 }]);
    expect(held.status?.adapterReadiness?.loadedOn).toBeUndefined();
  });
});
