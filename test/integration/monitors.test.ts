// deploy/monitoring/ on a real kube-apiserver with the Prometheus Operator's own CRDs (v0.85.0,
// test/fixtures/prometheus-operator-v0.85.0): the ServiceMonitor and the PodMonitor are accepted
// with strict field validation, and they select what the other manifests deploy — the operator's
// watcher pods (deploy/operator, over `pepr build`'s labels) and every picker (deploy/picker).
// The CRDs are cluster-wide, so this runs on a private control plane of its own.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";
import { repoRoot } from "../../hack/env/config";
import { PrivateControlPlane, startPrivateControlPlane } from "../support/private-control-plane";

const CRDS = path.join(repoRoot, "test/fixtures/prometheus-operator-v0.85.0");
const MONITORING = path.join(repoRoot, "deploy/monitoring");

interface Obj {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

let cp: PrivateControlPlane;

beforeAll(async () => {
  cp = await startPrivateControlPlane("monitors");
  for (const crd of ["servicemonitors", "podmonitors"]) {
    cp.kubectl([
      "apply",
      "--server-side",
      "-f",
      path.join(CRDS, `monitoring.coreos.com_${crd}.yaml`),
    ]);
    cp.kubectl([
      "wait",
      "--for=condition=Established",
      `crd/${crd}.monitoring.coreos.com`,
      "--timeout=60s",
    ]);
  }
}, 180_000);

afterAll(async () => {
  await cp?.down();
});

function get(kind: string, name: string): Obj {
  return JSON.parse(cp.kubectl(["-n", "pepr-system", "get", kind, name, "-o", "json"])) as Obj;
}

/** The objects of a YAML stream. */
function objects(text: string): Obj[] {
  return parseAllDocuments(text).map(d => d.toJS() as Obj);
}

function matches(selector: Record<string, string>, labels: Record<string, string> = {}): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

describe("deploy/monitoring on the Prometheus Operator's CRDs (private kube-apiserver)", () => {
  it("is accepted with strict field validation, and a misspelt field is refused", () => {
    const out = cp.kubectl(["apply", "--server-side", "--validate=strict", "-k", MONITORING]);
    expect(out).toMatch(
      /servicemonitor.monitoring.coreos.com\/modelrollout-operator serverside-applied/,
    );
    expect(out).toMatch(/podmonitor.monitoring.coreos.com\/modelrollout-picker serverside-applied/);
    expect(out).toMatch(/configmap\/modelrollout-grafana-dashboard serverside-applied/);

    // The same check refuses what the Prometheus Operator would not understand.
    const typo = `
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: typo, namespace: pepr-system}
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: health, honorLabel: true}]
`;
    expect(() =>
      cp.kubectl(["apply", "--server-side", "--validate=strict", "-f", "-"], typo),
    ).toThrow(/spec\.endpoints\[0\]\.honorLabel: field not declared in schema/);
  });

  it("the ServiceMonitor scrapes the operator's /metrics on its health port, keeping the rollout's labels", () => {
    const monitor = get("servicemonitor", "modelrollout-operator");
    const service = get("service", "modelrollout-operator-metrics");
    const endpoints = monitor.spec.endpoints as {
      port: string;
      path: string;
      honorLabels: boolean;
    }[];
    expect(endpoints).toEqual([
      expect.objectContaining({ port: "health", path: "/metrics", honorLabels: true }),
    ]);
    expect(
      matches(
        (monitor.spec.selector as { matchLabels: Record<string, string> }).matchLabels,
        service.metadata.labels,
      ),
    ).toBe(true);
    const ports = service.spec.ports as { name: string; targetPort: number }[];
    expect(ports).toEqual([expect.objectContaining({ name: "health", targetPort: 8081 })]);

    // The Service selects the watcher pods (Pepr names their label app: pepr-<module>-watcher;
    // deploy/operator's anti-affinity uses the same) on the port the health server listens on.
    const [patch] = objects(
      fs.readFileSync(path.join(repoRoot, "deploy/operator/watcher-ha.yaml"), "utf8"),
    ) as unknown as WatcherPatch[];
    const pod = patch.spec.template.spec;
    const watcherLabels =
      pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]
        .podAffinityTerm.labelSelector.matchLabels;
    expect(service.spec.selector).toEqual(watcherLabels);
    const container = pod.containers.find(c => c.name === "watcher")!;
    expect(container.ports).toContainEqual(
      expect.objectContaining({ name: "health", containerPort: 8081 }),
    );
    expect(container.env).toContainEqual({ name: "MODELROLLOUT_HEALTH_PORT", value: "8081" });
  });

  it("the PodMonitor selects every picker pod of deploy/picker on its metrics port, in any namespace", () => {
    const monitor = get("podmonitor", "modelrollout-picker");
    expect(monitor.spec.namespaceSelector).toEqual({ any: true });
    const endpoints = monitor.spec.podMetricsEndpoints as { port: string; path: string }[];
    expect(endpoints).toEqual([expect.objectContaining({ port: "metrics", path: "/metrics" })]);
    const selector = (monitor.spec.selector as { matchLabels: Record<string, string> }).matchLabels;
    for (const overlay of ["mymodel-pool-v1", "mymodel-pool-v2"]) {
      const deployment = objects(
        cp.kubectl(["kustomize", path.join(repoRoot, "deploy/picker", overlay)]),
      ).find(o => o.kind === "Deployment") as unknown as PickerDeployment;
      const template = deployment.spec.template;
      expect([overlay, matches(selector, template.metadata.labels)]).toEqual([overlay, true]);
      const ports = template.spec.containers.flatMap(c => c.ports ?? []);
      expect(ports).toContainEqual(
        expect.objectContaining({ name: "metrics", containerPort: 9090 }),
      );
    }
  });
});

interface Container {
  name: string;
  env?: { name: string; value?: string }[];
  ports?: { name: string; containerPort: number }[];
}

interface WatcherPatch {
  spec: {
    template: {
      spec: {
        affinity: {
          podAntiAffinity: {
            preferredDuringSchedulingIgnoredDuringExecution: {
              podAffinityTerm: { labelSelector: { matchLabels: Record<string, string> } };
            }[];
          };
        };
        containers: Container[];
      };
    };
  };
}

interface PickerDeployment {
  spec: {
    template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[] } };
  };
}
