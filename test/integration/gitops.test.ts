// GitOps-friendly writes on the real apiserver: objects applied the way Argo CD / Flux apply them
// (server-side apply, a field manager of their own) with fields and entries the operator does not
// drive; after the rollout's writes the live spec differs from what was applied only in weights
// (and the one entry the split adds or drops). A write based on a stale read is refused by the
// apiserver (the resourceVersion `test`), never applied over the other writer's change.
import { K8s } from "kubernetes-fluent-client";
import { HTTPRoute } from "../../capabilities/api/kinds";
import { apiFailure } from "../../capabilities/api-failure";
import { modifyWithRetry } from "../../capabilities/modelrollout/targets";
import { setHTTPRouteWeight } from "../../capabilities/modelrollout/traffic/httproute";
import { weightPatch } from "../../capabilities/modelrollout/traffic/weight-patch";
import { operatorKubeconfig } from "../../hack/env/rbac";
import { createTestNamespace, env, TestNamespace } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers } from "../support/rollouts";

let ns: TestNamespace;
let operator: RunningOperator;

beforeAll(async () => {
  ns = createTestNamespace("gitops");
  operator = await startOperator({
    namespaces: [ns.name],
    kubeconfig: operatorKubeconfig(env().info),
    name: ns.name,
  });
});

afterAll(async () => {
  await operator?.stop();
  await ns.cleanup();
});

const { kubectl, apply, getJson, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);

/** What a GitOps tool does with a manifest from Git: server-side apply under its own manager. */
const gitopsApply = (yaml: string, ...flags: string[]) =>
  kubectl(["apply", "--server-side", "--field-manager=gitops", ...flags, "-f", "-"], yaml);

/** The object with its managedFields (kubectl hides them unless asked). */
const withManagers = (resource: string, name: string): Obj =>
  JSON.parse(kubectl(["get", resource, name, "-o", "json", "--show-managed-fields"]));

type Obj = {
  metadata: {
    resourceVersion: string;
    managedFields?: { manager: string; operation: string; fieldsV1: unknown }[];
  };
  spec: Record<string, unknown>;
};

/** JSON Pointers of the leaves where a and b differ (arrays of different length: the array). */
function differences(a: unknown, b: unknown, path = ""): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length)
    return a.flatMap((x, i) => differences(x, b[i], `${path}/${i}`));
  const isObject = (x: unknown): x is Record<string, unknown> =>
    typeof x === "object" && x !== null && !Array.isArray(x);
  if (isObject(a) && isObject(b))
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap(k =>
      differences(a[k], b[k], `${path}/${k}`),
    );
  return [path];
}

const pool = (name: string) => `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: ${name}}
spec:
  extensionRef: {group: "", kind: Service, name: ${name}-epp}
  selector: {app: ${name}}
  targetPortNumber: 8000
`;

// Fields the operator never reads (hostnames, filters, timeouts, a Service ref next to the pools,
// a rule before the one it drives) and the canary ref already in Git at weight 0.
const routeInGit = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: llm-route
  labels: {team: inference}
  annotations: {example.com/owner: platform}
spec:
  parentRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: inference-gateway, sectionName: llm-gw}
  hostnames: [llm.example.com, llm.internal]
  rules:
  - name: health
    matches: [{path: {type: Exact, value: /healthz}}]
    backendRefs: [{kind: Service, name: health, port: 8080, weight: 1}]
  - name: llm
    matches:
    - path: {type: PathPrefix, value: /v1/chat/completions}
      headers: [{name: x-tenant, value: blue}]
    - path: {type: PathPrefix, value: /v1/completions}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: llm}]}
    timeouts: {request: 300s}
    backendRefs:
    - {kind: Service, name: shadow, port: 80, weight: 0}
    - group: inference.networking.x-k8s.io
      kind: InferencePool
      name: gitops-pool-v1
      port: 8000
      weight: 100
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-pool, value: v1}]}}]
    - {group: inference.networking.x-k8s.io, kind: InferencePool, name: gitops-pool-v2, port: 8000, weight: 0}
