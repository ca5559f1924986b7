import { describe, expect, it } from "@jest/globals";
import {
  buildCanaryPool,
  cloneForCanaryPool,
  isManagedBy,
  type KubeObject,
  labelValue,
  objectName,
} from "./canarypool";

const ROLLOUT = { name: "qwen-to-deepseek", namespace: "default" };
const TEMPLATE = {
  extensionRef: { group: "", kind: "Service", name: "mymodel-v2-ext-proc" },
  selector: { app: "custom-serving", release: "deepseek-r1" },
  targetPortNumber: 8000,
};
const STABLE_POOL: KubeObject = {
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferencePool",
  metadata: { name: "mymodel-pool-v1", namespace: "default" },
  spec: { selector: { app: "custom-serving", release: "qwen" }, targetPortNumber: 8000 },
};

function model(name: string, pool: string, modelName: string): KubeObject {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferenceModel",
    metadata: { name, namespace: "default", labels: { team: "a" }, resourceVersion: "9", uid: "u" },
    spec: {
      criticality: "Critical",
      modelName,
      poolRef: { group: "inference.networking.x-k8s.io", kind: "InferencePool", name: pool },
      targetModels: [{ name: modelName, weight: 100 }],
    },
  };
}

describe("buildCanaryPool", () => {
  it("uses the template as spec and the stable pool's apiVersion", () => {
    const pool = buildCanaryPool({
      rollout: ROLLOUT,
      canary: "mymodel-pool-v2",
      template: TEMPLATE,
      stablePool: STABLE_POOL,
    });
    expect(pool).toEqual({
      apiVersion: "inference.networking.x-k8s.io/v1alpha2",
      kind: "InferencePool",
      metadata: {
        name: "mymodel-pool-v2",
        namespace: "default",
        labels: {
          "app.kubernetes.io/managed-by": "modelrollout",
          "rollouts.inference.dev/rollout": "qwen-to-deepseek",
        },
      },
      spec: TEMPLATE,
    });
    expect(pool.spec).not.toBe(TEMPLATE);
    expect(isManagedBy(pool, ROLLOUT)).toBe(true);
    expect(isManagedBy(pool, { ...ROLLOUT, name: "other" })).toBe(false);
    expect(isManagedBy(STABLE_POOL, ROLLOUT)).toBe(false);
  });

  it("uses the pool group's version when told, and fails clearly without any", () => {
    const ga = buildCanaryPool({
      rollout: ROLLOUT,
      canary: "p2",
      template: { selector: { matchLabels: { a: "b" } }, targetPorts: [{ number: 8000 }] },
      stablePool: STABLE_POOL,
      poolGroup: "inference.networking.k8s.io",
    });
    expect(ga.apiVersion).toBe("inference.networking.k8s.io/v1");
    expect(() => buildCanaryPool({ rollout: ROLLOUT, canary: "p2", template: {} })).toThrow(
      "set spec.pools.poolGroup",
    );
  });
});

describe("cloneForCanaryPool", () => {
  it("clones the stable pool's InferenceModels with the same modelName and criticality", () => {
    const existing = [
      model("mymodel-v1", "mymodel-pool-v1", "mymodel"),
      model("unrelated", "other-pool", "x"),
    ];
    const clones = cloneForCanaryPool({
      rollout: ROLLOUT,
      existing,
      stablePool: "mymodel-pool-v1",
      canaryPool: "mymodel-pool-v2",
    });
    expect(clones).toEqual([
      {
        apiVersion: "inference.networking.x-k8s.io/v1alpha2",
        kind: "InferenceModel",
        metadata: {
          name: "mymodel-pool-v2-mymodel-v1",
          namespace: "default",
          labels: {
            team: "a",
            "app.kubernetes.io/managed-by": "modelrollout",
            "rollouts.inference.dev/rollout": "qwen-to-deepseek",
          },
          annotations: { "rollouts.inference.dev/cloned-from": "mymodel-v1" },
        },
        spec: {
          criticality: "Critical",
          modelName: "mymodel",
          poolRef: {
            group: "inference.networking.x-k8s.io",
            kind: "InferencePool",
            name: "mymodel-pool-v2",
          },
          targetModels: [{ name: "mymodel", weight: 100 }],
        },
      },
    ]);
  });

  it("skips a model the canary pool already serves (the seed's mymodel-v2) and existing clones", () => {
    const existing = [
      model("mymodel-v1", "mymodel-pool-v1", "mymodel"),
      model("mymodel-v2", "mymodel-pool-v2", "mymodel"),
    ];
    expect(
      cloneForCanaryPool({
        rollout: ROLLOUT,
        existing,
        stablePool: "mymodel-pool-v1",
        canaryPool: "mymodel-pool-v2",
      }),
    ).toEqual([]);
    const once = cloneForCanaryPool({
      rollout: ROLLOUT,
      existing: [existing[0]],
      stablePool: "mymodel-pool-v1",
      canaryPool: "mymodel-pool-v2",
    });
    expect(
      cloneForCanaryPool({
        rollout: ROLLOUT,
        existing: [existing[0], ...once],
        stablePool: "mymodel-pool-v1",
        canaryPool: "mymodel-pool-v2",
      }),
    ).toEqual([]);
  });

  it("clones InferenceObjectives with their priority and sets the canary group when told", () => {
    const objective: KubeObject = {
      apiVersion: "llm-d.ai/v1alpha2",
      kind: "InferenceObjective",
      metadata: { name: "critical", namespace: "default" },
      spec: {
        priority: 10,
        poolRef: { group: "inference.networking.x-k8s.io", name: "mymodel-pool-v1" },
      },
    };
    const [clone] = cloneForCanaryPool({
      rollout: ROLLOUT,
      existing: [objective],
      stablePool: "mymodel-pool-v1",
      canaryPool: "mymodel-pool-v2",
      canaryGroup: "inference.networking.k8s.io",
    });
    expect(clone.apiVersion).toBe("llm-d.ai/v1alpha2");
    expect(clone.metadata?.name).toBe("mymodel-pool-v2-critical");
    expect(clone.spec).toEqual({
      priority: 10,
      poolRef: { group: "inference.networking.k8s.io", name: "mymodel-pool-v2" },
    });
  });
});

describe("names", () => {
  it("keeps label values and object names within their limits, deterministically", () => {
    expect(labelValue("short")).toBe("short");
    const long = labelValue("a".repeat(100));
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toBe(labelValue("a".repeat(100)));
    expect(long).not.toBe(labelValue(`${"a".repeat(99)}b`));
    expect(objectName("p", "m")).toBe("p-m");
    const name = objectName("p".repeat(200), "m".repeat(200));
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(/^[a-z0-9-]+$/);
  });
});
