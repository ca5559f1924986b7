// The operator on the real control plane: both seed scenarios with the seed's names and weights,
// manual control through plain kubectl, describe output, bad specs, conflicts, missing targets,
// concurrent edits and crashes. The operator runs as an identity bound to exactly the RBAC rules
// declared in package.json (pepr.rbac), so every test also proves those rules suffice.
import { K8s } from "kubernetes-fluent-client";
import { HTTPRoute } from "../../capabilities/api/kinds";
import { modifyWithRetry } from "../../capabilities/modelrollout/targets";
import { declaredRules, operatorKubeconfig } from "../../hack/env/rbac";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers } from "../support/rollouts";

let ns: TestNamespace;
let operator: RunningOperator;
let operatorKubeconfigPath: string;

beforeAll(async () => {
  ns = createTestNamespace("operator");
  operatorKubeconfigPath = operatorKubeconfig(env().info);
  operator = await startOperator({
    namespaces: [ns.name],
    kubeconfig: operatorKubeconfigPath,
    name: ns.name,
  });
});

afterAll(async () => {
  await operator?.stop();
  await ns.cleanup();
});

const { kubectl, apply, getJson, rollout, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);

const seedPoolV1 = (name: string) => `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${name}}
spec:
  extensionRef: {group: "", kind: Service, name: ${name}-ext-proc}
  selector: {app: custom-serving, release: qwen}
  targetPortNumber: 8000
`;

describe("scenario 1: new base model between two InferencePools (seed names)", () => {
  it("creates the canary pool, walks 90/10 → 50/50 → 0/100 on the HTTPRoute and keeps everything else", async () => {
    apply(seedPoolV1("mymodel-pool-v1"));
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: mymodel-v1}
spec:
  criticality: Critical
  modelName: mymodel
  poolRef: {group: inference.networking.x-k8s.io, kind: InferencePool, name: mymodel-pool-v1}
  targetModels: [{name: mymodel, weight: 100}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: inference-route}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: inference-gateway, sectionName: llm-gw}]
  rules:
  - backendRefs:
    - {group: inference.networking.x-k8s.io, kind: InferencePool, name: mymodel-pool-v1, port: 8000, weight: 1}
    matches:
    - path: {type: PathPrefix, value: /v1/completions}
    - path: {type: PathPrefix, value: /v1/chat/completions}
  - backendRefs: [{kind: Service, name: other-service, port: 80}]
    matches: [{path: {type: PathPrefix, value: /other}}]
`);
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: qwen-to-deepseek}
spec:
  pools:
    httpRoute: inference-route
    stable: mymodel-pool-v1
    canary: mymodel-pool-v2
    canaryTemplate:
      extensionRef: {group: "", kind: Service, name: mymodel-v2-ext-proc}
      selector: {app: custom-serving, release: deepseek-r1}
      targetPortNumber: 8000
  steps:
  - setWeight: 10
  - pause: {duration: 2s}
  - setWeight: 50
  - pause: {duration: 1s}
  - setWeight: 100
`);
    const seen: string[] = [];
    const weights = () => {
      const route = getJson<{
        spec: { rules: { backendRefs: { name: string; weight?: number }[] }[] };
      }>("httproute", "inference-route");
      const pair = route.spec.rules[0].backendRefs.map(r => `${r.name}=${r.weight}`).join(",");
      if (seen[seen.length - 1] !== pair) seen.push(pair);
      return route;
    };
    await waitFor(
      "phase Succeeded",
      () => (weights(), rollout("qwen-to-deepseek").status?.phase === "Succeeded"),
      30000,
      operator.log,
      50,
    );
    const route = weights();

    expect(seen).toContain("mymodel-pool-v1=90,mymodel-pool-v2=10");
    expect(seen).toContain("mymodel-pool-v1=50,mymodel-pool-v2=50");
    expect(route.spec.rules[0].backendRefs).toEqual([
      {
        group: "inference.networking.x-k8s.io",
        kind: "InferencePool",
        name: "mymodel-pool-v2",
        port: 8000,
        weight: 100,
      },
    ]);
    // Everything else on the route is untouched.
    const full = getJson<{
      spec: { parentRefs: unknown[]; rules: { matches: unknown[]; backendRefs: unknown[] }[] };
    }>("httproute", "inference-route");
    expect(full.spec.parentRefs).toEqual([
      {
        group: "gateway.networking.k8s.io",
        kind: "Gateway",
        name: "inference-gateway",
        sectionName: "llm-gw",
      },
    ]);
    expect(full.spec.rules[0].matches).toHaveLength(2);
    expect(full.spec.rules[1].backendRefs).toEqual([
      { group: "", kind: "Service", name: "other-service", port: 80, weight: 1 },
    ]);

    // The canary pool was created from the template, and the stable pool's InferenceModel cloned for it.
    const pool = getJson<{ spec: { selector: Record<string, string> } }>(
      "inferencepool.inference.networking.x-k8s.io",
      "mymodel-pool-v2",
    );
    expect(pool.spec.selector).toEqual({ app: "custom-serving", release: "deepseek-r1" });
    const models = JSON.parse(kubectl(["get", "inferencemodels", "-o", "json"])).items as {
      spec: { modelName: string; criticality: string; poolRef: { name: string } };
    }[];
    const clone = models.find(m => m.spec.poolRef.name === "mymodel-pool-v2");
    expect(clone?.spec).toMatchObject({ modelName: "mymodel", criticality: "Critical" });
  });
});

