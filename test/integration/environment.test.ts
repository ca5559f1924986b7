// The local world is real: the apiserver serves the upstream CRDs and enforces their validation,
// Prometheus scrapes the simulated model servers, and the generated kubeconfig works with kubectl
// and with the fluent client.
import { GenericKind, K8s } from "kubernetes-fluent-client";
import { deployModelServer, removeModelServer } from "../../hack/env/model-servers";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";

class InferencePoolV1alpha2 extends GenericKind {}

const poolKind = {
  group: "inference.networking.x-k8s.io",
  version: "v1alpha2",
  kind: "InferencePool",
  plural: "inferencepools",
};

let ns: TestNamespace;
beforeAll(() => {
  ns = createTestNamespace("env");
});
afterAll(async () => {
  await ns.cleanup();
});

function kubectlError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("expected kubectl to fail");
}

describe("local control plane", () => {
  it("serves the Gateway API and Inference Extension CRDs", () => {
    const resources = env().kubectl(["api-resources", "-o", "name"]).split("\n");
    for (const r of [
      "httproutes.gateway.networking.k8s.io",
      "gateways.gateway.networking.k8s.io",
      "gatewayclasses.gateway.networking.k8s.io",
      "inferencepools.inference.networking.x-k8s.io",
      "inferencepools.inference.networking.k8s.io",
      "inferencemodels.inference.networking.x-k8s.io",
      "inferenceobjectives.inference.networking.x-k8s.io",
      "inferencemodelrewrites.inference.networking.x-k8s.io",
      "inferenceobjectives.llm-d.ai",
      "inferencemodelrewrites.llm-d.ai",
      "peprstores.pepr.dev",
    ]) {
      expect(resources).toContain(r);
    }
    expect(env().kubectl(["get", "namespace", "pepr-system", "-o", "name"]).trim()).toBe(
      "namespace/pepr-system",
    );
  });

  it("rejects an HTTPRoute with a negative backendRef weight with the apiserver's own message", () => {
    const route = {
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "HTTPRoute",
      metadata: { name: "bad-weight", namespace: ns.name },
      spec: {
        rules: [
          {
            backendRefs: [
              {
                group: "inference.networking.x-k8s.io",
                kind: "InferencePool",
                name: "p",
                weight: -1,
              },
            ],
          },
        ],
      },
    };
    const msg = kubectlError(() => env().kubectl(["apply", "-f", "-"], JSON.stringify(route)));
    expect(msg).toMatch(
      /weight: Invalid value: -1: spec.rules\[0\].backendRefs\[0\].weight in body should be greater than or equal to 0/,
    );
  });

  it("rejects an InferenceModel with weights on some targetModels but not all", () => {
    const model = {
      apiVersion: "inference.networking.x-k8s.io/v1alpha2",
      kind: "InferenceModel",
      metadata: { name: "bad-weights", namespace: ns.name },
      spec: {
        modelName: "m",
        poolRef: { name: "p" },
        targetModels: [{ name: "a", weight: 50 }, { name: "b" }],
      },
    };
    const msg = kubectlError(() => env().kubectl(["apply", "-f", "-"], JSON.stringify(model)));
    expect(msg).toMatch(/Weights should be set for all models, or none of the models/);
  });

  it("supports server-side apply and the status subresource on InferencePool (fluent client)", async () => {
    const pool = {
      apiVersion: "inference.networking.x-k8s.io/v1alpha2",
      kind: "InferencePool",
      metadata: { name: "ssa-pool", namespace: ns.name },
      spec: {
        selector: { app: "vllm" },
        targetPortNumber: 8000,
        extensionRef: { name: "ssa-pool-epp" },
      },
    };
    const Pool = K8s(InferencePoolV1alpha2, { kindOverride: poolKind });
    const applied = await Pool.Apply(pool, { force: true });
    expect(applied.metadata?.managedFields?.some(f => f.operation === "Apply")).toBe(true);

    const status = { parent: [{ parentRef: { kind: "Gateway", name: "gw" }, conditions: [] }] };
    await Pool.PatchStatus({
      metadata: { name: "ssa-pool", namespace: ns.name },
      status,
    } as InferencePoolV1alpha2);
    const read = await Pool.InNamespace(ns.name).Get("ssa-pool");
    expect((read as unknown as { status: typeof status }).status.parent[0].parentRef.name).toBe(
      "gw",
    );
    // A status write does not bump the generation: it went through the subresource.
    expect(read.metadata?.generation).toBe(1);
  });

  it("answers `kubectl get inferencepools` with the generated kubeconfig", () => {
    const out = env().kubectl([
      "-n",
      ns.name,
      "get",
      "inferencepools.inference.networking.x-k8s.io",
    ]);
    expect(out).toMatch(/ssa-pool/);
  });
});

