import { PrefixIndex, defaultPrefixConfig } from "./prefix";
import { seededRng } from "./rng";
import { CancellationFlag } from "./cancellation";
import { RequestRouter, RouterOptions, defaultObjectiveHeaders } from "./router";
import { Scheduler, defaultSaturationConfig } from "./scheduler";
import { defaultSchedulerConfig, defaultScoreWeights } from "./scheduler-config";
import { TrafficSplitter } from "./split";
import { EndpointView, ModelResolution, PoolView } from "./types";

const NOW = 1000;

class FakePool implements PoolView {
  endpoints: EndpointView[] = [];
  models = new Map<string, ModelResolution>();
  objectives = new Map<string, number>();
  poolName() {
    return "pool-a";
  }
  readyEndpoints() {
    return this.endpoints;
  }
  resolveModel(m: string) {
    return this.models.get(m);
  }
  objectivePriority(n: string) {
    return this.objectives.get(n);
  }
  adapters: [string, string][] = [];
  noteDispatched(address: string, adapter?: string) {
    if (adapter) this.adapters.push([address, adapter]);
    const e = this.endpoints.find(x => x.address === address);
    if (e) {
      e.inflight++;
      e.dispatchedSinceScrape++;
    }
  }
  noteCompleted(address: string) {
    const e = this.endpoints.find(x => x.address === address);
    if (e) {
      e.inflight--;
      e.completedSinceScrape = (e.completedSinceScrape ?? 0) + 1;
    }
  }
}

function endpoint(i: number, waiting = 0): EndpointView {
  return {
    name: `pod-${i}`,
    podName: `pod-${i}`,
    address: `10.0.0.${i}:8000`,
    metrics: { waiting, running: 0, kvCacheUsage: 0.1, scrapedAtMs: NOW },
    dispatchedSinceScrape: 0,
    inflight: 0,
  };
}

function setup(options: Partial<RouterOptions> = {}) {
  const pool = new FakePool();
  pool.endpoints = [endpoint(1), endpoint(2)];
  pool.models.set("travel-helper", {
    source: "InferenceModel",
    targets: [
      { name: "travel-helper-v1", weight: 90 },
      { name: "travel-helper-v2", weight: 10 },
    ],
    adapters: true,
  });
  pool.models.set("batch", {
    source: "InferenceModel",
    targets: [{ name: "batch", weight: 1 }],
    criticality: "Sheddable",
    adapters: false,
  });
  const rng = seededRng(1);
  const router = new RequestRouter(
    pool,
    new Scheduler(defaultSchedulerConfig(defaultScoreWeights, new PrefixIndex(1000))),
    new TrafficSplitter({ rng, stickyCapacity: 1000 }),
    rng,
    {
      strict: false,
      sessionHeader: "x-session-id",
      objectiveHeaders: defaultObjectiveHeaders,
      maxBodyBytes: 1 << 20,
      prefix: defaultPrefixConfig,
      saturation: defaultSaturationConfig,
      ...options,
    },
  );
  return { pool, router };
}

const request = (body: unknown, headers: Record<string, string> = {}) => ({
  body: Buffer.from(typeof body === "string" ? body : JSON.stringify(body)),
  header: (n: string) => headers[n],
  nowMs: NOW,
});