describe("scenario 2: new LoRA adapter version in one InferenceModel (seed names)", () => {
  it("holds at 90/10 on an indefinite pause until promoted with plain kubectl, then succeeds", async () => {
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: loramodel}
spec:
  criticality: Critical
  modelName: travelhelper
  poolRef: {group: inference.networking.x-k8s.io, kind: InferencePool, name: mymodel-pool-v1}
  targetModels: [{name: travel-helper-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: travel-helper}
spec:
  adapters: {inferenceModel: loramodel, stable: travel-helper-v1, canary: travel-helper-v2}
  steps:
  - setWeight: 10
  - pause: {}
  - setWeight: 100
`);
    await waitForRollout(
      "travel-helper",
      "Paused at 10%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 10,
    );
    expect(targetModels("loramodel")).toEqual([
      { name: "travel-helper-v1", weight: 90 },
      { name: "travel-helper-v2", weight: 10 },
    ]);

    kubectl(["annotate", "modelrollout", "travel-helper", "rollouts.inference.dev/action=promote"]);
    const done = await waitForRollout(
      "travel-helper",
      "Succeeded",
      r => r.status?.phase === "Succeeded",
    );
    expect(targetModels("loramodel")).toEqual([{ name: "travel-helper-v2", weight: 100 }]);
    await waitForRollout(
      "travel-helper",
      "action annotation removed",
      r => !r.metadata.annotations?.["rollouts.inference.dev/action"],
    );
    expect(done.status?.canaryWeight).toBe(100);

    // kubectl describe shows conditions and the events of every transition.
    const described = kubectl(["describe", "modelrollout", "travel-helper"]);
    expect(described).toMatch(/Phase:\s+Succeeded/);
    expect(described).toMatch(/Type:\s+Completed/);
    for (const reason of ["WeightSet", "PauseStarted", "Promoted", "Succeeded"])
      expect(described).toMatch(new RegExp(`Normal\\s+${reason}\\s`));
    expect(kubectl(["get", "mro"])).toMatch(/travel-helper\s+Succeeded\s+3\s+100/);
  });

  it("takes the same action twice: a second promote moves past the second indefinite pause", async () => {
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: twice-model}
spec:
  modelName: twice
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: t-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: twice}
spec:
  adapters: {inferenceModel: twice-model, stable: t-v1, canary: t-v2}
  steps: [{setWeight: 10}, {pause: {}}, {setWeight: 50}, {pause: {}}, {setWeight: 80}]
`);
    await waitForRollout("twice", "Paused at 10%", r => r.status?.currentStep === 1);
    kubectl(["annotate", "modelrollout", "twice", "rollouts.inference.dev/action=promote"]);
    await waitForRollout(
      "twice",
      "Paused at 50%, annotation removed",
      r =>
        r.status?.currentStep === 3 &&
        r.status.phase === "Paused" &&
        !r.metadata.annotations?.["rollouts.inference.dev/action"],
    );
    kubectl(["annotate", "modelrollout", "twice", "rollouts.inference.dev/action=promote"]);
    await waitForRollout("twice", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("twice-model")).toEqual([{ name: "t-v2", weight: 100 }]);
  });

  it("aborts back to stable, then retries from the first step", async () => {
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: abort-model}
spec:
  modelName: abort
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: a-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: abort-me}
spec:
  adapters: {inferenceModel: abort-model, stable: a-v1, canary: a-v2}
  steps: [{setWeight: 30}, {pause: {}}, {setWeight: 100}]
`);
    await waitForRollout(
      "abort-me",
      "Paused at 30%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 30,
    );
    kubectl(["annotate", "modelrollout", "abort-me", "rollouts.inference.dev/action=abort"]);
    await waitForRollout("abort-me", "Aborted", r => r.status?.phase === "Aborted");
    expect(targetModels("abort-model")).toEqual([{ name: "a-v1", weight: 100 }]);
    await waitForRollout(
      "abort-me",
      "annotation removed",
      r => !r.metadata.annotations?.["rollouts.inference.dev/action"],
    );

    kubectl(["annotate", "modelrollout", "abort-me", "rollouts.inference.dev/action=retry"]);
    await waitForRollout(
      "abort-me",
      "Paused at 30% again",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 30,
    );
    expect(targetModels("abort-model")).toEqual([
      { name: "a-v1", weight: 70 },
      { name: "a-v2", weight: 30 },
    ]);
    kubectl([
      "annotate",
      "--overwrite",
      "modelrollout",
      "abort-me",
      "rollouts.inference.dev/action=promote-full",
    ]);
    await waitForRollout("abort-me", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("abort-model")).toEqual([{ name: "a-v2", weight: 100 }]);
  });

  it("pauses and resumes with spec.paused", async () => {
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: pause-model}
spec:
  modelName: pausing
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: p-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: pause-me}
spec:
  paused: true
  adapters: {inferenceModel: pause-model, stable: p-v1, canary: p-v2}
  steps: [{setWeight: 20}, {setWeight: 100}]
`);
    await waitForRollout("pause-me", "Paused", r => r.status?.phase === "Paused");
    expect(targetModels("pause-model")).toEqual([{ name: "p-v1", weight: 100 }]);
    kubectl([
      "patch",
      "modelrollout",
      "pause-me",
      "--type=merge",
      "-p",
      '{"spec":{"paused":false}}',
    ]);
    await waitForRollout("pause-me", "Succeeded", r => r.status?.phase === "Succeeded");
  });
});

