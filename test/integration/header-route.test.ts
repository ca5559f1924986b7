// The setHeaderRoute step on the real control plane, with real llm-d-inference-sim model servers
// behind the local gateway (hack/demo/gateway.ts, which evaluates HTTPRoute header matches with
// Gateway API precedence): testers' requests (the header) reach the canary pool's pod while the
// canary weight is still 0, every other request stays on stable; the header rule is appended
// without touching any other rule, survives an operator restart without being added twice (status
// records it; a rule lost while the operator was down is written again), and is removed after a
// rollback and after success, leaving the route as Git has it.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "../../hack/env/config";
import { deployModelServer, ModelServer, removeModelServer } from "../../hack/env/model-servers";
import { operatorKubeconfig } from "../../hack/env/rbac";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers } from "../support/rollouts";

const MODEL = "mymodel";
const GATEWAY = "inference-gateway";
const ROUTE = "llm-route";
const POOLS = ["pool-v1", "pool-v2"] as const;

let ns: TestNamespace;
let operator: RunningOperator;
let gateway: { url: string; child: ChildProcess; log: string } | undefined;
const servers = new Map<string, ModelServer>();

const { kubectl, getJson, rollout, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);

type Rule = {
  name?: string;
  matches?: unknown[];
  backendRefs?: { name: string; weight?: number }[];
  filters?: unknown[];
  timeouts?: unknown;
};
type RouteSpec = { rules: Rule[] } & Record<string, unknown>;
const routeSpec = () => getJson<{ spec: RouteSpec }>("httproute", ROUTE).spec;
const resourceVersion = () =>
  getJson<{ metadata: { resourceVersion: string } }>("httproute", ROUTE).metadata.resourceVersion;

// The route as Git has it, applied the way Argo CD / Flux do: a rule before and a rule after the
// one the rollout drives (by name), filters and a timeout the operator never reads.
const ROUTE_YAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${ROUTE}}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: ${GATEWAY}}]
  rules:
  - name: health
    matches: [{path: {type: Exact, value: /health}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-v1}]
  - name: completions
    matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: completions}]}
    timeouts: {request: 60s}
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-v1, weight: 100}]
  - name: metrics
    matches: [{path: {type: PathPrefix, value: /metrics}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool-v1}]
`;

const poolYaml = (name: string) => `
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: ${name}}
spec:
  selector: {matchLabels: {app: sim, pool: ${name}}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: ${name}-epp, port: {number: 9002}}
`;

const rolloutYaml = (name: string, steps: string) => `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${name}}
spec:
  pools: {httpRoute: ${ROUTE}, httpRouteRule: completions, stable: pool-v1, canary: pool-v2}
  steps:
${steps}
`;

async function startGateway(): Promise<NonNullable<typeof gateway>> {
  const log = path.join(env().info.logDir, `gateway-${ns.name}.log`);
  const out = fs.openSync(log, "a");
  // Each pool has one model-server pod: the gateway sends a pool's requests straight to it.
  const backends = POOLS.flatMap(p => ["--backend", `${p}=${servers.get(p)!.url}`]);
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(repoRoot, "hack/demo/gateway.ts"),
      ...["--namespace", ns.name, "--gateway", GATEWAY, ...backends],
    ],
    { stdio: ["ignore", out, out], env: { ...process.env, KUBECONFIG: env().info.kubeconfig } },
  );
  fs.closeSync(out);
  let url = "";
  await waitFor(
    "the local gateway to listen",
    () => {
      const m = /gateway listening on (http:\/\/[\d.]+:\d+)/.exec(fs.readFileSync(log, "utf8"));
      if (m) url = m[1];
      return !!m || child.exitCode !== null;
    },
    60_000,
    `see ${log}`,
    200,
  );
  if (!url) throw new Error(`the gateway exited: see ${log}`);
  return { url, child, log };
}

/** The pods that answered `n` completions sent through the gateway with `headers`. */
async function answeredBy(headers: Record<string, string>, n = 8): Promise<string[]> {
  const pods: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${gateway!.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ model: MODEL, prompt: "Say hello", max_tokens: 2 }),
      signal: AbortSignal.timeout(20_000),
    });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`gateway answered ${res.status}: ${body}`);
    pods.push(res.headers.get("x-inference-pod") ?? "?");
  }
  return [...new Set(pods)].sort();
}

/** Waits until the gateway routes requests with `headers` to exactly `pods` (it polls the route). */
async function waitForRouting(what: string, headers: Record<string, string>, pods: string[]) {
  let last: string[] = [];
  await waitFor(
    what,
    async () => JSON.stringify((last = await answeredBy(headers, 4))) === JSON.stringify(pods),
    30_000,
    () => `last answered by ${JSON.stringify(last)}; gateway log: ${gateway?.log}`,
    300,
  );
  // Then every request goes there, not just the last few.
  expect(await answeredBy(headers, 12)).toEqual(pods);
}

const annotate = (name: string, action: string) =>
  kubectl([
    "annotate",
    "modelrollout",
    name,
    `rollouts.inference.dev/action=${action}`,
    "--overwrite",
  ]);

type Status = { headerRoute?: { match: unknown[]; step: number }; canaryWeight?: number };
const statusOf = (name: string) => (rollout(name).status ?? {}) as Status;

beforeAll(async () => {
  const { info } = env();
  ns = createTestNamespace("hroute");
  for (const pool of POOLS) {
    servers.set(
      pool,
      await deployModelServer(info, {
        namespace: ns.name,
        name: `sim-${pool}`,
        labels: { app: "sim", pool },
        port: 8000,
        model: MODEL,
        timeToFirstTokenMs: 5,
        interTokenLatencyMs: 1,
      }),
    );
  }
  kubectl(["apply", "-f", "-"], POOLS.map(poolYaml).join("---\n"));
  kubectl(["apply", "--server-side", "--field-manager=gitops", "-f", "-"], ROUTE_YAML);
  gateway = await startGateway();
  operator = await startOperator({
    namespaces: [ns.name],
    kubeconfig: operatorKubeconfig(info),
    name: ns.name,
  });
}, 180_000);

afterAll(async () => {
  await operator?.stop();
  if (gateway && gateway.child.exitCode === null) {
    gateway.child.kill("SIGTERM");
    await new Promise(resolve => gateway!.child.once("exit", resolve));
  }
  for (const pool of servers.keys()) await removeModelServer(env().info, ns.name, `sim-${pool}`);
  await ns?.cleanup();
});

const STABLE_POD = ["sim-pool-v1"];
const CANARY_POD = ["sim-pool-v2"];

describe("setHeaderRoute", () => {
  it("the apiserver refuses it for a LoRA adapter rollout (CEL)", () => {
    expect(() =>
      kubectl(
        ["apply", "-f", "-"],
        `
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: adapters-header}
spec:
  adapters: {inferenceModel: m, stable: a, canary: b}
  steps:
  - setHeaderRoute: {match: [{headerName: x-canary, headerValue: {exact: "yes"}}]}
