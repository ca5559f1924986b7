import {
  adaptersRollout,
  badRollout,
  CANARY_ADAPTER_PATH,
  PODS,
  poolsRollout,
  SEED,
  seedObjects,
  UPSTREAM,
  upstreamObjects,
  upstreamRollout,
} from "./manifests";
import {
  changeKey,
  describeObserved,
  formatElapsed,
  ProgressBoard,
  rolloutLines,
} from "./progress";
import {
  adapterReadinessProblems,
  failingEvidence,
  gateMeasurements,
  loraModelProblems,
  parseDemoArgs,
  phaseProblems,
  routeProblems,
  SCENARIOS,
  splitOf,
} from "./scenarios";

describe("scenario checks", () => {
  it("computes the canary share of a pair and ignores other label values", () => {
    expect(splitOf({ a: 90, b: 10, other: 500 }, "a", "b")).toEqual({
      canaryPercent: 10,
      total: 100,
    });
    expect(splitOf({ b: 4 }, "a", "b")).toEqual({ canaryPercent: 100, total: 4 });
    expect(splitOf({}, "a", "b")).toBeUndefined();
  });

  it("accepts a route with only the expected pool, and reports anything else", () => {
    const refs = (...r: { name: string; weight?: number }[]) => ({
      spec: { rules: [{ backendRefs: r }] },
    });
    expect(routeProblems(refs({ name: SEED.canaryPool, weight: 100 }), SEED.canaryPool)).toEqual(
      [],
    );
    expect(routeProblems(refs({ name: SEED.canaryPool }), SEED.canaryPool)).toEqual([]);
    expect(
      routeProblems(
        refs({ name: SEED.stablePool, weight: 0 }, { name: SEED.canaryPool, weight: 100 }),
        SEED.canaryPool,
      )[0],
    ).toMatch(/backendRefs \[mymodel-pool-v1=0, mymodel-pool-v2=100\]/);
    expect(routeProblems({}, SEED.canaryPool)).toHaveLength(1);
  });

  it("accepts loramodel with travel-helper-v2 only", () => {
    expect(
      loraModelProblems({ spec: { targetModels: [{ name: SEED.canaryAdapter, weight: 100 }] } }),
    ).toEqual([]);
    expect(
      loraModelProblems({ spec: { targetModels: [{ name: SEED.stableAdapter, weight: 100 }] } })[0],
    ).toMatch(/travel-helper-v1=100/);
  });

  it("wants scenario 2 to have held for qwen-0, loaded travel-helper-v2 there, and the pod to list it", () => {
    const r = (loadedOn?: string[]) => ({
      metadata: { name: "x" },
      status: { phase: "Succeeded", ...(loadedOn ? { adapterReadiness: { loadedOn } } : {}) },
    });
    const held = [{ reason: "AdapterNotReady", message: "... qwen-0 (not in /v1/models) ..." }];
    const served = [SEED.stableAdapter, SEED.canaryAdapter];
    expect(adapterReadinessProblems(r(["qwen-0"]), held, served, "qwen-0")).toEqual([]);
    expect(adapterReadinessProblems(r(["qwen-0"]), [], served, "qwen-0")[0]).toMatch(
      /no AdapterNotReady Event naming pod qwen-0/,
    );
    expect(adapterReadinessProblems(r(), held, served, "qwen-0")[0]).toMatch(
      /loadedOn should name qwen-0/,
    );
    expect(
      adapterReadinessProblems(r(["qwen-0"]), held, [SEED.stableAdapter], "qwen-0")[0],
    ).toMatch(/should list travel-helper-v2/);
  });

  it("starts the Qwen pod without the canary adapter, and asks the operator to load it", () => {
    expect(PODS.find(p => p.name === "qwen-0")?.loraAdapters).toEqual([SEED.stableAdapter]);
    expect(adaptersRollout("http://p").spec.adapters.readiness).toEqual({
      load: { path: CANARY_ADAPTER_PATH },
    });
  });

  it("wants the expected phase, and a failure caused by the error-rate gate", () => {
    const [good, , bad] = SCENARIOS;
    const r = (phase: string, message = "") => ({
      metadata: { name: "x" },
      status: { phase, message },
    });
    expect(phaseProblems(good, r("Succeeded"))).toEqual([]);
    expect(phaseProblems(good, r("Failed", "boom"))[0]).toMatch(
      /phase Failed, expected Succeeded: boom/,
    );
    expect(phaseProblems(good, undefined)[0]).toMatch(/phase \(none\)/);
    expect(
      phaseProblems(
        bad,
        r("Failed", "background analysis Failed: metric canary-error-rate Failed"),
      ),
    ).toEqual([]);
    expect(phaseProblems(bad, r("Failed", "InferencePool not found"))[0]).toMatch(
      /not by the canary-error-rate gate/,
    );
  });

  it("finds the failing measurement for the summary", () => {
    const failed = {
      metadata: { name: "x" },
      status: {
        analysis: {
          phase: "Failed",
          metrics: [
            {
              name: "canary-error-rate",
              phase: "Failed",
              measurements: [
                { phase: "Successful", value: "[0]" },
                { phase: "Failed", value: "[0.41]", message: "too high" },
              ],
            },
          ],
        },
      },
    };
    expect(failingEvidence(failed)).toBe("canary-error-rate measured [0.41] (too high)");
    expect(failingEvidence({ metadata: { name: "x" } })).toBeUndefined();
  });

  it("shows the last measurement of each step gate, rounded", () => {
    const done = {
      metadata: { name: "x" },
      status: {
        stepAnalysis: {
          phase: "Successful",
          metrics: [
            {
              name: "canary-traffic",
              phase: "Successful",
              measurements: [
                { phase: "Inconclusive", value: "[3]" },
                { phase: "Successful", value: "[277.2413793103448]" },
              ],
            },
            {
              name: "latency",
              phase: "Successful",
              measurements: [{ phase: "Successful", value: "[1.0240963855421716]" }],
            },
            { name: "empty", phase: "Running", measurements: [] },
          ],
        },
      },
    };
    expect(gateMeasurements(done)).toBe(
      "canary-traffic Successful 277.24, latency Successful 1.02",
    );
    expect(gateMeasurements({ metadata: { name: "x" } })).toBeUndefined();
  });

  it("checks the upstream-EPP route by its own name", () => {
    const route = { spec: { rules: [{ backendRefs: [{ name: UPSTREAM.stablePool }] }] } };
    expect(routeProblems(route, UPSTREAM.canaryPool, UPSTREAM.route)[0]).toMatch(
      new RegExp(`^HTTPRoute ${UPSTREAM.route} should send everything to ${UPSTREAM.canaryPool}`),
    );
  });

  it("parses the demo's arguments and rejects bad ones", () => {
    expect(parseDemoArgs([])).toEqual({
      keep: false,
      plain: false,
      namespace: "modelrollout-demo",
      help: false,
    });
    expect(parseDemoArgs(["--keep", "--plain", "--namespace", "d1"])).toMatchObject({
      keep: true,
      plain: true,
      namespace: "d1",
    });
    expect(parseDemoArgs(["--namespace=d2"]).namespace).toBe("d2");
    expect(() => parseDemoArgs(["--namespace", "Bad_Name"])).toThrow(/DNS label/);
    expect(() => parseDemoArgs(["--fast"])).toThrow(/unknown argument --fast/);
  });
});