describe("safety", () => {
  it("blocks a second rollout on the same model with a Conflict condition and changes nothing", async () => {
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: shared-model}
spec:
  modelName: shared
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: s-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: first}
spec:
  adapters: {inferenceModel: shared-model, stable: s-v1, canary: s-v2}
  steps: [{setWeight: 40}, {pause: {}}]
`);
    await waitForRollout(
      "first",
      "Paused at 40%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 40,
    );
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: second}
spec:
  adapters: {inferenceModel: shared-model, stable: s-v1, canary: s-v3}
  steps: [{setWeight: 90}]
`);
    const second = await waitForRollout(
      "second",
      "Conflict condition",
      r => !!r.status?.conditions?.some(c => c.reason === "Conflict"),
    );
    expect(second.status?.conditions?.find(c => c.reason === "Conflict")?.message).toMatch(/first/);
    expect(targetModels("shared-model")).toEqual([
      { name: "s-v1", weight: 60 },
      { name: "s-v2", weight: 40 },
    ]);
  });

  it("reports a missing InferenceModel with a reason, then proceeds once it exists", async () => {
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: early}
spec:
  adapters: {inferenceModel: late-model, stable: l-v1, canary: l-v2}
  steps: [{setWeight: 100}]
`);
    const early = await waitForRollout(
      "early",
      "InferenceModelNotFound",
      r => !!r.status?.conditions?.some(c => c.reason === "InferenceModelNotFound"),
    );
    expect(early.status?.conditions?.find(c => c.type === "Ready")?.status).toBe("False");
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: late-model}
spec:
  modelName: late
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: l-v1, weight: 100}]
`);
    await waitForRollout("early", "Succeeded", r => r.status?.phase === "Succeeded", 60000);
    expect(targetModels("late-model")).toEqual([{ name: "l-v2", weight: 100 }]);
  });

  it("never loses a concurrent edit of the HTTPRoute (resourceVersion precondition, retried)", async () => {
    apply(seedPoolV1("edit-pool"));
    apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: edited-route}
spec:
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: edit-pool, weight: 1}]
`);
    let calls = 0;
    const wrote = await modifyWithRetry<{
      spec: { rules: { backendRefs: { weight?: number }[] }[] };
    }>(HTTPRoute, ns.name, "edited-route", route => {
      calls++;
      // Another client edits the route between our read and our write (first attempt only).
      if (calls === 1) kubectl(["label", "httproute", "edited-route", "edited-by=someone-else"]);
      const next = structuredClone(route);
      next.spec.rules[0].backendRefs[0].weight = 42;
      return next;
    });
    expect(wrote).toBe(true);
    expect(calls).toBe(2);
    const route = await K8s(HTTPRoute).InNamespace(ns.name).Get("edited-route");
    expect(route.metadata?.labels?.["edited-by"]).toBe("someone-else");
    expect(
      (route as unknown as { spec: { rules: { backendRefs: { weight: number }[] }[] } }).spec
        .rules[0].backendRefs[0].weight,
    ).toBe(42);
  });
});

describe("a write the apiserver refuses", () => {
  it("says Forbidden on Ready with the fix, changes nothing, and proceeds once the right is granted", async () => {
    // A second operator whose identity lacks `patch` on InferenceModels, in a namespace of its own.
    const restricted = createTestNamespace("operator-rbac");
    const user = "modelrollout-operator-no-patch";
    const withoutPatch = declaredRules().map(r =>
      r.resources.includes("inferencemodels")
        ? { ...r, verbs: r.verbs.filter(v => v !== "patch") }
        : r,
    );
    const kubeconfig = operatorKubeconfig(env().info, user, withoutPatch);
    const op = await startOperator({
      namespaces: [restricted.name],
      kubeconfig,
      name: restricted.name,
    });
    const h = rolloutHelpers(
      () => restricted.name,
      () => op.log,
    );
    try {
      h.apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: rbac-model}
spec:
  modelName: rbac
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: rbac-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: rbac}
spec:
  adapters: {inferenceModel: rbac-model, stable: rbac-v1, canary: rbac-v2}
  steps: [{setWeight: 10}, {pause: {}}]
`);
      const refused = await h.waitForRollout(
        "rbac",
        "Ready=False Forbidden",
        r => !!r.status?.conditions?.some(c => c.type === "Ready" && c.reason === "Forbidden"),
      );
      const ready = refused.status!.conditions!.find(c => c.type === "Ready")!;
      expect(ready.status).toBe("False");
      expect(ready.message).toContain(
        `cannot set canary weight 10% on InferenceModel ${restricted.name}/rbac-model`,
      );
      expect(ready.message).toContain("cannot patch resource");
      expect(ready.message).toContain("package.json pepr.rbac");
      expect(refused.status?.canaryWeight).toBeUndefined();
      expect(h.targetModels("rbac-model")).toEqual([{ name: "rbac-v1", weight: 100 }]);
      expect(h.kubectl(["describe", "modelrollout", "rbac"])).toMatch(/Warning\s+Forbidden/);

      operatorKubeconfig(env().info, user); // now with every declared rule
      await h.waitForRollout(
        "rbac",
        "canary 10% after the grant",
        r =>
          r.status?.canaryWeight === 10 &&
          r.status?.conditions?.find(c => c.type === "Ready")?.status === "True",
      );
      expect(h.targetModels("rbac-model")).toEqual([
        { name: "rbac-v1", weight: 90 },
        { name: "rbac-v2", weight: 10 },
      ]);
    } finally {
      await op.stop();
      await restricted.cleanup();
    }
  });
});