`;

describe("HTTPRoute applied from Git", () => {
  it("differs from Git only in the pair's weights during the rollout, and by the dropped stable ref after", async () => {
    apply(pool("gitops-pool-v1") + "---" + pool("gitops-pool-v2"));
    gitopsApply(routeInGit);
    const git = getJson<Obj>("httproute", "llm-route");

    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: route-rollout}
spec:
  pools: {httpRoute: llm-route, httpRouteRule: llm, stable: gitops-pool-v1, canary: gitops-pool-v2}
  steps: [{setWeight: 20}, {pause: {}}, {setWeight: 100}]
`);
    await waitForRollout(
      "route-rollout",
      "Paused at 20%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 20,
    );
    const during = getJson<Obj>("httproute", "llm-route");
    expect(differences(git.spec, during.spec)).toEqual([
      "/rules/1/backendRefs/1/weight",
      "/rules/1/backendRefs/2/weight",
    ]);
    const refs = (o: Obj) =>
      (o.spec as { rules: { backendRefs: { name: string; weight: number }[] }[] }).rules[1]
        .backendRefs;
    expect(refs(during).map(r => `${r.name}=${r.weight}`)).toEqual([
      "shadow=0",
      "gitops-pool-v1=80",
      "gitops-pool-v2=20",
    ]);
    // Labels and annotations from Git are untouched too.
    expect(
      differences(git.metadata, during.metadata).filter(
        p => !/^\/(resourceVersion|generation|managedFields)/.test(p),
      ),
    ).toEqual([]);
    // The operator's write is an Update under its client's manager name, owning spec.rules and
    // nothing else: rules is an atomic list in the HTTPRoute CRD, the smallest unit the apiserver
    // tracks, so that is what GitOps tools that compare managers see.
    const fields = withManagers("httproute", "llm-route").metadata.managedFields!;
    expect(fields.map(f => `${f.manager}/${f.operation}`)).toEqual([
      "gitops/Apply",
      "kubernetes-fluent-client/Update",
    ]);
    expect(fields[1].fieldsV1).toEqual({ "f:spec": { "f:rules": {} } });

    kubectl(["annotate", "modelrollout", "route-rollout", "rollouts.inference.dev/action=promote"]);
    await waitForRollout("route-rollout", "Succeeded", r => r.status?.phase === "Succeeded");
    const after = getJson<Obj>("httproute", "llm-route");
    const expected = structuredClone(git.spec) as { rules: { backendRefs: unknown[] }[] };
    const [shadow, , canary] = expected.rules[1].backendRefs as Record<string, unknown>[];
    expected.rules[1].backendRefs = [shadow, { ...canary, weight: 100 }];
    expect(after.spec).toEqual(expected);
  });

  it("re-applying the Git manifest without force conflicts with the operator's manager on spec.rules", () => {
    // What Flux's and Argo CD's server-side apply meet: they pass --force-conflicts and so take the
    // rules (weights included) back, which is why docs/install.md asks them to ignore the weights.
    expect(() => gitopsApply(routeInGit)).toThrow(
      /conflict with "kubernetes-fluent-client" using gateway\.networking\.k8s\.io\/v1: \.spec\.rules/,
    );
  });
});

describe("InferenceModel applied from Git", () => {
  it("differs from Git only in the pair's weights and the canary entry, other entries untouched", async () => {
    gitopsApply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: chat}
spec:
  modelName: chat
  criticality: Standard
  poolRef: {group: inference.networking.x-k8s.io, kind: InferencePool, name: gitops-pool-v1}
  targetModels:
  - {name: legacy-adapter, weight: 50}
  - {name: chat-v1, weight: 100}
  - {name: experiment, weight: 5}
`);
    const git = getJson<Obj>("inferencemodel", "chat");
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: model-rollout}
spec:
  adapters: {inferenceModel: chat, stable: chat-v1, canary: chat-v2}
  steps: [{setWeight: 30}, {pause: {}}, {setWeight: 100}]
`);
    await waitForRollout(
      "model-rollout",
      "Paused at 30%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 30,
    );
    const during = getJson<Obj>("inferencemodel", "chat");
    const expected = structuredClone(git.spec) as { targetModels: unknown[] };
    expected.targetModels = [
      { name: "legacy-adapter", weight: 50 },
      { name: "chat-v1", weight: 70 },
      { name: "chat-v2", weight: 30 },
      { name: "experiment", weight: 5 },
    ];
    expect(during.spec).toEqual(expected);
    // targetModels has no list type in the CRD, so it is atomic: the operator owns that list only.
    const fields = withManagers("inferencemodel", "chat").metadata.managedFields!;
    expect(fields.map(f => [f.manager, f.operation, f.fieldsV1])).toEqual([
      ["gitops", "Apply", expect.anything()],
      ["kubernetes-fluent-client", "Update", { "f:spec": { "f:targetModels": {} } }],
    ]);

    kubectl(["annotate", "modelrollout", "model-rollout", "rollouts.inference.dev/action=promote"]);
    await waitForRollout("model-rollout", "Succeeded", r => r.status?.phase === "Succeeded");
    expected.targetModels = [
      { name: "legacy-adapter", weight: 50 },
      { name: "chat-v2", weight: 100 },
      { name: "experiment", weight: 5 },
    ];
    expect(getJson<Obj>("inferencemodel", "chat").spec).toEqual(expected);
  });
});