describe("RequestRouter", () => {
  it("splits, rewrites the model in the body and picks an endpoint", () => {
    const { router, pool } = setup();
    const d = router.decide(request({ model: "travel-helper", prompt: "hi", max_tokens: 3 }));
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(["travel-helper-v1", "travel-helper-v2"]).toContain(d.targetModel);
    expect(d.bodyChanged).toBe(true);
    expect(JSON.parse(d.body.toString())).toEqual({
      model: d.targetModel,
      prompt: "hi",
      max_tokens: 3,
    });
    expect(d.endpoints).toHaveLength(2);
    expect(pool.endpoints.reduce((n, e) => n + e.inflight, 0)).toBe(1);
    // The split picked an adapter: it is named for in-flight accounting.
    expect(d.adapter).toBe(d.targetModel);
    expect(pool.adapters).toEqual([[d.endpoints[0].address, d.targetModel]]);
  });

  it("passes unknown models through unchanged, or answers 404 when strict", () => {
    const lenient = setup().router.decide(request({ model: "other" }));
    expect(lenient.ok && lenient.targetModel).toBe("other");
    expect(lenient.ok && lenient.bodyChanged).toBe(false);
    const strict = setup({ strict: true }).router.decide(request({ model: "other" }));
    expect(strict.ok).toBe(false);
    if (!strict.ok) {
      expect(strict.error.status).toBe(404);
      expect(strict.error.message).toContain("pool-a");
    }
  });

  it("answers 400 for bad bodies and 413 for oversized ones", () => {
    const { router } = setup({ maxBodyBytes: 100 });
    const bad = router.decide(request("{nope"));
    expect(!bad.ok && bad.error.status).toBe(400);
    const big = router.decide(request({ model: "m", prompt: "x".repeat(200) }));
    expect(!big.ok && big.error.status).toBe(413);
  });

  it("sheds sheddable models and objectives with negative priority on a saturated pool", () => {
    const { router, pool } = setup();
    pool.endpoints = [endpoint(1, 50), endpoint(2, 50)];
    pool.objectives.set("batch-objective", -1);
    pool.objectives.set("interactive", 10);
    const byCriticality = router.decide(request({ model: "batch" }));
    expect(!byCriticality.ok && byCriticality.error.status).toBe(429);
    const byObjective = router.decide(
      request({ model: "travel-helper" }, { "x-gateway-inference-objective": "batch-objective" }),
    );
    expect(!byObjective.ok && byObjective.error.status).toBe(429);
    expect(!byObjective.ok && byObjective.targetModel).toMatch(/^travel-helper-v/);
    const critical = router.decide(
      request({ model: "travel-helper" }, { "x-gateway-inference-objective": "interactive" }),
    );
    expect(critical.ok).toBe(true);
  });

  it("answers 503 without ready endpoints", () => {
    const { router, pool } = setup();
    pool.endpoints = [];
    const d = router.decide(request({ model: "m" }));
    expect(!d.ok && d.error.status).toBe(503);
    expect(!d.ok && d.error.code).toBe("ServiceUnavailable");
  });

  it("keeps a session on one target version", () => {
    const { router } = setup();
    const first = router.decide(request({ model: "travel-helper" }, { "x-session-id": "abc" }));
    if (!first.ok) throw new Error("no decision");
    for (let i = 0; i < 100; i++) {
      const d = router.decide(request({ model: "travel-helper" }, { "x-session-id": "abc" }));
      expect(d.ok && d.targetModel).toBe(first.targetModel);
    }
  });

  it("routes bodyless requests to a ready endpoint", () => {
    const { router } = setup();
    const d = router.decideBodyless(NOW);
    expect(d.ok && d.endpoints[0].address).toMatch(/^10\.0\.0\.\d:8000$/);
  });
});