describe("restart at any moment", () => {
  it("continues after a crash right after a weight write and during a pause, without repeating or skipping a step", async () => {
    apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: crash-model}
spec:
  modelName: crash
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: c-v1, weight: 100}]
`);
    const seen: number[] = [];
    const canary = () => {
      const w = targetModels("crash-model").find(t => t.name === "c-v2")?.weight ?? 0;
      if (seen[seen.length - 1] !== w) seen.push(w);
      return w;
    };
    canary();
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: crashy}
spec:
  adapters: {inferenceModel: crash-model, stable: c-v1, canary: c-v2}
  steps:
  - setWeight: 10
  - pause: {duration: 4s}
  - setWeight: 60
  - pause: {duration: 3s}
  - setWeight: 100
`);
    // Crash right after the first weight write.
    await waitFor("canary weight 10", () => canary() === 10, 30000, operator.log, 20);
    await operator.stop("SIGKILL");
    operator = await startOperator({
      namespaces: [ns.name],
      kubeconfig: operatorKubeconfigPath,
      name: ns.name,
    });
    // Crash in the middle of the second pause.
    await waitFor("canary weight 60", () => canary() === 60, 30000, operator.log, 20);
    await waitForRollout("crashy", "in the second pause", r => r.status?.currentStep === 3);
    await operator.stop("SIGKILL");
    const pausedAt = Date.now();
    operator = await startOperator({
      namespaces: [ns.name],
      kubeconfig: operatorKubeconfigPath,
      name: ns.name,
    });
    await waitFor(
      "Succeeded",
      () => (canary(), rollout("crashy").status?.phase === "Succeeded"),
      30000,
      operator.log,
      20,
    );
    canary();

    // Weights only moved forward through every step: no repeat, no skip, no step back.
    expect(seen).toEqual([0, 10, 60, 100]);
    // The pause was measured from its start in status, not restarted by the new process.
    expect(Date.now() - pausedAt).toBeLessThan(3000 + 10000);
    const events = kubectl([
      "get",
      "events",
      "--field-selector",
      "involvedObject.name=crashy",
      "-o",
      "json",
    ]);
    const reasons = (JSON.parse(events).items as { reason: string; message: string }[])
      .filter(e => e.reason === "WeightSet")
      .map(e => e.message);
    // A weight step's Event may repeat after a crash between the weight and the status write; its weight never does.
    expect(new Set(reasons.map(m => m.match(/canary c-v2 (\d+)%/)?.[1]))).toEqual(
      new Set(["10", "60", "100"]),
    );
  });
});