describe("simulated model server pod", () => {
  it("answers at its podIP, exposes vLLM metrics, and Prometheus scrapes it", async () => {
    const e = env();
    const server = await deployModelServer(e.info, {
      namespace: ns.name,
      name: "vllm-0",
      labels: { app: "vllm-qwen" },
      port: 8000,
      model: "Qwen/Qwen2.5-1.5B-Instruct",
      servedModelNames: ["mymodel"],
      loraAdapters: ["travel-helper-v1"],
      maxLoras: 2,
    });
    try {
      const pod = JSON.parse(e.kubectl(["-n", ns.name, "get", "pod", "vllm-0", "-o", "json"]));
      expect(pod.status.podIP).toBe(server.podIP);
      expect(pod.status.conditions.find((c: { type: string }) => c.type === "Ready").status).toBe(
        "True",
      );
      expect(pod.metadata.labels.app).toBe("vllm-qwen");

      const res = await fetch(`http://${pod.status.podIP}:8000/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "travel-helper-v1",
          messages: [{ role: "user", content: "hello" }],
        }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { model: string; choices: unknown[] };
      expect(body.model).toBe("travel-helper-v1");
      expect(body.choices.length).toBeGreaterThan(0);

      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/^vllm:num_requests_waiting/m);

      await waitFor(
        "Prometheus to scrape the model server",
        async () =>
          (
            await promQuery(
              e.info.prometheusUrl,
              `vllm:num_requests_waiting{namespace="${ns.name}",pod="vllm-0"}`,
            )
          ).length === 1,
        30000,
      );
    } finally {
      await removeModelServer(e.info, ns.name, "vllm-0");
    }
    expect(e.kubectl(["-n", ns.name, "get", "pods", "-o", "name"]).trim()).toBe("");
  });
});

describe("llm-d-inference-sim as a pod", () => {
  it("answers at podIP:port through its forwarder, as the Downward API's POD_NAME / POD_NAMESPACE, under every served name", async () => {
    // llm-d-inference-sim listens on a port of every address: deployModelServer runs it on a
    // free port behind a forwarder at the pod's own podIP:port.
    const e = env();
    try {
      const server = await deployModelServer(e.info, {
        namespace: ns.name,
        name: "upstream-0",
        labels: { app: "upstream" },
        port: 8000,
        model: "base",
        servedModelNames: ["alias-a", "alias-b"],
        loraAdapters: ["lora-x"],
      });
      expect(server.url).toBe(`http://${server.podIP}:8000`);
      const answers = [];
      for (const model of ["alias-a", "alias-b", "lora-x"]) {
        const res = await fetch(`${server.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model, prompt: "hi", max_tokens: 3 }),
        });
        expect(res.status).toBe(200);
        expect(res.headers.get("x-inference-pod")).toBe("upstream-0");
        expect(res.headers.get("x-inference-namespace")).toBe(ns.name);
        answers.push(((await res.json()) as { model: string }).model);
      }
      // A base-model alias is answered as the first served name; an adapter as itself.
      expect(answers).toEqual(["alias-a", "alias-a", "lora-x"]);
      const models = (await (await fetch(`${server.url}/v1/models`)).json()) as {
        data: { id: string }[];
      };
      expect(models.data.map(m => m.id).sort()).toEqual(["alias-a", "alias-b", "lora-x"]);
      // The base model's own name is not served when served names are given.
      const base = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "base", prompt: "hi" }),
      });
      expect(base.status).toBe(404);
    } finally {
      await removeModelServer(e.info, ns.name, "upstream-0");
    }
  });
});
