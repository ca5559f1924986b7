// The Helm chart (deploy/chart/modelrollout) with the real helm v3 (hack/build-binaries.sh):
// `helm lint`, `helm template` (the objects, both namespace modes, the pickers and monitors), then
// `helm install` onto the shared local apiserver, and the operator process run with exactly the
// chart's ServiceAccount (a token from `kubectl create token`), RBAC and environment completes a
// rollout. The environment has no kubelet, so the chart's pods never run: the installed objects are
// asserted through the API, and the operator runs as the other tests run it (test/support/operator).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";
import { ensureBinaries } from "../../hack/env/cluster";
import { repoRoot } from "../../hack/env/config";
import { declaredRules, PolicyRule } from "../../hack/env/rbac";
import { createTestNamespace, env, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";

const chart = path.join(repoRoot, "deploy", "chart", "modelrollout");
const appVersion = /^appVersion: "(.+)"$/m.exec(
  fs.readFileSync(path.join(chart, "Chart.yaml"), "utf8"),
)![1];
// Any 64 hex digits: the module Secret is only read by a running pod, which never runs here.
const moduleHash = "ab".repeat(32);

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [key: string]: any;
}

let helmBin: string;
let scratch: string;

beforeAll(() => {
  helmBin = ensureBinaries(() => undefined).helm;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), "helm-test-"));
});
afterAll(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/** Runs helm with its own cache/config folders and the environment's admin kubeconfig. */
function helm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const res = spawnSync(helmBin, args, {
    encoding: "utf8",
    timeout: 120_000,
    env: {
      PATH: process.env.PATH,
      HOME: scratch,
      HELM_CACHE_HOME: path.join(scratch, "cache"),
      HELM_CONFIG_HOME: path.join(scratch, "config"),
      HELM_DATA_HOME: path.join(scratch, "data"),
      KUBECONFIG: env().info.kubeconfig,
    },
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

function helmOk(args: string[]): string {
  const res = helm(args);
  if (res.status !== 0)
    throw new Error(`helm ${args.join(" ")} failed (${res.status}): ${res.stderr}`);
  return res.stdout;
}

function render(...sets: string[]): K8sObject[] {
  const out = helmOk([
    "template",
    "mr",
    chart,
    "--namespace",
    "ops",
    "--kube-version",
    "1.36.3",
    "--set",
    `module.hash=${moduleHash}`,
    ...sets.flatMap(s => ["--set", s]),
  ]);
  return parseAllDocuments(out)
    .map(d => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

function find(objects: K8sObject[], kind: string, name: string, namespace?: string): K8sObject {
  const found = objects.find(
    o =>
      o.kind === kind &&
      o.metadata.name === name &&
      (namespace === undefined || o.metadata.namespace === namespace),
  );
  if (!found)
    throw new Error(
      `no ${kind} ${namespace ?? "*"}/${name} in: ${objects.map(o => `${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`).join(", ")}`,
    );
  return found;
}

/** Rules as "group/resource verb" (with "[names]" when limited by resourceNames), sorted. */
function grants(rules: (PolicyRule & { resourceNames?: string[] })[]): string[] {
  const out = new Set<string>();
  for (const r of rules)
    for (const g of r.apiGroups)
      for (const res of r.resources)
        for (const v of r.verbs)
          out.add(`${g}/${res} ${v}${r.resourceNames ? ` [${r.resourceNames.join(",")}]` : ""}`);
  return [...out].sort();
}

function envOf(deployment: K8sObject): Record<string, string> {
  const container = deployment.spec.template.spec.containers[0];
  return Object.fromEntries(
    (container.env as { name: string; value?: string; valueFrom?: unknown }[]).map(e => [
      e.name,
      e.value ?? JSON.stringify(e.valueFrom),
    ]),
  );
}

// Pepr's own rights, beside the module's declared ones: its store and its store CRD.
const peprStoreGrants = grants([
  {
    apiGroups: ["pepr.dev"],
    resources: ["peprstores"],
    verbs: ["create", "get", "patch", "watch", "list"],
  },
]);
const peprCrdGrants = [
  "apiextensions.k8s.io/customresourcedefinitions create [peprstores.pepr.dev]",
  "apiextensions.k8s.io/customresourcedefinitions patch [peprstores.pepr.dev]",
];

describe("helm lint and helm template", () => {
  it("lints clean, and refuses a missing module hash with the fix", () => {
    const lint = helm(["lint", chart, "--strict", "--set", `module.hash=${moduleHash}`]);
    expect(lint.stderr + lint.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(lint.status).toBe(0);
    const noHash = helm(["template", "mr", chart, "--kube-version", "1.36.3"]);
    expect(noHash.status).not.toBe(0);
    expect(noHash.stderr).toMatch(/module\.hash is "": set it to the SHA-256.*sha256sum dist\//);
    const oneReplicaOnly = helm([
      "template",
      "mr",
      chart,
      "--kube-version",
      "1.36.3",
      "--set",
      `module.hash=${moduleHash}`,
      "--set",
      "leaderElection=false",
    ]);
    expect(oneReplicaOnly.stderr).toMatch(/replicas is 2 with leaderElection: false.*replicas: 1/);
  });

  it("all namespaces (default): a ClusterRole with the module's rules, the Lease and store Roles, two probed replicas", () => {
    const objects = render();
    expect(
      objects.map(o => `${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`).sort(),
    ).toEqual(
      [
        "ClusterRole /mr-modelrollout",
        "ClusterRoleBinding /mr-modelrollout",
        "Deployment ops/mr-modelrollout",
        "Role ops/mr-modelrollout-lease",
        "Role pepr-system/mr-modelrollout-store",
        "RoleBinding ops/mr-modelrollout-lease",
        "RoleBinding pepr-system/mr-modelrollout-store",
        "Secret ops/mr-modelrollout-tls",
        "ServiceAccount ops/mr-modelrollout",
      ].sort(),
    );
    const clusterRole = find(objects, "ClusterRole", "mr-modelrollout");
    const lease = find(objects, "Role", "mr-modelrollout-lease");
    // Together exactly what package.json declares (pepr.rbac), plus Pepr's store CRD.
    expect(grants([...clusterRole.rules, ...lease.rules])).toEqual(
      [...grants(declaredRules()), ...peprCrdGrants].sort(),
    );
    expect(grants(lease.rules)).toEqual([
      "coordination.k8s.io/leases create",
      "coordination.k8s.io/leases get",
      "coordination.k8s.io/leases patch",
    ]);
    expect(grants(find(objects, "Role", "mr-modelrollout-store", "pepr-system").rules)).toEqual(
      peprStoreGrants,
    );
    for (const binding of objects.filter(o => o.kind.endsWith("Binding")))
      expect(binding.subjects).toEqual([
        { kind: "ServiceAccount", name: "mr-modelrollout", namespace: "ops" },
      ]);

    const deployment = find(objects, "Deployment", "mr-modelrollout");
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.strategy).toEqual({
      type: "RollingUpdate",
      rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
    });
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe("mr-modelrollout");
    const container = pod.containers[0];
    expect(container.image).toBe(`ghcr.io/modelrollout/operator:${appVersion}`);
    expect(container.args).toEqual(["/app/node_modules/pepr/dist/controller.js", moduleHash]);
    expect(container.readinessProbe.httpGet).toEqual({
      path: "/readyz",
      port: "health",
      scheme: "HTTP",
    });
    expect(container.livenessProbe.httpGet).toEqual({
      path: "/livez",
      port: "health",
      scheme: "HTTP",
    });
    expect(container.ports).toContainEqual({ name: "health", containerPort: 8081 });
    const vars = envOf(deployment);
    expect(vars).toMatchObject({
      PEPR_WATCH_MODE: "true",
      PEPR_RESYNC_FAILURE_MAX: "2147483647",
      POD_NAME: JSON.stringify({ fieldRef: { fieldPath: "metadata.name" } }),
      MODELROLLOUT_HEALTH_PORT: "8081",
      MODELROLLOUT_LEASE_NAMESPACE: "ops",
    });
    for (const unset of [
      "MODELROLLOUT_NAMESPACES",
      "MODELROLLOUT_LEADER_ELECTION",
      "MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS",
      "MODELROLLOUT_PROMETHEUS_DENIED",
      "MODELROLLOUT_MAX_CONCURRENT_RECONCILES",
    ])
      expect(vars).not.toHaveProperty(unset);
    expect(pod.volumes).toEqual([
      { name: "tls-certs", secret: { secretName: "mr-modelrollout-tls" } },
      { name: "module", secret: { secretName: "mr-modelrollout-module" } },
    ]);
  });

  it("watchNamespaces: MODELROLLOUT_NAMESPACES, write rights as a Role per namespace, only the watch cluster-wide", () => {
    const objects = render(
      "watchNamespaces={team-a,team-b}",
      "image.tag=1.2.3",
      "prometheus.allowedHosts={prometheus.monitoring,10.0.0.0/8}",
      "prometheus.denied={10.9.0.0/16}",
      "maxConcurrentReconciles=8",
      "replicas=1",
      "leaderElection=false",
    );
    const deployment = find(objects, "Deployment", "mr-modelrollout");
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.template.spec.containers[0].image).toBe(
      "ghcr.io/modelrollout/operator:1.2.3",
    );
    expect(envOf(deployment)).toMatchObject({
      MODELROLLOUT_NAMESPACES: "team-a,team-b",
      MODELROLLOUT_LEADER_ELECTION: "false",
      MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS: "prometheus.monitoring,10.0.0.0/8",
      MODELROLLOUT_PROMETHEUS_DENIED: "10.9.0.0/16",
      MODELROLLOUT_MAX_CONCURRENT_RECONCILES: "8",
    });
    const clusterRole = find(objects, "ClusterRole", "mr-modelrollout");
    expect(grants(clusterRole.rules)).toEqual(
      [
        "/namespaces get",
        "rollouts.inference.dev/analysistemplates get",
        "rollouts.inference.dev/analysistemplates list",
        "rollouts.inference.dev/analysistemplates watch",
        "rollouts.inference.dev/clusteranalysistemplates get",
        "rollouts.inference.dev/clusteranalysistemplates list",
        "rollouts.inference.dev/clusteranalysistemplates watch",
        "rollouts.inference.dev/modelrollouts get",
        "rollouts.inference.dev/modelrollouts list",
        "rollouts.inference.dev/modelrollouts watch",
        ...peprCrdGrants,
      ].sort(),
    );
    const roles = ["team-a", "team-b"].map(ns => find(objects, "Role", "mr-modelrollout", ns));
    expect(grants(roles[0].rules)).toEqual(grants(roles[1].rules));
    expect(grants(roles[0].rules)).toContain("gateway.networking.k8s.io/httproutes patch");
    expect(grants(roles[0].rules)).not.toContain("/namespaces get");
    for (const ns of ["team-a", "team-b"])
      expect(find(objects, "RoleBinding", "mr-modelrollout", ns).roleRef).toEqual({
        apiGroup: "rbac.authorization.k8s.io",
        kind: "Role",
        name: "mr-modelrollout",
      });
    const lease = find(objects, "Role", "mr-modelrollout-lease", "ops");
    expect(grants([...clusterRole.rules, ...roles[0].rules, ...lease.rules])).toEqual(
      [...grants(declaredRules()), ...peprCrdGrants].sort(),
    );
  });

  it("a picker per pool (Service <name>-ext-proc) and, when enabled, ServiceMonitors and PodMonitors", () => {
    const objects = render(
      "pickers[0].name=mymodel-v1",
      "pickers[0].pool=mymodel-pool-v1",
      "pickers[1].name=mymodel-v2",
      "pickers[1].pool=mymodel-pool-v2",
      "pickers[1].namespace=serving",
      "pickers[1].args={--session-header,x-session-id}",
      "monitoring.serviceMonitor.enabled=true",
      "monitoring.podMonitor.enabled=true",
    );
    const v1 = find(objects, "Deployment", "mymodel-v1-picker", "ops");
    const v2 = find(objects, "Deployment", "mymodel-v2-picker", "serving");
    expect(v1.spec.template.spec.containers[0].image).toBe(
      `ghcr.io/modelrollout/picker:${appVersion}`,
    );
    expect(v1.spec.template.spec.containers[0].args).toEqual(["--pool", "mymodel-pool-v1"]);
    expect(v2.spec.template.spec.containers[0].args).toEqual([
      "--pool",
      "mymodel-pool-v2",
      "--session-header",
      "x-session-id",
    ]);
    expect(v2.spec.template.spec.serviceAccountName).toBe("mymodel-v2-picker");
    const service = find(objects, "Service", "mymodel-v2-ext-proc", "serving");
    expect(service.spec.selector).toEqual(v2.spec.selector.matchLabels);
    expect(service.spec.ports.map((p: { port: number }) => p.port)).toEqual([
      9002, 9003, 9090, 8080,
    ]);
    expect(grants(find(objects, "Role", "mymodel-v2-picker", "serving").rules)).not.toEqual(
      expect.arrayContaining([expect.stringMatching(/ (create|patch|delete|update)$/)]),
    );

    const operatorMonitor = find(objects, "ServiceMonitor", "mr-modelrollout");
    expect(operatorMonitor.apiVersion).toBe("monitoring.coreos.com/v1");
    const metricsService = find(objects, "Service", "mr-modelrollout-metrics");
    expect(metricsService.spec.ports).toEqual([
      { name: "metrics", port: 8081, targetPort: "health" },
    ]);
    expect(operatorMonitor.spec.selector.matchLabels).toEqual(metricsService.metadata.labels);
    expect(operatorMonitor.spec.endpoints[0]).toMatchObject({ port: "metrics", path: "/metrics" });
    expect(
      find(objects, "ServiceMonitor", "mymodel-v2-picker", "serving").spec.selector.matchLabels,
    ).toEqual(service.metadata.labels);
    expect(
      find(objects, "PodMonitor", "mr-modelrollout").spec.podMetricsEndpoints[0],
    ).toMatchObject({
      port: "health",
      path: "/metrics",
    });
    expect(
      find(objects, "PodMonitor", "mymodel-v1-picker", "ops").spec.podMetricsEndpoints[0],
    ).toMatchObject({
      port: "metrics",
      path: "/metrics",
    });
    // Off by default.
    expect(render().filter(o => o.apiVersion === "monitoring.coreos.com/v1")).toEqual([]);
  });

  it("ships the repository's CRDs unchanged (crds/ of the chart)", () => {
    const withCrds = helmOk([
      "template",
      "mr",
      chart,
      "--kube-version",
      "1.36.3",
      "--include-crds",
      "--set",
      `module.hash=${moduleHash}`,
    ]);
    const crds = parseAllDocuments(withCrds)
      .map(d => d.toJS() as K8sObject | null)
      .filter(o => o?.kind === "CustomResourceDefinition");
    const fromRepo = [
      "analysistemplate.yaml",
      "clusteranalysistemplate.yaml",
      "modelrollout.yaml",
      "pepr-store.yaml",
    ].map(f =>
      parseAllDocuments(fs.readFileSync(path.join(repoRoot, "crds", f), "utf8"))[0].toJS(),
    );
    expect(crds).toEqual(fromRepo);
  });
});

describe("helm install onto the local apiserver, and the operator with the chart's identity", () => {
  let ns: TestNamespace;
  let operator: RunningOperator | undefined;
  let release: string;
  const kubectl = (args: string[], input?: string) => env().kubectl(args, input);
  const crdUid = (name: string) => kubectl(["get", "crd", name, "-o", "jsonpath={.metadata.uid}"]);
  let crdUids: string[];

  beforeAll(() => {
    ns = createTestNamespace("helm");
    release = ns.name;
    crdUids = ["modelrollouts.rollouts.inference.dev", "peprstores.pepr.dev"].map(crdUid);
  });
  afterAll(async () => {
    await operator?.stop();
    helm(["uninstall", release, "--namespace", ns.name, "--ignore-not-found"]);
    await ns?.cleanup();
  });

  it("installs the chart's objects (the shared CRDs exist already: helm leaves them)", () => {
    const out = helm([
      "install",
      release,
      chart,
      "--namespace",
      ns.name,
      "--set",
      `module.hash=${moduleHash}`,
      "--set",
      `watchNamespaces={${ns.name}}`,
      "--set",
      "pickers[0].name=mymodel-v1",
      "--set",
      "pickers[0].pool=mymodel-pool-v1",
    ]);
    expect(out.stderr).not.toMatch(/Error/);
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/STATUS: deployed/);
    const full = `${release}-modelrollout`;
    const deployment = JSON.parse(
      kubectl(["-n", ns.name, "get", "deployment", full, "-o", "json"]),
    ) as K8sObject;
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.metadata.labels!["app.kubernetes.io/managed-by"]).toBe("Helm");
    expect(envOf(deployment)).toMatchObject({
      MODELROLLOUT_NAMESPACES: ns.name,
      MODELROLLOUT_LEASE_NAMESPACE: ns.name,
    });
    const clusterRole = JSON.parse(kubectl(["get", "clusterrole", full, "-o", "json"]));
    expect(grants(clusterRole.rules)).toContain("rollouts.inference.dev/modelrollouts watch");
    for (const [kind, name, where] of [
      ["serviceaccount", full, ns.name],
      ["role", full, ns.name],
      ["rolebinding", full, ns.name],
      ["role", `${full}-lease`, ns.name],
      ["role", `${full}-store`, "pepr-system"],
      ["rolebinding", `${full}-store`, "pepr-system"],
      ["secret", `${full}-tls`, ns.name],
      ["deployment", "mymodel-v1-picker", ns.name],
      ["service", "mymodel-v1-ext-proc", ns.name],
    ])
      expect(kubectl(["-n", where, "get", kind, name, "-o", "name"]).trim()).toMatch(
        new RegExp(`/${name}$`),
      );
    // The CRDs were there: Helm's crds/ step skipped them rather than replacing them.
    expect(["modelrollouts.rollouts.inference.dev", "peprstores.pepr.dev"].map(crdUid)).toEqual(
      crdUids,
    );
  });

  it("the operator as the chart's ServiceAccount, with the chart's environment, completes a rollout", async () => {
    const full = `${release}-modelrollout`;
    const token = kubectl(["-n", ns.name, "create", "token", full, "--duration", "1h"]).trim();
    const { info } = env();
    const kubeconfig = path.join(scratch, "kubeconfig-chart-sa");
    fs.writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: ${info.apiserverUrl}
      certificate-authority-data: ${fs.readFileSync(info.pki.caCert).toString("base64")}
users:
  - name: chart-sa
    user:
      token: ${token}
contexts:
  - name: local
    context: {cluster: local, user: chart-sa, namespace: ${ns.name}}
current-context: local
`,
      { mode: 0o600 },
    );
    const whoami = JSON.parse(
      env().kubectl(["--kubeconfig", kubeconfig, "auth", "whoami", "-o", "json"]),
    );
    expect(whoami.status.userInfo.username).toBe(`system:serviceaccount:${ns.name}:${full}`);

    // The installed Deployment's environment, as a pod would get it (POD_NAME from the Downward API).
    const deployment = JSON.parse(
      kubectl(["-n", ns.name, "get", "deployment", full, "-o", "json"]),
    ) as K8sObject;
    const chartEnv: NodeJS.ProcessEnv = {};
    for (const e of deployment.spec.template.spec.containers[0].env as {
      name: string;
      value?: string;
    }[])
      chartEnv[e.name] = e.value ?? `${full}-pod-0`;
    // Several operators share this machine: the health endpoints on any free port.
    chartEnv.MODELROLLOUT_HEALTH_PORT = "0";
    operator = await startOperator({
      namespaces: [ns.name],
      kubeconfig,
      name: `${ns.name}-chart-sa`,
      // No MODELROLLOUT_IDENTITY (npm run operator's default): the identity is POD_NAME.
      env: { ...chartEnv, MODELROLLOUT_IDENTITY: "" },
    });

    kubectl(
      ["-n", ns.name, "apply", "-f", "-"],
      `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: charted}
spec:
  modelName: charted
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: charted-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: charted}
spec:
  adapters: {inferenceModel: charted, stable: charted-v1, canary: charted-v2}
  steps: [{setWeight: 50}, {setWeight: 100}]
`,
    );
    const status = () =>
      JSON.parse(kubectl(["-n", ns.name, "get", "modelrollout", "charted", "-o", "json"])).status ??
      {};
    await waitFor(
      "ModelRollout charted Succeeded",
      () => status().phase === "Succeeded",
      60_000,
      () => `status: ${JSON.stringify(status())}; operator log: ${operator?.log}`,
    );
    const targets = JSON.parse(
      kubectl(["-n", ns.name, "get", "inferencemodel", "charted", "-o", "json"]),
    ).spec.targetModels;
    expect(targets).toEqual([{ name: "charted-v2", weight: 100 }]);

    // A new pool: the canary InferencePool created from the template, the HTTPRoute's weights.
    kubectl(
      ["-n", ns.name, "apply", "-f", "-"],
      `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: charted-pool-v1}
spec:
  extensionRef: {group: "", kind: Service, name: charted-v1-ext-proc}
  selector: {app: charted, release: v1}
  targetPortNumber: 8000
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: charted-route}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - backendRefs:
    - {group: inference.networking.x-k8s.io, kind: InferencePool, name: charted-pool-v1, port: 8000, weight: 1}
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: charted-pools}
spec:
  pools:
    httpRoute: charted-route
    stable: charted-pool-v1
    canary: charted-pool-v2
    canaryTemplate:
      extensionRef: {group: "", kind: Service, name: charted-v2-ext-proc}
      selector: {app: charted, release: v2}
      targetPortNumber: 8000
  steps: [{setWeight: 50}, {setWeight: 100}]
`,
    );
    const poolStatus = () =>
      JSON.parse(kubectl(["-n", ns.name, "get", "modelrollout", "charted-pools", "-o", "json"]))
        .status ?? {};
    await waitFor(
      "ModelRollout charted-pools Succeeded",
      () => poolStatus().phase === "Succeeded",
      60_000,
      () => `status: ${JSON.stringify(poolStatus())}; operator log: ${operator?.log}`,
    );
    expect(
      JSON.parse(kubectl(["-n", ns.name, "get", "httproute", "charted-route", "-o", "json"])).spec
        .rules[0].backendRefs,
    ).toEqual([
      {
        group: "inference.networking.x-k8s.io",
        kind: "InferencePool",
        name: "charted-pool-v2",
        port: 8000,
        weight: 100,
      },
    ]);
    expect(
      JSON.parse(
        kubectl([
          "-n",
          ns.name,
          "get",
          "inferencepool.inference.networking.x-k8s.io",
          "charted-pool-v2",
          "-o",
          "json",
        ]),
      ).spec.selector,
    ).toEqual({ app: "charted", release: "v2" });

    // It held the Lease in the release namespace, as the chart's replica would, under POD_NAME.
    const lease = JSON.parse(kubectl(["-n", ns.name, "get", "lease", "-o", "json"])).items.map(
      (l: K8sObject) => l.spec.holderIdentity,
    );
    expect(lease).toEqual([`${full}-pod-0`]);
    const log = fs.readFileSync(operator.log, "utf8");
    expect(log).not.toMatch(/forbidden/i);
  });

  it("upgrades in place: new values reach the Deployment, the TLS Secret is kept", async () => {
    await operator?.stop();
    operator = undefined;
    const full = `${release}-modelrollout`;
    const tls = () =>
      JSON.parse(kubectl(["-n", ns.name, "get", "secret", `${full}-tls`, "-o", "json"])).data;
    const before = tls();
    const out = helm([
      "upgrade",
      release,
      chart,
      "--namespace",
      ns.name,
      "--reuse-values",
      "--set",
      "prometheus.allowedHosts={127.0.0.1}",
    ]);
    expect(out.stderr).not.toMatch(/Error/);
    expect(out.stdout).toMatch(/REVISION: 2/);
    const deployment = JSON.parse(
      kubectl(["-n", ns.name, "get", "deployment", full, "-o", "json"]),
    ) as K8sObject;
    expect(envOf(deployment)).toMatchObject({
      MODELROLLOUT_NAMESPACES: ns.name,
      MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS: "127.0.0.1",
    });
    expect(tls()).toEqual(before);
  });

  it("uninstalls everything it installed and leaves the shared CRDs", async () => {
    const out = helm(["uninstall", release, "--namespace", ns.name, "--wait=false"]);
    expect(out.status).toBe(0);
    const full = `${release}-modelrollout`;
    expect(kubectl(["get", "clusterrole", full, "--ignore-not-found", "-o", "name"]).trim()).toBe(
      "",
    );
    expect(
      kubectl([
        "-n",
        "pepr-system",
        "get",
        "role",
        `${full}-store`,
        "--ignore-not-found",
        "-o",
        "name",
      ]).trim(),
    ).toBe("");
    expect(
      kubectl([
        "-n",
        ns.name,
        "get",
        "deployment,service,role,serviceaccount,secret",
        "-l",
        `app.kubernetes.io/instance=${release}`,
        "-o",
        "name",
      ]).trim(),
    ).toBe("");
    expect(["modelrollouts.rollouts.inference.dev", "peprstores.pepr.dev"].map(crdUid)).toEqual(
      crdUids,
    );
  });
});