describe("InferenceModelRewrite applied from Git", () => {
  it("changes only the targets of the rules that list the pair", async () => {
    gitopsApply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModelRewrite
metadata: {name: chat-rewrite}
spec:
  poolRef: {group: inference.networking.x-k8s.io, kind: InferencePool, name: gitops-pool-v1}
  rules:
  - matches: [{model: {type: Exact, value: other}}]
    targets: [{modelRewrite: other-v1, weight: 100}]
  - matches: [{model: {type: Exact, value: chat}}]
    targets: [{modelRewrite: rw-v1, weight: 100}, {modelRewrite: sidecar, weight: 10}]
`);
    const git = getJson<Obj>("inferencemodelrewrite.inference.networking.x-k8s.io", "chat-rewrite");
    apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: rewrite-rollout}
spec:
  adapters:
    inferenceModelRewrite: {name: chat-rewrite, group: inference.networking.x-k8s.io}
    stable: rw-v1
    canary: rw-v2
  steps: [{setWeight: 40}, {pause: {}}]
`);
    await waitForRollout(
      "rewrite-rollout",
      "Paused at 40%",
      r => r.status?.phase === "Paused" && r.status.canaryWeight === 40,
    );
    const expected = structuredClone(git.spec) as { rules: { targets: unknown[] }[] };
    expected.rules[1].targets = [
      { modelRewrite: "rw-v1", weight: 60 },
      { modelRewrite: "rw-v2", weight: 40 },
      { modelRewrite: "sidecar", weight: 10 },
    ];
    expect(
      getJson<Obj>("inferencemodelrewrite.inference.networking.x-k8s.io", "chat-rewrite").spec,
    ).toEqual(expected);
  });
});

describe("a concurrent edit between read and write", () => {
  const split = { stable: "gitops-pool-v1", canary: "gitops-pool-v2", rule: "llm" };

  it("is a conflict for a weight patch based on the stale read: refused, nothing overwritten", async () => {
    gitopsApply(routeInGit.replace("name: llm-route", "name: raced-route"));
    const read = (await K8s(HTTPRoute).InNamespace(ns.name).Get("raced-route")) as unknown as Obj;
    // Another writer changes the same weights (and more) after our read.
    kubectl([
      "patch",
      "httproute",
      "raced-route",
      "--type=json",
      "-p",
      JSON.stringify([
        { op: "replace", path: "/spec/rules/1/backendRefs/1/weight", value: 60 },
        { op: "replace", path: "/spec/rules/1/backendRefs/2/weight", value: 40 },
      ]),
    ]);
    const next = setHTTPRouteWeight(read as never, split, 10)!;
    let status: number | undefined;
    try {
      await K8s(HTTPRoute, { name: "raced-route", namespace: ns.name }).Patch([
        { op: "test", path: "/metadata/resourceVersion", value: read.metadata.resourceVersion },
        ...weightPatch(read.spec, next.spec),
      ]);
    } catch (err) {
      status = apiFailure(err).status;
    }
    expect(status).toBe(422);
    const live = getJson<Obj>("httproute", "raced-route").spec as {
      rules: { backendRefs: { weight: number }[] }[];
    };
    expect(live.rules[1].backendRefs.map(r => r.weight)).toEqual([0, 60, 40]);
  });

  it("is re-read and re-decided by modifyWithRetry: the other writer's edit stays", async () => {
    let calls = 0;
    const seen: number[] = [];
    const wrote = await modifyWithRetry<Obj>(HTTPRoute, ns.name, "raced-route", route => {
      calls++;
      const refs = (route.spec as { rules: { backendRefs: { weight: number }[] }[] }).rules[1]
        .backendRefs;
      seen.push(refs[2].weight);
      // Another writer adds a hostname and moves the canary weight, after our first read only.
      if (calls === 1)
        kubectl([
          "patch",
          "httproute",
          "raced-route",
          "--type=json",
          "-p",
          JSON.stringify([
            { op: "add", path: "/spec/hostnames/-", value: "late.example.com" },
            { op: "replace", path: "/spec/rules/1/backendRefs/2/weight", value: 45 },
          ]),
        ]);
      return setHTTPRouteWeight(route as never, split, 10) as unknown as Obj;
    });
    expect(wrote).toBe(true);
    expect(calls).toBe(2);
    expect(seen).toEqual([40, 45]); // the second decision saw the other writer's weight
    const live = getJson<Obj>("httproute", "raced-route").spec as {
      hostnames: string[];
      rules: { backendRefs: { weight: number }[] }[];
    };
    expect(live.hostnames).toEqual(["llm.example.com", "llm.internal", "late.example.com"]);
    expect(live.rules[1].backendRefs.map(r => r.weight)).toEqual([0, 90, 10]);
  });
});