describe("manifests", () => {
  const prom = "http://127.0.0.1:19090";

  it("deploys the seed's names, with loramodel on travel-helper-v1 only before the rollout", () => {
    const names = seedObjects().map(
      o => `${(o as { kind: string }).kind}/${(o as { metadata: { name: string } }).metadata.name}`,
    );
    expect(names).toEqual([
      "InferencePool/mymodel-pool-v1",
      "InferenceModel/mymodel-v1",
      "InferencePool/mymodel-pool-v2",
      "InferenceModel/mymodel-v2",
      "InferenceModel/loramodel",
      "Gateway/inference-gateway",
      "HTTPRoute/inference-route",
      "HTTPRoute/travelhelper-route",
    ]);
  });

  it("walks 10 -> 50 -> 100 with pauses and gates in both releases, and rolls the broken build back", () => {
    for (const r of [poolsRollout(prom), adaptersRollout(prom)]) {
      const weights = r.spec.steps
        .filter(s => "setWeight" in s)
        .map(s => (s as { setWeight: number }).setWeight);
      expect(weights).toEqual([10, 50, 100]);
      expect(r.spec.steps.filter(s => "analysis" in s)).toHaveLength(2);
      expect(r.spec.analysis.metrics[0]).toMatchObject({ template: "error-rate" });
    }
    const bad = badRollout(prom);
    expect(bad.spec.pools.canaryTemplate.selector.release).toBe("deepseek-r1-broken");
    expect(bad.spec.postRollout.unusedPool).toBe("Delete");
    expect(poolsRollout(prom).spec.steps[2]).toMatchObject({
      analysis: { metrics: [{ template: "min-request-count" }, { name: "observed-split" }] },
    });
    // Scenario 2 probes both adapters through the gateway; the route lets a request name one.
    const probed = adaptersRollout(prom, "20s", "http://127.0.0.1:8080");
    expect(probed.spec.analysis.metrics[1]).toMatchObject({
      name: "adapter-answers",
      probe: { url: "http://127.0.0.1:8080/v1/chat/completions", requests: 2 },
    });
    expect(JSON.stringify(poolsRollout(prom))).toContain('namespace=\\"{{namespace}}\\"');
  });

  it("serves scenario 4 with v1 pools, each behind its upstream EPP, gated on the EPP's metrics", () => {
    const [stable, canary, route] = upstreamObjects() as {
      apiVersion: string;
      kind: string;
      spec: Record<string, unknown>;
    }[];
    for (const pool of [stable, canary]) {
      expect(pool.apiVersion).toBe("inference.networking.k8s.io/v1");
      expect(pool.spec.endpointPickerRef).toMatchObject({ port: { number: 9002 } });
    }
    expect(JSON.stringify(route)).toContain(`"value":"${UPSTREAM.model}"`);
    const r = upstreamRollout(prom);
    expect(r.spec.pools).toEqual({
      httpRoute: UPSTREAM.route,
      stable: UPSTREAM.stablePool,
      canary: UPSTREAM.canaryPool,
    });
    const gates = r.spec.steps.flatMap(s => ("analysis" in s ? s.analysis.metrics : []));
    expect(gates.map(g => g.template)).toEqual([
      "min-request-count",
      "latency-p95-ratio",
      "min-request-count",
      "latency-p95-ratio",
    ]);
    expect(new Set(gates.map(g => g.metricsSource))).toEqual(new Set(["upstream-epp"]));
    expect(SCENARIOS.find(s => s.rollout === r.metadata.name)?.expected).toBe("Succeeded");
  });
});