describe("bad specs are rejected by the apiserver with readable messages", () => {
  const base = (spec: string) => `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: bad}
spec:
${spec}`;
  const rejected = (yaml: string): string => {
    try {
      apply(yaml);
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error("the apiserver accepted an invalid ModelRollout");
  };
  it.each([
    [
      "both pools and adapters",
      `  pools: {httpRoute: r, stable: a, canary: b}\n  adapters: {inferenceModel: m, stable: a, canary: b}\n  steps: [{setWeight: 10}]`,
      /exactly one of/i,
    ],
    [
      "a weight over 100",
      `  adapters: {inferenceModel: m, stable: a, canary: b}\n  steps: [{setWeight: 150}]`,
      /between 0 and 100/,
    ],
    ["no steps", `  adapters: {inferenceModel: m, stable: a, canary: b}\n  steps: []`, /steps/],
    [
      "a step with two actions",
      `  adapters: {inferenceModel: m, stable: a, canary: b}\n  steps: [{setWeight: 10, pause: {}}]`,
      /exactly one/i,
    ],
    [
      "a bad duration",
      `  adapters: {inferenceModel: m, stable: a, canary: b}\n  steps: [{pause: {duration: 5 minutes}}]`,
      /duration/i,
    ],
  ])("%s", (_name, spec, message) => {
    expect(rejected(base(spec))).toMatch(message);
  });
});