`,
      ),
    ).toThrow(/setHeaderRoute steps need spec.pools/);
    expect(() =>
      kubectl(
        ["apply", "-f", "-"],
        rolloutYaml(
          "two-values",
          `  - setHeaderRoute: {match: [{headerName: x-canary, headerValue: {exact: "yes", prefix: "y"}}]}`,
        ),
      ),
    ).toThrow(/headerValue needs exactly one of exact, prefix or regex/);
  });

  it("sends testers to the canary at weight 0, and a rollback removes the rule: the route is as Git has it", async () => {
    const before = routeSpec();
    await waitForRouting("plain requests on stable", {}, STABLE_POD);
    kubectl(
      ["apply", "-f", "-"],
      rolloutYaml(
        "rb",
        `  - setHeaderRoute: {match: [{headerName: x-tester, headerValue: {prefix: qa-}}]}
  - pause: {}
  - setWeight: 20
  - pause: {}`,
      ),
    );
    await waitForRollout("rb", "paused after the header route", r => r.status?.phase === "Paused");
    expect(statusOf("rb").headerRoute).toEqual({
      match: [{ headerName: "x-tester", headerValue: { prefix: "qa-" } }],
      step: 0,
    });
    expect(statusOf("rb").canaryWeight).toBeUndefined();
    const spec = routeSpec();
    // The other rules, the managed one included (no canary ref yet), are exactly as they were.
    expect(spec.rules.slice(0, 3)).toEqual(before.rules);
    expect(spec.rules).toHaveLength(4);
    expect(spec.rules[3]).toMatchObject({
      name: "modelrollout-rb-header",
      matches: [
        {
          path: { type: "PathPrefix", value: "/v1" },
          headers: [{ name: "x-tester", type: "RegularExpression", value: "qa-.*" }],
        },
      ],
      filters: before.rules[1].filters,
      timeouts: before.rules[1].timeouts,
      backendRefs: [{ kind: "InferencePool", name: "pool-v2" }],
    });
    // Read back as written (weight 1 is the API default): re-asserting it writes nothing.
    const version = resourceVersion();
    annotate("rb", "bogus");
    await waitForRollout(
      "rb",
      "the bogus action seen",
      r => (r.status as { lastAction?: { action: string } }).lastAction?.action === "bogus",
    );
    expect(resourceVersion()).toBe(version);

    await waitForRouting("testers on the canary", { "x-tester": "qa-alice" }, CANARY_POD);
    expect(await answeredBy({ "x-tester": "prod-bob" })).toEqual(STABLE_POD);
    expect(await answeredBy({})).toEqual(STABLE_POD);

    annotate("rb", "promote");
    await waitForRollout("rb", "canary at 20 %", r => r.status?.canaryWeight === 20);
    expect(routeSpec().rules[1].backendRefs!.map(r => [r.name, r.weight])).toEqual([
      ["pool-v1", 80],
      ["pool-v2", 20],
    ]);
    expect(routeSpec().rules[3]).toEqual(spec.rules[3]);
    expect(await answeredBy({ "x-tester": "qa-alice" })).toEqual(CANARY_POD);

    annotate("rb", "abort");
    await waitForRollout("rb", "aborted", r => r.status?.phase === "Aborted");
    expect(statusOf("rb").headerRoute).toBeUndefined();
    expect(routeSpec()).toEqual(before);
    await waitForRouting("testers back on stable", { "x-tester": "qa-alice" }, STABLE_POD);
    kubectl(["delete", "modelrollout", "rb"]);
  });

  it("survives an operator restart without a second rule, and success removes it", async () => {
    const before = routeSpec();
    kubectl(
      ["apply", "-f", "-"],
      rolloutYaml(
        "ok",
        `  - setHeaderRoute: {match: [{headerName: x-canary, headerValue: {exact: "yes"}}]}
  - pause: {}
  - setWeight: 50
  - pause: {}`,
      ),
    );
    await waitForRollout("ok", "paused after the header route", r => r.status?.phase === "Paused");
    await waitForRouting("testers on the canary", { "x-canary": "yes" }, CANARY_POD);
    expect(await answeredBy({ "x-canary": "no" })).toEqual(STABLE_POD);
    const withRule = routeSpec();
    expect(withRule.rules.map(r => r.name)).toEqual([
      "health",
      "completions",
      "metrics",
      "modelrollout-ok-header",
    ]);

    // A restart re-asserts the rule from status: no write when it is there...
    const version = resourceVersion();
    await operator.stop("SIGKILL");
    operator = await startOperator({
      namespaces: [ns.name],
      kubeconfig: operatorKubeconfig(env().info),
      name: `${ns.name}-2`,
    });
    // An unknown action makes the restarted operator reconcile and say so in status.
    annotate("ok", "bogus");
    await waitForRollout(
      "ok",
      "the restarted operator reconciled",
      r => (r.status as { lastAction?: { action: string } }).lastAction?.action === "bogus",
      60_000,
    );
    expect(resourceVersion()).toBe(version);
    expect(routeSpec()).toEqual(withRule);

    // ...and the rule written again, once, when it was lost while the operator was down.
    await operator.stop("SIGKILL");
    kubectl([
      "patch",
      "httproute",
      ROUTE,
      "--type=json",
      "-p",
      '[{"op":"remove","path":"/spec/rules/3"}]',
    ]);
    expect(routeSpec()).toEqual(before);
    operator = await startOperator({
      namespaces: [ns.name],
      kubeconfig: operatorKubeconfig(env().info),
      name: `${ns.name}-3`,
    });
    await waitFor(
      "the header rule written again",
      () => routeSpec().rules.length === 4,
      60_000,
      () => operator.log,
    );
    expect(routeSpec()).toEqual(withRule);
    expect(rollout("ok").status).toMatchObject({ phase: "Paused", currentStep: 1 });

    annotate("ok", "promote");
    await waitForRollout("ok", "canary at 50 %", r => r.status?.canaryWeight === 50);
    expect(await answeredBy({ "x-canary": "yes" })).toEqual(CANARY_POD);
    annotate("ok", "promote");
    await waitForRollout("ok", "succeeded", r => r.status?.phase === "Succeeded");
    expect(statusOf("ok").headerRoute).toBeUndefined();
    const after = routeSpec();
    expect(after.rules.map(r => r.name)).toEqual(["health", "completions", "metrics"]);
    // Only the managed rule's refs changed (stable removed, canary at 100); the rest as in Git.
    expect(after.rules[1].backendRefs!.map(r => [r.name, r.weight])).toEqual([["pool-v2", 100]]);
    expect({ ...after, rules: [after.rules[0], after.rules[2]] }).toEqual({
      ...before,
      rules: [before.rules[0], before.rules[2]],
    });
    const { backendRefs: _a, ...managedAfter } = after.rules[1];
    const { backendRefs: _b, ...managedBefore } = before.rules[1];
    expect(managedAfter).toEqual(managedBefore);
    await waitForRouting("everyone on the canary", {}, CANARY_POD);
  });
});
