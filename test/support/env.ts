// Helpers for integration tests: the running environment, kubectl, per-test namespaces, waits.
import { randomBytes } from "node:crypto";
import { ClusterInfo, connectCluster, kubectlFor, namespaceYaml } from "../../hack/env/cluster";
import { waitFor } from "../../hack/env/procs";

export { waitFor };

export interface TestEnv {
  info: ClusterInfo;
  /** Runs the environment's kubectl with its kubeconfig; throws with kubectl's message on failure. */
  kubectl: (args: string[], input?: string) => string;
}

export function env(): TestEnv {
  const info = connectCluster();
  process.env.KUBECONFIG = info.kubeconfig;
  return { info, kubectl: kubectlFor(info) };
}

/** Kinds a test may create; deleted explicitly because no namespace controller runs here. */
const namespacedKinds = [
  "modelrollouts.rollouts.inference.dev",
  "httproutes.gateway.networking.k8s.io",
  "inferencepools.inference.networking.x-k8s.io",
  "inferencepools.inference.networking.k8s.io",
  "inferencemodels.inference.networking.x-k8s.io",
  "inferenceobjectives.inference.networking.x-k8s.io",
  "inferencemodelrewrites.inference.networking.x-k8s.io",
  "inferenceobjectives.llm-d.ai",
  "inferencemodelrewrites.llm-d.ai",
];

export interface TestNamespace {
  name: string;
  cleanup(): Promise<void>;
}

/** A fresh namespace for one test file; `cleanup` deletes what the test left in it. */
export function createTestNamespace(prefix: string): TestNamespace {
  const e = env();
  const name = `${prefix}-${randomBytes(3).toString("hex")}`;
  e.kubectl(["apply", "-f", "-"], namespaceYaml(name));
  return {
    name,
    async cleanup() {
      const existing = e.kubectl(["api-resources", "-o", "name"]).split("\n");
      const kinds = namespacedKinds.filter(k => existing.includes(k));
      e.kubectl([
        "-n",
        name,
        "delete",
        [...kinds, "pods"].join(","),
        "--all",
        "--ignore-not-found",
        "--force",
        "--grace-period=0",
        "--wait=false",
      ]);
      // The namespace itself stays Terminating: without a controller-manager nothing finalizes it.
      e.kubectl(["delete", "namespace", name, "--wait=false", "--ignore-not-found"]);
    },
  };
}

/** Instant PromQL query against the environment's Prometheus. */
export async function promQuery(
  prometheusUrl: string,
  query: string,
): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await res.json()) as {
    status: string;
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  if (body.status !== "success")
    throw new Error(`Prometheus query failed: ${JSON.stringify(body)}`);
  return body.data.result;
}
