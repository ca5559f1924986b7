import { queuesForSlots, Datastore } from "./datastore";
import {
  inferenceModelFromObject,
  objectiveFromObject,
  podRecordFromObject,
  poolSpecFromObject,
  rewriteFromObject,
} from "./pool-records";

const alphaPool = {
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferencePool",
  metadata: { name: "pool-a", namespace: "ns" },
  spec: { selector: { app: "vllm" }, targetPortNumber: 8000, extensionRef: { name: "epp" } },
};
const gaPool = {
  apiVersion: "inference.networking.k8s.io/v1",
  kind: "InferencePool",
  metadata: { name: "pool-a", namespace: "ns" },
  spec: {
    selector: { matchLabels: { app: "vllm" } },
    targetPorts: [{ number: 8000 }, { number: 8001 }],
    endpointPickerRef: { name: "epp", port: { number: 9002 } },
  },
};

function pod(
  name: string,
  ip: string,
  ready = true,
  labels: Record<string, string> = { app: "vllm" },
) {
  return {
    metadata: { name, labels },
    status: { podIP: ip, conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
  };
}

const meta = (name: string, createdAt = "2025-01-01T00:00:00Z") => ({
  name,
  namespace: "ns",
  creationTimestamp: createdAt,
});

describe("mapping API objects", () => {
  it("reads a v1alpha2 pool and a GA pool", () => {
    expect(poolSpecFromObject(alphaPool)).toEqual({
      name: "pool-a",
      namespace: "ns",
      group: "inference.networking.x-k8s.io",
      selector: { app: "vllm" },
      targetPorts: [8000],
    });
    expect(poolSpecFromObject(gaPool)).toEqual({
      name: "pool-a",
      namespace: "ns",
      group: "inference.networking.k8s.io",
      selector: { app: "vllm" },
      targetPorts: [8000, 8001],
    });
  });

  it("rejects pools without selector or port", () => {
    expect(
      poolSpecFromObject({ metadata: { name: "x" }, spec: { selector: {}, targetPortNumber: 1 } }),
    ).toBeInstanceOf(Error);
    expect(
      poolSpecFromObject({ metadata: { name: "x" }, spec: { selector: { a: "b" } } }),
    ).toBeInstanceOf(Error);
    expect(poolSpecFromObject(null)).toBeInstanceOf(Error);
  });

  it("reads pod readiness from the Ready condition, IP and deletion", () => {
    expect(podRecordFromObject(pod("p", "10.0.0.1"))?.ready).toBe(true);
    expect(podRecordFromObject(pod("p", "10.0.0.1", false))?.ready).toBe(false);
    expect(podRecordFromObject(pod("p", ""))?.ready).toBe(false);
    const deleting = pod("p", "10.0.0.1");
    (deleting.metadata as Record<string, unknown>).deletionTimestamp = "2025-01-01T00:00:00Z";
    expect(podRecordFromObject(deleting)?.ready).toBe(false);
    expect(podRecordFromObject({})).toBeUndefined();
  });

  it("reads InferenceModels with and without weights", () => {
    const im = inferenceModelFromObject({
      apiVersion: "inference.networking.x-k8s.io/v1alpha2",
      metadata: meta("loramodel"),
      spec: {
        modelName: "travel-helper",
        criticality: "Sheddable",
        poolRef: { name: "pool-a" },
        targetModels: [
          { name: "travel-helper-v1", weight: 90 },
          { name: "travel-helper-v2", weight: 10 },
        ],
      },
    });
    expect(im).toMatchObject({
      name: "loramodel",
      modelName: "travel-helper",
      poolName: "pool-a",
      criticality: "Sheddable",
      targets: [
        { name: "travel-helper-v1", weight: 90 },
        { name: "travel-helper-v2", weight: 10 },
      ],
    });
    const unweighted = inferenceModelFromObject({
      metadata: meta("m"),
      spec: {
        modelName: "m",
        poolRef: { name: "pool-a" },
        targetModels: [{ name: "a" }, { name: "b" }],
      },
    });
    expect(unweighted?.targets).toEqual([
      { name: "a", weight: 1 },
      { name: "b", weight: 1 },
    ]);
    expect(
      inferenceModelFromObject({ metadata: meta("x"), spec: { poolRef: { name: "p" } } }),
    ).toBeUndefined();
  });

  it("reads InferenceModelRewrites of both groups and InferenceObjectives", () => {
    const rw = rewriteFromObject({
      apiVersion: "llm-d.ai/v1alpha2",
      metadata: meta("rw"),
      spec: {
        poolRef: { name: "pool-a" },
        rules: [
          {
            matches: [{ model: { type: "Exact", value: "travel-helper" } }],
            targets: [
              { modelRewrite: "travel-helper-v1", weight: 50 },
              { modelRewrite: "travel-helper-v2", weight: 50 },
            ],
          },
          { targets: [{ modelRewrite: "fallback" }] },
        ],
      },
    });
    expect(rw).toMatchObject({
      key: "llm-d.ai/rw",
      group: "llm-d.ai",
      rules: [
        {
          matches: ["travel-helper"],
          targets: [
            { name: "travel-helper-v1", weight: 50 },
            { name: "travel-helper-v2", weight: 50 },
          ],
        },
        { matches: [], targets: [{ name: "fallback", weight: 1 }] },
      ],
    });
    expect(
      objectiveFromObject({
        apiVersion: "inference.networking.x-k8s.io/v1alpha2",
        metadata: meta("batch"),
        spec: { poolRef: { name: "pool-a" }, priority: -5 },
      }),
    ).toMatchObject({
      key: "inference.networking.x-k8s.io/batch",
      priority: -5,
      poolName: "pool-a",
    });
  });
});

describe("Datastore", () => {
  function store() {
    const ds = new Datastore("pool-a");
    ds.setPool(poolSpecFromObject(alphaPool) as never);
    return ds;
  }

  it("turns matching pods into endpoints and tracks readiness", () => {
    const ds = store();
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1"))!);
    ds.upsertPod(podRecordFromObject(pod("b", "10.0.0.2", false))!);
    ds.upsertPod(podRecordFromObject(pod("c", "10.0.0.3", true, { app: "other" }))!);
    expect(ds.readyEndpoints().map(e => e.address)).toEqual(["10.0.0.1:8000"]);
    expect(ds.scrapeAddresses().sort()).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
    ds.setMetrics("10.0.0.1:8000", { waiting: 1, running: 2, kvCacheUsage: 0.5, scrapedAtMs: 1 });
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1", false))!);
    expect(ds.readyEndpoints()).toHaveLength(0);
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1"))!);
    expect(ds.readyEndpoints()[0].metrics?.running).toBe(2); // state kept across flips
    ds.deletePod("a");
    expect(ds.readyEndpoints()).toHaveLength(0);
  });

  it("makes one endpoint per target port for GA pools", () => {
    const ds = new Datastore("pool-a");
    ds.setPool(poolSpecFromObject(gaPool) as never);
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1"))!);
    expect(ds.readyEndpoints().map(e => [e.name, e.address])).toEqual([
      ["a-rank-0", "10.0.0.1:8000"],
      ["a-rank-1", "10.0.0.1:8001"],
    ]);
  });

  it("counts dispatches and completions, and resets the since-scrape count on a scrape", () => {
    const ds = store();
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1"))!);
    ds.noteDispatched("10.0.0.1:8000");
    ds.noteDispatched("10.0.0.1:8000");
    ds.noteCompleted("10.0.0.1:8000");
    const e = ds.readyEndpoints()[0];
    expect([e.inflight, e.dispatchedSinceScrape]).toEqual([1, 2]);
    ds.setMetrics("10.0.0.1:8000", { waiting: 0, running: 1, kvCacheUsage: 0, scrapedAtMs: 5 });
    expect(e.dispatchedSinceScrape).toBe(0);
  });

  /** One pod at 10.0.0.1 and scrapes of it (a one-slot LoRA server when `lora` is given). */
  const onePodScraped = () => {
    const ds = store();
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1"))!);
    const scrape = (
      running: number,
      waiting: number,
      lora?: { running: string[]; waiting: string[] },
    ) =>
      ds.setMetrics("10.0.0.1:8000", {
        waiting,
        running,
        kvCacheUsage: 0,
        scrapedAtMs: 5,
        lora: lora && { ...lora, maxLora: 1 },
      });
    return { ds, e: ds.readyEndpoints()[0], scrape };
  };

  it("learns the running capacity from scrapes where requests wait for a running slot", () => {
    const { e, scrape } = onePodScraped();
    scrape(3, 0); // nothing waits: says nothing about the capacity
    expect(e.learntMaxRunning).toBeUndefined();
    scrape(1, 2, { running: ["v1"], waiting: ["v2"] }); // v2 waits for an adapter slot
    expect(e.learntMaxRunning).toBeUndefined();
    scrape(2, 1, { running: ["v1"], waiting: ["v1"] });
    expect(e.learntMaxRunning).toBe(2);
    scrape(1, 4);
    expect(e.learntMaxRunning).toBe(2); // the most seen
    expect(queuesForSlots({ waiting: 1, running: 2, kvCacheUsage: 0, scrapedAtMs: 0 })).toBe(true);
  });

  it("learns nothing from a wait it cannot tell from an adapter wait", () => {
    const { ds, e, scrape } = onePodScraped();
    // Tied states merged: both adapters read as running and waiting on a one-slot server (the
    // read a failing integration run learnt a capacity of 1 from).
    scrape(1, 3, { running: ["v1", "v2"], waiting: ["v1", "v2"] });
    expect(e.learntMaxRunning).toBeUndefined();
    // The read says v1 alone, but we have v1 and v2 requests in flight there: v2's may be what waits.
    ds.noteDispatched("10.0.0.1:8000", "v1");
    ds.noteDispatched("10.0.0.1:8000", "v2");
    scrape(1, 1, { running: ["v1"], waiting: ["v1"] });
    expect(e.learntMaxRunning).toBeUndefined();
    ds.noteCompleted("10.0.0.1:8000", "v2");
    scrape(1, 1, { running: ["v1"], waiting: ["v1"] });
    expect(e.learntMaxRunning).toBe(1);
  });

  it("counts completions since the scrape and tells capacity listeners", () => {
    const ds = store();
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1"))!);
    let calls = 0;
    ds.onCapacity(() => calls++);
    ds.noteDispatched("10.0.0.1:8000");
    ds.noteCompleted("10.0.0.1:8000");
    const e = ds.readyEndpoints()[0];
    expect(e.completedSinceScrape).toBe(1);
    ds.setMetrics("10.0.0.1:8000", { waiting: 0, running: 0, kvCacheUsage: 0, scrapedAtMs: 5 });
    expect(e.completedSinceScrape).toBe(0);
    expect(calls).toBe(2);
  });

  it("counts in-flight requests per LoRA adapter until they complete", () => {
    const ds = store();
    ds.upsertPod(podRecordFromObject(pod("a", "10.0.0.1"))!);
    ds.noteDispatched("10.0.0.1:8000", "v1");
    ds.noteDispatched("10.0.0.1:8000", "v1");
    ds.noteDispatched("10.0.0.1:8000", "v2");
    ds.noteDispatched("10.0.0.1:8000");
    const e = ds.readyEndpoints()[0];
    expect([...e.sentAdapters!]).toEqual([
      ["v1", 2],
      ["v2", 1],
    ]);
    ds.noteCompleted("10.0.0.1:8000", "v1");
    ds.noteCompleted("10.0.0.1:8000", "v2");
    ds.noteCompleted("10.0.0.1:8000", "v3"); // never sent: ignored
    // Completed adapters stay, in the order they were last sent (idle adapters stay loaded).
    expect([...e.sentAdapters!]).toEqual([
      ["v1", 1],
      ["v2", 0],
    ]);
    expect(e.inflight).toBe(1);
    ds.noteDispatched("10.0.0.1:8000", "v1");
    expect([...e.sentAdapters!.keys()]).toEqual(["v2", "v1"]);
    // Bounded: the least recently sent idle adapters go first.
    for (let i = 0; i < 20; i++) {
      ds.noteDispatched("10.0.0.1:8000", `x${i}`);
      ds.noteCompleted("10.0.0.1:8000", `x${i}`);
    }
    expect(e.sentAdapters!.size).toBe(16);
    expect(e.sentAdapters!.has("v2")).toBe(false);
    expect(e.sentAdapters!.get("v1")).toBe(2);
  });

  it("resolves model names: exact rewrite > InferenceModel > catch-all rewrite; oldest wins", () => {
    const ds = store();
    ds.upsertModel(
      inferenceModelFromObject({
        metadata: meta("im-new", "2025-02-01T00:00:00Z"),
        spec: { modelName: "m", poolRef: { name: "pool-a" }, targetModels: [{ name: "new" }] },
      })!,
    );
    ds.upsertModel(
      inferenceModelFromObject({
        metadata: meta("im-old", "2025-01-01T00:00:00Z"),
        spec: { modelName: "m", poolRef: { name: "pool-a" }, targetModels: [{ name: "old" }] },
      })!,
    );
    ds.upsertModel(
      inferenceModelFromObject({
        metadata: meta("base"),
        spec: { modelName: "base", poolRef: { name: "pool-a" } },
      })!,
    );
    ds.upsertModel(
      inferenceModelFromObject({
        metadata: meta("elsewhere"),
        spec: { modelName: "x", poolRef: { name: "pool-b" } },
      })!,
    );
    expect(ds.resolveModel("m")?.targets).toEqual([{ name: "old", weight: 1 }]);
    expect(ds.resolveModel("base")).toMatchObject({
      targets: [{ name: "base", weight: 1 }],
      adapters: false,
    });
    expect(ds.resolveModel("x")).toBeUndefined();

    ds.upsertRewrite(
      rewriteFromObject({
        apiVersion: "inference.networking.x-k8s.io/v1alpha2",
        metadata: meta("rw"),
        spec: {
          poolRef: { name: "pool-a" },
          rules: [
            {
              matches: [{ model: { value: "m" } }],
              targets: [{ modelRewrite: "rewritten", weight: 1 }],
            },
            { targets: [{ modelRewrite: "catch-all", weight: 1 }] },
          ],
        },
      })!,
    );
    expect(ds.resolveModel("m")).toMatchObject({
      source: "InferenceModelRewrite",
      targets: [{ name: "rewritten" }],
    });
    expect(ds.resolveModel("base")?.source).toBe("InferenceModel");
    expect(ds.resolveModel("anything")?.targets).toEqual([{ name: "catch-all", weight: 1 }]);
    ds.deleteRewrite("inference.networking.x-k8s.io/rw");
    expect(ds.resolveModel("anything")).toBeUndefined();
  });

  it("a weight change is visible on the next resolution", () => {
    const ds = store();
    const im = (w1: number, w2: number) =>
      inferenceModelFromObject({
        metadata: meta("lora"),
        spec: {
          modelName: "m",
          poolRef: { name: "pool-a" },
          targetModels: [
            { name: "v1", weight: w1 },
            { name: "v2", weight: w2 },
          ],
        },
      })!;
    ds.upsertModel(im(90, 10));
    expect(ds.resolveModel("m")?.targets[1].weight).toBe(10);
    ds.upsertModel(im(50, 50));
    expect(ds.resolveModel("m")?.targets[1].weight).toBe(50);
  });

  it("finds objective priorities for this pool, preferring llm-d.ai", () => {
    const ds = store();
    ds.upsertObjective(
      objectiveFromObject({
        apiVersion: "inference.networking.x-k8s.io/v1alpha2",
        metadata: meta("o"),
        spec: { poolRef: { name: "pool-a" }, priority: 1 },
      })!,
    );
    ds.upsertObjective(
      objectiveFromObject({
        apiVersion: "llm-d.ai/v1alpha2",
        metadata: meta("o"),
        spec: { poolRef: { name: "pool-a" }, priority: -1 },
      })!,
    );
    ds.upsertObjective(
      objectiveFromObject({
        apiVersion: "llm-d.ai/v1alpha2",
        metadata: meta("p"),
        spec: { poolRef: { name: "pool-b" }, priority: 3 },
      })!,
    );
    expect(ds.objectivePriority("o")).toBe(-1);
    expect(ds.objectivePriority("p")).toBeUndefined();
  });
});