describe("progress", () => {
  const rollout = {
    metadata: { name: "r" },
    spec: {
      adapters: { inferenceModel: "m", stable: "v1", canary: "v2" },
      steps: [{ setWeight: 10 }, { pause: { duration: "20s" } }],
    },
    status: {
      phase: "Paused",
      currentStep: 1,
      canaryWeight: 10,
      stableWeight: 90,
      message: "pausing",
    },
  };

  it("shows a rollout in three lines, and a waiting one with its reason", () => {
    expect(
      rolloutLines({
        name: "r",
        title: "t",
        rollout,
        observed: { canaryPercent: 9.5, total: 200, window: "10s" },
      }),
    ).toEqual([
      "r  Paused  step 2/2 (pause 20s)  - pausing",
      "  weights [##------------------] v1 90% | v2 10%   observed: canary 9.5% of 200 requests (last 10s)",
      "  gates   -",
    ]);
    expect(rolloutLines({ name: "b", title: "the bad one", waitingFor: "starts later" })).toEqual([
      "b  (starts later)",
      "  the bad one",
    ]);
    expect(describeObserved(undefined)).toBe("observed: no requests yet");
    expect(formatElapsed(65_000)).toBe("1m05s");
  });

  it("counts a new gate verdict as a change, a new measured value not", () => {
    const withGate = (word: string, value: string) => ({
      ...rollout,
      status: {
        ...rollout.status,
        analysis: {
          phase: "Running",
          metrics: [{ name: "g", phase: "Running", measurements: [{ phase: word, value }] }],
        },
      },
    });
    const key = (r: typeof rollout) => changeKey({ name: "r", title: "", rollout: r });
    expect(key(withGate("Successful", "[0.01]"))).toBe(key(withGate("Successful", "[0.02]")));
    expect(key(withGate("Successful", "[0.01]"))).not.toBe(key(withGate("Failed", "[0.2]")));
  });

  it("prints plain lines without escape codes when not live: on change and as a heartbeat", () => {
    let out = "";
    const stream = {
      write: (s: string) => ((out += s), true),
      columns: 80,
    } as unknown as NodeJS.WriteStream;
    const board = new ProgressBoard(stream, false, Date.now(), 60_000);
    const view = { name: "r", title: "t", rollout };
    board.update([view], ["footer"]);
    const first = out;
    expect(first).toContain("r  Paused  step 2/2");
    expect(first).toContain("footer");
    board.update([view], ["footer"]);
    expect(out).toBe(first);
    board.update(
      [
        {
          ...view,
          rollout: {
            ...rollout,
            status: { ...rollout.status, phase: "Succeeded", currentStep: 2 },
          },
        },
      ],
      ["footer"],
    );
    expect(out.slice(first.length)).toContain("r  Succeeded  done (2/2)");
    board.event("something happened");
    expect(out).toMatch(/\] something happened\n$/);
    expect(out).not.toContain("\x1b[");
  });

  it("redraws in place on a terminal, with events above the board", () => {
    let out = "";
    const stream = {
      write: (s: string) => ((out += s), true),
      columns: 40,
    } as unknown as NodeJS.WriteStream;
    const board = new ProgressBoard(stream, true, Date.now());
    board.update([{ name: "r", title: "t", rollout }], ["footer"]);
    const lines = out.split("\n").length - 1;
    board.event("ev");
    expect(out).toContain(`\x1b[${lines}F\x1b[J`);
    expect(out.split("\n").every(l => l.replace(`\x1b[${lines}F\x1b[J`, "").length <= 40)).toBe(
      true,
    );
  });
});