describe("RequestRouter with flow control", () => {
  const flow = {
    enabled: true,
    maxRunning: 2,
    maxWaitMs: 1000,
    sheddableMaxWaitMs: 1000,
    maxQueue: 10,
    localityWaitMs: 0,
  };
  const body = { model: "travel-helper" };

  it("dispatches at once while an endpoint has a free running slot", () => {
    const { router, pool } = setup({ flowControl: flow });
    for (let i = 0; i < 4; i++) {
      const d = router.decideOrHold(request(body));
      expect(d instanceof Promise).toBe(false);
    }
    expect(pool.endpoints.map(e => e.inflight)).toEqual([2, 2]);
  });

  it("holds requests while every slot is taken and sends them, oldest first, to the pod that frees one", async () => {
    const { router, pool } = setup({ flowControl: flow });
    for (let i = 0; i < 4; i++) void router.decideOrHold(request(body));
    const first = router.decideOrHold(request({ model: "travel-helper", prompt: "first" }));
    const second = router.decideOrHold(request({ model: "travel-helper", prompt: "second" }));
    expect(first instanceof Promise && second instanceof Promise).toBe(true);
    expect(router.heldCount()).toEqual({ now: 2, total: 2 });
    router.drainHeld(NOW); // nothing freed yet
    expect(router.heldCount().now).toBe(2);
    pool.noteCompleted(pool.endpoints[1].address);
    router.drainHeld(NOW + 5);
    expect(router.heldCount().now).toBe(1);
    const d = await first;
    expect(d.ok && d.endpoints[0].address).toBe(pool.endpoints[1].address);
    expect(d.ok && d.body.toString()).toContain("first");
    pool.noteCompleted(pool.endpoints[0].address);
    router.drainHeld(NOW + 6);
    const d2 = await second;
    expect(d2.ok && d2.endpoints[0].address).toBe(pool.endpoints[0].address);
    expect(router.heldCount().now).toBe(0);
  });

  it("answers 429 to a request held maxWaitMs without a free slot", async () => {
    const { router, pool } = setup({ flowControl: flow });
    for (let i = 0; i < 4; i++) void router.decideOrHold(request(body));
    const held = router.decideOrHold(request(body));
    router.drainHeld(NOW + 999);
    expect(router.heldCount().now).toBe(1);
    router.drainHeld(NOW + 1000);
    const d = await held;
    expect(!d.ok && d.error.status).toBe(429);
    expect(!d.ok && d.rejected).toBe("queue-timeout");
    expect(pool.endpoints[0].inflight + pool.endpoints[1].inflight).toBe(4);
    expect(router.rejectedCount().get("queue-timeout")).toBe(1);
  });

  it("answers 429 at once when the queue is full, and never holds with flow control off", () => {
    const full = setup({ flowControl: { ...flow, maxQueue: 1 } });
    for (let i = 0; i < 4; i++) void full.router.decideOrHold(request(body));
    expect(full.router.decideOrHold(request(body)) instanceof Promise).toBe(true);
    const refused = full.router.decideOrHold(request(body));
    expect(!(refused instanceof Promise) && !refused.ok && refused.rejected).toBe("queue-full");
    expect(!(refused instanceof Promise) && !refused.ok && refused.error.status).toBe(429);
    // Nothing went to a pod's own queue.
    expect(full.pool.endpoints.map(e => e.inflight)).toEqual([2, 2]);
    const off = setup({ flowControl: { ...flow, enabled: false } });
    for (let i = 0; i < 6; i++) {
      expect(off.router.decideOrHold(request(body)) instanceof Promise).toBe(false);
    }
  });

  it("sheds sheddable requests once the held queue saturates the pool, and lets critical ones displace held sheddable ones", async () => {
    // 2 ready endpoints × queueThreshold 1: saturated from 2 held requests on.
    const { router, pool } = setup({
      flowControl: { ...flow, maxQueue: 3 },
      saturation: { ...defaultSaturationConfig, queueThreshold: 1 },
    });
    pool.objectives.set("batch-objective", -1);
    const sheddable = () => request(body, { "x-gateway-inference-objective": "batch-objective" });
    for (let i = 0; i < 4; i++) void router.decideOrHold(request(body));
    const firstSheddable = router.decideOrHold(sheddable());
    const critical = router.decideOrHold(request({ model: "travel-helper", prompt: "c1" }));
    expect(firstSheddable instanceof Promise && critical instanceof Promise).toBe(true);
    const shed = router.decideOrHold(sheddable());
    expect(!(shed instanceof Promise) && !shed.ok && shed.rejected).toBe("sheddable-saturated");
    void router.decideOrHold(request(body)); // the queue is full now (3)
    const late = router.decideOrHold(request({ model: "travel-helper", prompt: "c3" }));
    expect(late instanceof Promise).toBe(true);
    const displaced = await firstSheddable;
    expect(!displaced.ok && displaced.rejected).toBe("displaced");
    expect(router.heldCount().now).toBe(3);
    // A freed slot goes to the oldest critical request.
    pool.noteCompleted(pool.endpoints[0].address);
    router.drainHeld(NOW + 1);
    const d = await critical;
    expect(d.ok && d.body.toString()).toContain("c1");
  });

  it("bounds a held sheddable request's wait by sheddableMaxWaitMs, a critical one's by maxWaitMs", async () => {
    const { router, pool } = setup({ flowControl: { ...flow, sheddableMaxWaitMs: 200 } });
    pool.objectives.set("batch-objective", -1);
    for (let i = 0; i < 4; i++) void router.decideOrHold(request(body));
    const sheddable = router.decideOrHold(
      request(body, { "x-gateway-inference-objective": "batch-objective" }),
    );
    const critical = router.decideOrHold(request(body));
    router.drainHeld(NOW + 200);
    const shed = await sheddable;
    expect(!shed.ok && shed.rejected).toBe("queue-timeout");
    expect(router.heldCount().now).toBe(1);
    router.drainHeld(NOW + 1000);
    const late = await critical;
    expect(!late.ok && late.rejected).toBe("queue-timeout");
  });

  it("takes a held request out of the queue when its client leaves", async () => {
    const { router, pool } = setup({ flowControl: flow });
    for (let i = 0; i < 4; i++) void router.decideOrHold(request(body));
    const gone = new AbortController();
    const held = router.decideOrHold(request(body), gone.signal);
    gone.abort();
    expect((await held).ok).toBe(false);
    expect(router.heldCount().now).toBe(0);
    pool.noteCompleted(pool.endpoints[0].address);
    router.drainHeld(NOW);
    expect(pool.endpoints.map(e => e.inflight)).toEqual([1, 2]);
  });

  it("answers 503 at once when no endpoint is ready, and releases held requests with 503 when the last one goes", async () => {
    const { router, pool } = setup({ flowControl: flow });
    for (let i = 0; i < 4; i++) void router.decideOrHold(request(body));
    const held = router.decideOrHold(request(body));
    expect(held instanceof Promise).toBe(true);
    pool.endpoints = [];
    router.drainHeld(NOW + 1);
    const d = await held;
    expect(!d.ok && d.error.status).toBe(503);
    const now = router.decideOrHold(request(body));
    expect(!(now instanceof Promise) && !now.ok && now.error.status).toBe(503);
  });

  it("lets a request wait up to localityWaitMs for the busy pod that holds its prompt prefix", async () => {
    const { router, pool } = setup({ flowControl: { ...flow, localityWaitMs: 200 } });
    pool.models.set("chat", {
      source: "InferenceModel",
      targets: [{ name: "chat", weight: 1 }],
      adapters: false,
    });
    const document = "A long shared system prompt about the city of Porto. ".repeat(20);
    const ask = (question: string) => request({ model: "chat", prompt: document + question });
    const first = router.decideOrHold(ask("q1"));
    if (first instanceof Promise || !first.ok) throw new Error("first request not placed");
    const home = first.endpoints[0];
    const other = pool.endpoints.find(e => e !== home)!;
    // Fill the pod holding the prefix; the other one still has both slots free.
    expect(router.decideOrHold(ask("q2")) instanceof Promise).toBe(false);
    expect(home.inflight).toBe(2);
    const waiting = router.decideOrHold({ ...ask("q3"), nowMs: NOW });
    expect(waiting instanceof Promise).toBe(true);
    // A prompt without that prefix is not held: it starts on the free pod at once.
    const unrelated = await router.decideOrHold(request({ model: "chat", prompt: "short" }));
    expect(unrelated.ok && unrelated.endpoints[0]).toBe(other);
    expect(router.heldCount().now).toBe(1);
    router.drainHeld(NOW + 199);
    expect(router.heldCount().now).toBe(1);
    pool.noteCompleted(home.address);
    router.drainHeld(NOW + 150);
    const d = await waiting;
    expect(d.ok && d.endpoints[0]).toBe(home);

    // When the home pod stays busy, the request starts elsewhere after localityWaitMs.
    const late = router.decideOrHold({ ...ask("q4"), nowMs: NOW + 300 });
    expect(late instanceof Promise).toBe(true);
    router.drainHeld(NOW + 499);
    expect(router.heldCount().now).toBe(1);
    router.drainHeld(NOW + 500);
    const spilled = await late;
    expect(spilled.ok && spilled.endpoints[0]).toBe(other);
  });

  it("neither holds nor narrows to the prefix's pods while the running capacity is unknown", () => {
    const { router, pool } = setup({
      flowControl: { ...flow, maxRunning: 0, localityWaitMs: 200 },
    });
    pool.models.set("chat", {
      source: "InferenceModel",
      targets: [{ name: "chat", weight: 1 }],
      adapters: false,
    });
    const prompt = "A long shared system prompt about the city of Porto. ".repeat(20);
    const first = router.decideOrHold(request({ model: "chat", prompt }));
    if (first instanceof Promise || !first.ok) throw new Error("first request not placed");
    const home = first.endpoints[0];
    // The prefix's pod looks much busier: the scorers may send the next one elsewhere.
    home.metrics = { ...home.metrics!, waiting: 20 };
    const next = router.decideOrHold(request({ model: "chat", prompt }));
    expect(!(next instanceof Promise) && next.ok && next.endpoints[0]).not.toBe(home);
  });

  it("holds nothing while the running capacity is unknown", () => {
    const { router } = setup({ flowControl: { ...flow, maxRunning: 0 } });
    for (let i = 0; i < 10; i++) {
      expect(router.decideOrHold(request(body)) instanceof Promise).toBe(false);
    }
  });
});

describe("CancellationFlag", () => {
  it("calls each listener once, on the first abort, and not a removed one", () => {
    const flag = new CancellationFlag();
    const calls: string[] = [];
    const removed = () => calls.push("removed");
    flag.addEventListener("abort", () => calls.push("a"));
    flag.addEventListener("abort", removed);
    flag.removeEventListener("abort", removed);
    expect(flag.aborted).toBe(false);
    flag.abort();
    flag.abort();
    expect(flag.aborted).toBe(true);
    expect(calls).toEqual(["a"]);
  });
});
