// Issue 15: a corpus of hostile ModelRollout specs against the real apiserver, Prometheus and the
// operator (as an identity bound to exactly its declared RBAC rules). Every spec must be either
//   (a) refused by the apiserver at `kubectl apply`, with the offending field named in kubectl's
//       error, or
//   (b) accepted, then reported by the operator: Ready=False with a reason, or phase Failed with
//       one (an unknown action annotation on a paused rollout: recorded as Rejected in
//       status.lastAction),
// and in every case no target object changes (every HTTPRoute, InferencePool, InferenceModel,
// InferenceObjective and InferenceModelRewrite of this namespace and of a second "victim"
// namespace is compared by resourceVersion before and after; no canary pool is created), no
// reply of a hostile Prometheus reaches status or Events, no foreign credential is sent, and the
// operator neither exits nor hot-loops. Each case gets its own rollout and its own targets; they
// are applied a few at a time and then waited for together. The tally goes to stderr.
import { GATE_CREDENTIALS_LABEL } from "../../capabilities/analysis/credentials";
import { operatorKubeconfig } from "../../hack/env/rbac";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";
import { FakeMode, HostilePrometheus, startHostilePrometheus } from "../support/hostile-prometheus";
import { inBatches, kubectlAsync, KubectlResult } from "../support/kubectl-async";
import {
  crashLines,
  logSize,
  readLog,
  startWatchedOperator,
  WatchedOperator,
} from "../support/operator-process";
import { diffSnapshots, snapshotTargets, TargetSnapshot } from "../support/targets-snapshot";

// ---------------------------------------------------------------------------------------------
// The corpus

type Obj = Record<string, unknown>;

interface Ctx {
  id: string;
  ns: string;
  victim: string;
  /** InferenceModel m-<id> with targetModels [{v1, 100}] (fixture "model"). */
  model: string;
  /** HTTPRoute r-<id> whose rule "main" references InferencePool p-<id>-v1 (fixture "pools"). */
  route: string;
  stablePool: string;
  canaryPool: string;
  prom: string;
  fake(mode: FakeMode): string;
}

interface Expect {
  /** Refused at apply; kubectl's error must match (it names the field). */
  refused?: RegExp;
  /** Accepted, then Ready=False with one of these reasons ("*": any), or Failed with one. */
  reasons?: string[];
  /** The Ready condition's (or the Failed message's) text must match. */
  message?: RegExp;
  /** Accepted, the unknown action recorded as lastAction.result=Rejected. */
  actionRejected?: boolean;
}

interface Case {
  cls: string;
  name: string;
  /** Objects the case needs (default: the InferenceModel m-<id>). */
  fixture?: (c: Ctx) => Obj[];
  spec: (c: Ctx) => unknown;
  annotations?: (c: Ctx) => Record<string, string>;
  /** A rollout that owns the same target first (paused: it writes nothing). */
  owner?: (c: Ctx) => Obj;
  expect: Expect;
  /** More to check once everything has settled. */
  check?: (c: Ctx, r: MRO | undefined) => void | Promise<void>;
}

interface MRO {
  metadata: { name: string; resourceVersion: string };
  status?: {
    phase?: string;
    message?: string;
    canaryWeight?: number;
    target?: unknown;
    lastAction?: { action: string; result: string; message?: string };
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

const ANY = ["*"];
const GATE_ERRORS = ["InvalidAnalysis"];
const UNAVAILABLE = ["PrometheusUnavailable", "InvalidAnalysis"];

const model = (c: Ctx, targets: Obj[] = [{ name: "v1", weight: 100 }], modelName?: string) => ({
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferenceModel",
  metadata: { name: c.model },
  spec: { modelName: modelName ?? c.model, poolRef: { name: c.stablePool }, targetModels: targets },
});
const pool = (name: string) => ({
  apiVersion: "inference.networking.x-k8s.io/v1alpha2",
  kind: "InferencePool",
  metadata: { name },
  spec: {
    extensionRef: { group: "", kind: "Service", name: `${name}-epp` },
    selector: { app: name },
    targetPortNumber: 8000,
  },
});
const route = (name: string, stablePool: string) => ({
  apiVersion: "gateway.networking.k8s.io/v1",
  kind: "HTTPRoute",
  metadata: { name },
  spec: {
    rules: [
      {
        name: "main",
        backendRefs: [
          {
            group: "inference.networking.x-k8s.io",
            kind: "InferencePool",
            name: stablePool,
            port: 8000,
            weight: 1,
          },
        ],
      },
      { name: "other", backendRefs: [{ kind: "Service", name: "other", port: 80 }] },
    ],
  },
});
const poolsFixture = (c: Ctx) => [pool(c.stablePool), route(c.route, c.stablePool)];
const poolsWithCanary = (c: Ctx) => [...poolsFixture(c), pool(c.canaryPool)];
const none = () => [];

const TEMPLATE = {
  extensionRef: { group: "", kind: "Service", name: "canary-epp" },
  selector: { app: "canary" },
  targetPortNumber: 8000,
};
const adapters = (c: Ctx, over: Obj = {}) => ({
  inferenceModel: c.model,
  stable: "v1",
  canary: "v2",
  ...over,
});
const pools = (c: Ctx, over: Obj = {}) => ({
  httpRoute: c.route,
  stable: c.stablePool,
  canary: c.canaryPool,
  canaryTemplate: TEMPLATE,
  ...over,
});
const STEPS = [{ setWeight: 10 }, { pause: { duration: "1h" } }, { setWeight: 100 }];
const onModel = (c: Ctx, over: Obj = {}) => ({ adapters: adapters(c), steps: STEPS, ...over });
const metric = (over: Obj = {}) => ({
  name: "gate",
  query: "vector(0)",
  interval: "1s",
  successCondition: "result[0] == 0",
  ...over,
});
/** A step gate after the first weight: the operator must find the problem before that weight. */
const stepGate = (c: Ctx, m: Obj, over: Obj = {}) => ({
  adapters: adapters(c),
  prometheus: { address: c.prom },
  steps: [{ setWeight: 10 }, { analysis: { metrics: [m] } }, { setWeight: 100 }],
  ...over,
});
/** The same metric as the background analysis. */
const background = (c: Ctx, m: Obj, over: Obj = {}) => ({
  adapters: adapters(c),
  prometheus: { address: c.prom },
  analysis: { metrics: [m] },
  steps: STEPS,
  ...over,
});
const withPause = (c: Ctx, duration: unknown) => ({
  adapters: adapters(c),
  steps: [{ setWeight: 10 }, { pause: { duration } }, { setWeight: 100 }],
});
const long = (n: number, ch = "a") => ch.repeat(n);
const cases: Case[] = [];
const add = (cls: string, list: Omit<Case, "cls">[]) =>
  list.forEach(x => cases.push({ cls, ...x }));

add("target shape", [
  {
    name: "both pools and adapters",
    spec: c => ({ ...onModel(c), pools: pools(c) }),
    expect: { refused: /spec: Invalid value: exactly one of spec\.pools .* or spec\.adapters/ },
  },
  {
    name: "neither pools nor adapters",
    spec: () => ({ steps: STEPS }),
    expect: { refused: /exactly one of spec\.pools .* or spec\.adapters/ },
  },
  {
    name: "adapters with both inferenceModel and inferenceModelRewrite",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModelRewrite: { name: c.model } }) }),
    expect: { refused: /spec\.adapters: .*exactly one of adapters\.inferenceModel/ },
  },
  {
    name: "adapters with neither inferenceModel nor inferenceModelRewrite",
    spec: () => ({ adapters: { stable: "v1", canary: "v2" }, steps: STEPS }),
    expect: { refused: /spec\.adapters: .*exactly one of adapters\.inferenceModel/ },
  },
  {
    name: "adapters stable == canary",
    spec: c => onModel(c, { adapters: adapters(c, { canary: "v1" }) }),
    expect: { refused: /spec\.adapters: .*adapters\.stable and adapters\.canary/ },
  },
  {
    name: "pools stable == canary",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { canary: c.stablePool }), steps: STEPS }),
    expect: { refused: /spec\.pools: .*pools\.stable and pools\.canary/ },
  },
  {
    name: "adapters without canary",
    spec: c => onModel(c, { adapters: { inferenceModel: c.model, stable: "v1" } }),
    expect: { refused: /spec\.adapters\.canary: Required value/ },
  },
  {
    name: "pools without httpRoute",
    fixture: poolsFixture,
    spec: c => ({ pools: { stable: c.stablePool, canary: c.canaryPool }, steps: STEPS }),
    expect: { refused: /spec\.pools\.httpRoute: Required value/ },
  },
  {
    name: "empty stable name",
    spec: c => onModel(c, { adapters: adapters(c, { stable: "" }) }),
    expect: { refused: /spec\.adapters\.stable/ },
  },
  {
    name: "pools is a string",
    spec: () => ({ pools: "inference-route", steps: STEPS }),
    expect: { refused: /spec\.pools/ },
  },
  {
    name: "poolGroup outside the enum",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { poolGroup: "evil.example.com" }), steps: STEPS }),
    expect: { refused: /spec\.pools\.poolGroup/ },
  },
  {
    name: "inferenceModelRewrite group outside the enum",
    spec: c => ({
      adapters: {
        inferenceModelRewrite: { name: c.model, group: "evil.example.com" },
        stable: "v1",
        canary: "v2",
      },
      steps: STEPS,
    }),
    expect: { refused: /spec\.adapters\.inferenceModelRewrite\.group/ },
  },
  {
    name: "no steps field",
    spec: c => ({ adapters: adapters(c) }),
    expect: { refused: /spec\.steps: Required value/ },
  },
  {
    name: "no spec at all",
    spec: () => undefined,
    expect: { refused: /spec: Required value/ },
  },
]);

const victimModel = "victim-model";
const victimRoute = "victim-route";
const victimPool = "victim-pool-v1";
const victimSecret = "victim-token";
const VICTIM_TOKEN = "VICTIM-TOKEN-do-not-send";

add("names", [
  {
    name: "inferenceModel of 254 characters",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: long(254) }) }),
    expect: { refused: /spec\.adapters\.inferenceModel: Too long/ },
  },
  {
    name: "httpRoute of 254 characters",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { httpRoute: long(254) }), steps: STEPS }),
    expect: { refused: /spec\.pools\.httpRoute: Too long/ },
  },
  {
    name: "pools.canary of 254 characters",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { canary: long(254) }), steps: STEPS }),
    expect: { refused: /spec\.pools\.canary: Too long/ },
  },
  {
    name: "adapters.canary of 100k characters",
    spec: c => onModel(c, { adapters: adapters(c, { canary: long(100_000) }) }),
    expect: { refused: /spec\.adapters\.canary: Too long/ },
  },
  {
    name: "inferenceModel of exactly 253 characters (absent)",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: long(253, "z") }) }),
    expect: { reasons: ["InferenceModelNotFound"] },
  },
  {
    name: "inferenceModel not a DNS name (upper case, underscore)",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: `M_${c.model}` }) }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: "inferenceModel with spaces",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: `${c.model} x` }) }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: 'inferenceModel with PromQL-breaking `"}`',
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: `${c.model}"}` }) }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: "inferenceModel with a newline inside the name of an existing model",
    spec: c =>
      onModel(c, {
        adapters: adapters(c, { inferenceModel: `${c.model.slice(0, 3)}\n${c.model.slice(3)}` }),
      }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: "inferenceModel with a tab after the name of an existing model",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: `${c.model}\t` }) }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: "inferenceModel with a #fragment after the name of an existing model",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: `${c.model}#x` }) }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: "inferenceModel with a ?dryRun=All query after the name of an existing model",
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: `${c.model}?dryRun=All` }) }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: 'inferenceModel "." (the collection)',
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: "." }) }),
    expect: { refused: /spec\.adapters\.inferenceModel/, reasons: ANY },
  },
  {
    name: 'inferenceModel ".."',
    spec: c => onModel(c, { adapters: adapters(c, { inferenceModel: ".." }) }),
    expect: { refused: /spec\.adapters\.inferenceModel/, reasons: ANY },
  },
  {
    name: "inferenceModel ../../<victim namespace>/inferencemodels/<model> (path traversal)",
    spec: c =>
      onModel(c, {
        adapters: adapters(c, {
          inferenceModel: `../../${c.victim}/inferencemodels/${victimModel}`,
        }),
      }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: "inferenceModel %2e%2e/%2e%2e/<victim namespace>/... (encoded path traversal)",
    spec: c =>
      onModel(c, {
        adapters: adapters(c, {
          inferenceModel: `%2e%2e/%2e%2e/${c.victim}/inferencemodels/${victimModel}`,
        }),
      }),
    expect: {
      refused: /spec\.adapters\.inferenceModel/,
      reasons: ["InferenceModelNotFound", "InvalidSpec"],
    },
  },
  {
    name: "httpRoute ../../<victim namespace>/httproutes/<route> (path traversal)",
    fixture: () => [pool(victimPool)],
    spec: c => ({
      pools: {
        httpRoute: `../../${c.victim}/httproutes/${victimRoute}`,
        stable: victimPool,
        canary: `${c.id}-traversal-canary`,
        canaryTemplate: TEMPLATE,
      },
      steps: STEPS,
    }),
    expect: { refused: /spec\.pools\.httpRoute/, reasons: ["HTTPRouteNotFound", "InvalidSpec"] },
  },
  {
    name: "pools.stable with a path traversal to the victim's pool",
    fixture: poolsFixture,
    spec: c => ({
      pools: pools(c, { stable: `../../${c.victim}/inferencepools/${victimPool}` }),
      steps: STEPS,
    }),
    expect: { refused: /spec\.pools\.stable/, reasons: ANY },
  },
  {
    name: "pools.canary with a path traversal to the victim's pool (no canaryTemplate)",
    fixture: poolsFixture,
    spec: c => ({
      pools: pools(c, {
        canary: `../../${c.victim}/inferencepools/${victimPool}`,
        canaryTemplate: undefined,
      }),
      steps: STEPS,
    }),
    expect: { refused: /spec\.pools\.canary/, reasons: ANY },
  },
  {
    name: "httpRoute with uppercase and underscores",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { httpRoute: `R_${c.route}` }), steps: STEPS }),
    expect: { refused: /spec\.pools\.httpRoute/, reasons: ["HTTPRouteNotFound", "InvalidSpec"] },
  },
]);

/** Names and values that would change a query if substituted unescaped. */
const INJECTIONS: [string, string][] = [
  ["closing matcher", 'v2"}'],
  ["or vector(1) and a comment", 'v2"} or vector(1) #'],
  ["backslashes", 'v2\\"} or vector(1) or up{x=\\"'],
  ["a newline", "v2\n} or vector(1)"],
  ["single quotes", "v2' or vector(1) or '"],
  ["backquotes", "v2` or vector(1) or `"],
  ["a placeholder inside the value", "v2 {{stable}} {{namespace}}"],
];
/** The hostile value must come out of Prometheus exactly as given: one label, one string literal. */
const labelOf = (placeholder: string) => `label_replace(vector(1), "who", ${placeholder}, "", "")`;
async function verifyEscaped(c: Ctx, value: string) {
  const sent = fake.requests.filter(r => r.tag === c.id && r.query);
  expect(sent.length).toBeGreaterThan(0);
  for (const r of sent) {
    const result = await promQuery(env().info.prometheusUrl, r.query!);
    expect(result.map(s => s.metric.who)).toEqual([value]);
  }
}
add("PromQL injection", [
  ...INJECTIONS.map(([what, value]) => ({
    name: `canary adapter name with ${what} (query sent is verified on the real Prometheus)`,
    spec: (c: Ctx) =>
      stepGate(c, metric({ query: labelOf("{{canary}}") }), {
        adapters: adapters(c, { canary: value }),
        prometheus: { address: c.fake("bad-data") },
      }),
    expect: { reasons: GATE_ERRORS },
    check: (c: Ctx) => verifyEscaped(c, value),
  })),
  ...INJECTIONS.slice(0, 3).map(([what, value]) => ({
    name: `args value with ${what} in {{args.x}}`,
    spec: (c: Ctx) =>
      stepGate(c, metric({ query: labelOf("{{args.x}}"), args: { x: value } }), {
        prometheus: { address: c.fake("bad-data") },
      }),
    expect: { reasons: GATE_ERRORS },
    check: (c: Ctx) => verifyEscaped(c, value),
  })),
  {
    name: "the InferenceModel's modelName with PromQL-breaking characters in {{modelName}}",
    fixture: c => [model(c, undefined, 'mm"} or vector(1) #\n')],
    spec: c =>
      stepGate(c, metric({ query: labelOf("{{modelName}}") }), {
        prometheus: { address: c.fake("bad-data") },
      }),
    expect: { reasons: GATE_ERRORS },
    check: c => verifyEscaped(c, 'mm"} or vector(1) #\n'),
  },
]);

add("weights", [
  ...(
    [
      ["-1", -1, /spec\.steps\[0\]\.setWeight: Invalid value: -1: setWeight must be between 0/],
      ["101", 101, /spec\.steps\[0\]\.setWeight: Invalid value: 101/],
      ["2^31 (over int32)", 2147483648, /spec\.steps\[0\]\.setWeight/],
      ["1e15", 1e15, /spec\.steps\[0\]\.setWeight/],
      ["10.5", 10.5, /spec\.steps\[0\]\.setWeight.*int/],
      ['"10" (a string)', "10", /spec\.steps\[0\]\.setWeight.*must be of type integer/],
      ["true", true, /spec\.steps\[0\]\.setWeight.*must be of type int/],
      ["[10]", [10], /spec\.steps\[0\]\.setWeight.*must be of type integer/],
      ["{}", {}, /spec\.steps\[0\]\.setWeight.*must be of type int/],
      ["null (dropped: an empty step)", null, /spec\.steps\[0\]: Invalid value: each step must/],
    ] as [string, unknown, RegExp][]
  ).map(([what, w, refused]) => ({
    name: `setWeight ${what}`,
    spec: (c: Ctx) => ({ adapters: adapters(c), steps: [{ setWeight: w }, { pause: {} }] }),
    expect: { refused },
  })),
  {
    name: "a later setWeight of 1000 after a valid one",
    spec: c => ({ adapters: adapters(c), steps: [{ setWeight: 10 }, { setWeight: 1000 }] }),
    expect: { refused: /spec\.steps\[1\]\.setWeight/ },
  },
]);

add("steps", [
  {
    name: "empty steps list",
    spec: c => ({ adapters: adapters(c), steps: [] }),
    expect: { refused: /spec\.steps: .*at least one step/ },
  },
  {
    name: "65 steps (maxItems 64)",
    spec: c => ({
      adapters: adapters(c),
      steps: Array.from({ length: 65 }, () => ({ pause: {} })),
    }),
    expect: { refused: /spec\.steps: Too many: 65: must have at most 64 items/ },
  },
  {
    name: "5000 steps",
    spec: c => ({
      adapters: adapters(c),
      steps: Array.from({ length: 5000 }, (_, i) => ({ setWeight: i % 100 })),
    }),
    expect: { refused: /spec\.steps: Too many/ },
  },
  {
    name: "an empty step",
    spec: c => ({ adapters: adapters(c), steps: [{ setWeight: 10 }, {}] }),
    expect: { refused: /spec\.steps\[1\]: Invalid value: each step must have exactly one/ },
  },
  {
    name: "setWeight and pause in one step",
    spec: c => ({ adapters: adapters(c), steps: [{ setWeight: 10, pause: {} }] }),
    expect: { refused: /spec\.steps\[0\]: Invalid value: each step must have exactly one/ },
  },
  {
    name: "pause and analysis in one step",
    spec: c => ({
      adapters: adapters(c),
      prometheus: { address: c.prom },
      steps: [{ pause: {}, analysis: { metrics: [metric()] } }],
    }),
    expect: { refused: /spec\.steps\[0\]: Invalid value: each step must have exactly one/ },
  },
  {
    name: "setWeight and analysis in one step",
    spec: c => ({
      adapters: adapters(c),
      prometheus: { address: c.prom },
      steps: [{ setWeight: 50, analysis: { metrics: [metric()] } }],
    }),
    expect: { refused: /spec\.steps\[0\]: Invalid value: each step must have exactly one/ },
  },
  {
    name: "all three kinds in one step",
    spec: c => ({
      adapters: adapters(c),
      prometheus: { address: c.prom },
      steps: [{ setWeight: 50, pause: {}, analysis: { metrics: [metric()] } }],
    }),
    expect: { refused: /spec\.steps\[0\]: Invalid value: each step must have exactly one/ },
  },
  {
    name: "steps is an object",
    spec: c => ({ adapters: adapters(c), steps: { setWeight: 10 } }),
    // Decoded as an object, its key is an unknown field of spec.steps.
    expect: { refused: /spec\.steps/ },
  },
  {
    name: "a step with only an unknown kind",
    spec: c => ({ adapters: adapters(c), steps: [{ wait: "5m" }] }),
    expect: { refused: /unknown field "spec\.steps\[0\]\.wait"/ },
  },
  {
    name: "pause is a string",
    spec: c => ({ adapters: adapters(c), steps: [{ setWeight: 10 }, { pause: "5m" }] }),
    expect: { refused: /spec\.steps\[1\]\.pause.*must be of type object/ },
  },
  {
    name: "pause.duration is a number",
    spec: c => withPause(c, 30),
    expect: { refused: /spec\.steps\[1\]\.pause\.duration.*must be of type string/ },
  },
]);

const DURATION_REFUSED: [string, string][] = [
  ["9999999999999h", "more than 6 digits"],
  ["8761h", "over 8760h"],
  ["1d", "unit d"],
  ["-1s", "negative"],
  ["1.5s", "fraction"],
  ["", "empty"],
  ["30", "no unit"],
  ["1000000ms", "7 digits"],
  ["999999h999999h999999h", "overflowing sum"],
  [`${"1s".repeat(17)}`, "longer than 32 characters"],
];
add("durations", [
  ...DURATION_REFUSED.map(([d, what]) => ({
    name: `pause.duration ${JSON.stringify(d)} (${what})`,
    spec: (c: Ctx) => withPause(c, d),
    expect: { refused: /spec\.steps\[1\]\.pause\.duration/ },
  })),
  ...DURATION_REFUSED.slice(0, 6).map(([d, what]) => ({
    name: `interval ${JSON.stringify(d)} (${what})`,
    spec: (c: Ctx) => stepGate(c, metric({ interval: d })),
    expect: { refused: /spec\.steps\[1\]\.analysis\.metrics\[0\]\.interval/ },
  })),
  ...DURATION_REFUSED.slice(0, 5).map(([d, what]) => ({
    name: `background initialDelay ${JSON.stringify(d)} (${what})`,
    spec: (c: Ctx) => background(c, metric({ initialDelay: d })),
    expect: { refused: /spec\.analysis\.metrics\[0\]\.initialDelay/ },
  })),
  ...(
    [
      ["11m", "over 10m"],
      ["10m1s", "just over 10m"],
      ["1h", "an hour"],
      ["-1s", "negative"],
      ["1d", "unit d"],
    ] as [string, string][]
  ).map(([d, what]) => ({
    name: `prometheus.timeout ${JSON.stringify(d)} (${what})`,
    spec: (c: Ctx) => stepGate(c, metric(), { prometheus: { address: c.prom, timeout: d } }),
    expect: { refused: /spec\.prometheus\.timeout/ },
  })),
  {
    name: 'per-metric prometheus.timeout "11m"',
    spec: c => stepGate(c, metric({ prometheus: { address: c.prom, timeout: "11m" } })),
    expect: { refused: /spec\.steps\[1\]\.analysis\.metrics\[0\]\.prometheus\.timeout/ },
  },
  // Accepted by the CRD's CEL rules (Go's time.ParseDuration), refused by the operator.
  {
    name: 'pause.duration "1s1m" (units out of order)',
    spec: c => withPause(c, "1s1m"),
    expect: { refused: /pause\.duration/, reasons: ["InvalidSpec"], message: /pause\.duration/ },
  },
  {
    name: 'pause.duration "1h1h" (a unit twice)',
    spec: c => withPause(c, "1h1h"),
    expect: { refused: /pause\.duration/, reasons: ["InvalidSpec"], message: /pause\.duration/ },
  },
  {
    name: 'interval "0s"',
    spec: c => stepGate(c, metric({ interval: "0s" })),
    expect: { refused: /interval/, reasons: GATE_ERRORS, message: /interval/ },
  },
  {
    name: 'interval "1s1m"',
    spec: c => stepGate(c, metric({ interval: "1s1m" })),
    expect: { refused: /interval/, reasons: GATE_ERRORS, message: /interval/ },
  },
  {
    name: 'initialDelay "5m1h"',
    spec: c => stepGate(c, metric({ initialDelay: "5m1h" })),
    expect: { refused: /initialDelay/, reasons: GATE_ERRORS, message: /initialDelay/ },
  },
  {
    name: 'prometheus.timeout "0ms"',
    spec: c => stepGate(c, metric(), { prometheus: { address: c.prom, timeout: "0ms" } }),
    expect: { refused: /timeout/, reasons: GATE_ERRORS, message: /timeout/ },
  },
  {
    name: 'prometheus.timeout "1s1m"',
    spec: c => stepGate(c, metric(), { prometheus: { address: c.prom, timeout: "1s1m" } }),
    expect: { refused: /timeout/, reasons: GATE_ERRORS, message: /timeout/ },
  },
]);

add("analysis schema", [
  {
    name: "analysis without metrics",
    spec: c => ({ ...stepGate(c, metric()), analysis: {} }),
    expect: {
      refused: /spec\.analysis: Invalid value.*an analysis needs inline metrics, templates/,
    },
  },
  {
    name: "analysis with args but neither metrics nor templates",
    spec: c => ({ ...stepGate(c, metric()), analysis: { args: [{ name: "a", value: "1" }] } }),
    expect: { refused: /an analysis needs inline metrics, templates/ },
  },
  {
    name: "template name with a path (../victim/x)",
    spec: c => ({
      ...stepGate(c, metric()),
      analysis: { templates: [{ templateName: `../${c.victim}/x` }] },
    }),
    expect: { refused: /spec\.analysis\.templates\[0\]\.templateName/ },
  },
  {
    name: "the same template referenced twice",
    spec: c => ({
      ...stepGate(c, metric()),
      analysis: { templates: [{ templateName: "t" }, { templateName: "t", clusterScope: false }] },
    }),
    expect: { refused: /each template may be referenced once per analysis/ },
  },
  {
    name: "an arg given twice",
    spec: c => ({
      ...stepGate(c, metric()),
      analysis: {
        templates: [{ templateName: "t" }],
        args: [
          { name: "a", value: "1" },
          { name: "a", value: "2" },
        ],
      },
    }),
    expect: { refused: /spec\.analysis\.args\[1\]: Duplicate value/ },
  },
  {
    name: "a template that does not exist (namespaced and cluster-scoped)",
    spec: c => ({
      ...stepGate(c, metric()),
      analysis: {
        templates: [
          { templateName: `missing-${c.id}` },
          { templateName: `missing-${c.id}`, clusterScope: true },
        ],
      },
    }),
    expect: {
      reasons: ["AnalysisTemplateNotFound"],
      message:
        /AnalysisTemplate \S+\/missing-\S+ not found.*ClusterAnalysisTemplate missing-\S+ not found/,
    },
  },
  {
    name: "empty metrics list",
    spec: c => ({ ...stepGate(c, metric()), analysis: { metrics: [] } }),
    expect: { refused: /spec\.analysis\.metrics/ },
  },
  {
    name: "17 metrics (maxItems 16)",
    spec: c => ({
      ...stepGate(c, metric()),
      analysis: { metrics: Array.from({ length: 17 }, (_, i) => metric({ name: `m${i}` })) },
    }),
    expect: { refused: /spec\.analysis\.metrics: Too many/ },
  },
  {
    name: "duplicate metric names",
    spec: c => ({
      adapters: adapters(c),
      prometheus: { address: c.prom },
      steps: [{ setWeight: 10 }, { analysis: { metrics: [metric(), metric()] } }],
    }),
    expect: { refused: /spec\.steps\[1\]\.analysis\.metrics: .*unique/ },
  },
  {
    name: "both query and template",
    spec: c => stepGate(c, metric({ template: "error-rate", successCondition: undefined })),
    expect: { refused: /spec\.steps\[1\]\.analysis\.metrics\[0\]: .*exactly one of query/ },
  },
  {
    name: "neither query nor template",
    spec: c => stepGate(c, { name: "gate", successCondition: "result[0] == 0" }),
    expect: { refused: /spec\.steps\[1\]\.analysis\.metrics\[0\]: .*exactly one of query/ },
  },
  {
    name: "empty metric name",
    spec: c => stepGate(c, metric({ name: "" })),
    expect: { refused: /metrics\[0\]\.name/ },
  },
  {
    name: "metric name of 64 characters",
    spec: c => stepGate(c, metric({ name: long(64, "n") })),
    expect: { refused: /metrics\[0\]\.name: Too long/ },
  },
  {
    name: "query of 4097 characters",
    spec: c => stepGate(c, metric({ query: `vector(0)${" ".repeat(4088)}` })),
    expect: { refused: /metrics\[0\]\.query: Too long/ },
  },
  {
    name: "empty query",
    spec: c => stepGate(c, metric({ query: "" })),
    expect: { refused: /metrics\[0\]\.query/ },
  },
  {
    name: "template name of 64 characters",
    spec: c => stepGate(c, { name: "t", template: long(64, "t") }),
    expect: { refused: /metrics\[0\]\.template: Too long/ },
  },
  {
    name: "an arg that is a number",
    spec: c => stepGate(c, { name: "t", template: "error-rate", args: { maxRatio: 0.05 } }),
    expect: { refused: /metrics\[0\]\.args\.maxRatio.*must be of type string/ },
  },
  {
    name: "33 args (maxProperties 32)",
    spec: c =>
      stepGate(c, {
        name: "t",
        template: "error-rate",
        args: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`a${i}`, "1"])),
      }),
    expect: { refused: /metrics\[0\]\.args: Too many/ },
  },
  {
    name: "an arg of 1025 characters",
    spec: c => stepGate(c, { name: "t", template: "error-rate", args: { selector: long(1025) } }),
    expect: { refused: /metrics\[0\]\.args\.selector: Too long/ },
  },
  {
    name: "successCondition of 1025 characters",
    spec: c => stepGate(c, metric({ successCondition: `result[0] == 0${" ".repeat(1011)}` })),
    expect: { refused: /metrics\[0\]\.successCondition: Too long/ },
  },
  {
    name: "measurementsToKeep 0",
    spec: c => ({
      ...background(c, metric()),
      analysis: { measurementsToKeep: 0, metrics: [metric()] },
    }),
    expect: { refused: /spec\.analysis\.measurementsToKeep/ },
  },
  {
    name: "measurementsToKeep 21",
    spec: c => ({
      ...background(c, metric()),
      analysis: { measurementsToKeep: 21, metrics: [metric()] },
    }),
    expect: { refused: /spec\.analysis\.measurementsToKeep/ },
  },
  {
    name: "count 0",
    spec: c => stepGate(c, metric({ count: 0 })),
    expect: { refused: /metrics\[0\]\.count/ },
  },
  {
    name: "failureLimit -1",
    spec: c => stepGate(c, metric({ failureLimit: -1 })),
    expect: { refused: /metrics\[0\]\.failureLimit/ },
  },
  {
    name: 'consecutiveErrorLimit "x"',
    spec: c => stepGate(c, metric({ consecutiveErrorLimit: "x" })),
    expect: { refused: /metrics\[0\]\.consecutiveErrorLimit/ },
  },
  {
    name: 'dryRun "yes"',
    spec: c => stepGate(c, metric({ dryRun: "yes" })),
    expect: { refused: /metrics\[0\]\.dryRun/ },
  },
  {
    name: 'onInconclusive "Explode"',
    spec: c => onModel(c, { onInconclusive: "Explode" }),
    expect: { refused: /spec\.onInconclusive/ },
  },
  {
    name: 'postRollout.unusedPool "DeleteEverything"',
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c), steps: STEPS, postRollout: { unusedPool: "DeleteEverything" } }),
    expect: { refused: /spec\.postRollout\.unusedPool/ },
  },
  {
    name: 'paused "yes"',
    spec: c => onModel(c, { paused: "yes" }),
    expect: { refused: /spec\.paused/ },
  },
]);

add("analysis semantics", [
  {
    name: "unknown template",
    spec: c => stepGate(c, { name: "t", template: "does-not-exist" }),
    expect: { reasons: GATE_ERRORS, message: /unknown template/ },
  },
  {
    name: "template with a non-numeric arg",
    spec: c => stepGate(c, { name: "t", template: "error-rate", args: { maxRatio: "abc" } }),
    expect: { reasons: GATE_ERRORS, message: /maxRatio/ },
  },
  {
    name: "template with an unknown arg",
    spec: c => stepGate(c, { name: "t", template: "error-rate", args: { evil: "1" } }),
    expect: { reasons: GATE_ERRORS, message: /evil/ },
  },
  {
    name: "template selector that tries to close the matcher",
    spec: c =>
      stepGate(c, {
        name: "t",
        template: "error-rate",
        args: { selector: 'pod="x"} or vector(1) or {a="' },
      }),
    expect: { reasons: GATE_ERRORS, message: /selector/ },
  },
  {
    name: "template namespaceLabel that is no label name",
    spec: c =>
      stepGate(c, { name: "t", template: "error-rate", args: { namespaceLabel: "bad label!" } }),
    expect: { reasons: GATE_ERRORS, message: /namespaceLabel/ },
  },
  {
    name: "template with its own successCondition",
    spec: c =>
      stepGate(c, { name: "t", template: "error-rate", successCondition: "result[0] < 1" }),
    expect: { reasons: GATE_ERRORS, message: /successCondition/ },
  },
  ...(
    [
      ["result[0] <<< 1", "<<<"],
      ['eval("1")', "eval"],
      ["require('child_process').execSync('id')", "require"],
      ["result.constructor.constructor('return process')()", "constructor"],
      ["process.exit(1)", "process.exit"],
      ["result[0] < 1; process.exit(1)", "a statement after the condition"],
      ["`${process.exit(1)}`", "a template literal"],
      ["", "empty"],
      [`${"(".repeat(200)}result[0] < 1${")".repeat(200)}`, "200 nested parentheses"],
      [`${"not ".repeat(250)}true`, "250 nested nots"],
      ["result[0] < 1 and", "a dangling and"],
    ] as [string, string][]
  ).map(([cond, what]) => ({
    name: `successCondition ${what}`,
    spec: (c: Ctx) => stepGate(c, metric({ successCondition: cond })),
    expect: { reasons: GATE_ERRORS, message: /successCondition/ },
  })),
  {
    name: "failureCondition that does not parse (background)",
    spec: c => background(c, metric({ failureCondition: "result[0] >>> 1" })),
    expect: { reasons: GATE_ERRORS, message: /failureCondition/ },
  },
  ...(
    [
      ["{{canary", "unbalanced template braces"],
      ["up{pod={{canary}", "a half-closed placeholder"],
      ["{{nope}}", "an unknown placeholder"],
      ["{{args.missing}}", "a missing arg"],
      ["sum(rate(up[5m]", "unbalanced parentheses (Prometheus refuses it)"],
      ["up{", "an unclosed matcher (Prometheus refuses it)"],
      ["vector(1) +", "a dangling operator (Prometheus refuses it)"],
      ["rate(up[5x])", "a bad range (Prometheus refuses it)"],
      ["no_such_function(up)", "an unknown function (Prometheus refuses it)"],
      [`sum(${"(".repeat(100)}up`, "deep unbalanced parentheses"],
      [`${"up + ".repeat(818)}(`, "4096 characters of invalid PromQL"],
    ] as [string, string][]
  ).map(([query, what]) => ({
    name: `query with ${what}`,
    spec: (c: Ctx) => stepGate(c, metric({ query })),
    expect: { reasons: GATE_ERRORS, message: /gate/ },
  })),
  {
    name: "invalid PromQL in the background analysis",
    spec: c => background(c, metric({ query: "sum(rate(up[5m]" })),
    expect: { reasons: GATE_ERRORS, message: /analysis/ },
  },
  {
    name: "invalid PromQL in a gate after the second weight (steps[3])",
    spec: c => ({
      adapters: adapters(c),
      prometheus: { address: c.prom },
      steps: [
        { setWeight: 10 },
        { pause: { duration: "1s" } },
        { setWeight: 20 },
        { analysis: { metrics: [metric({ query: "sum(rate(up[5m]" })] } },
      ],
    }),
    expect: { reasons: GATE_ERRORS, message: /steps\[3\]/ },
  },
  {
    name: "no Prometheus anywhere",
    spec: c => ({
      adapters: adapters(c),
      steps: [{ setWeight: 10 }, { analysis: { metrics: [metric()] } }],
    }),
    expect: { reasons: GATE_ERRORS, message: /Prometheus/ },
  },
]);

const REFUSED_ADDRESSES: [string, string][] = [
  ["not a url", "not a URL"],
  ["file:///etc/passwd", "file:"],
  ["gopher://127.0.0.1:19090/", "gopher:"],
  ["javascript:alert(1)", "javascript:"],
  ["http://169.254.169.254/", "cloud metadata"],
  ["http://2852039166/", "cloud metadata as a decimal number"],
  ["http://0xa9fea9fe/", "cloud metadata in hex"],
  ["http://0251.0376.0251.0376/", "cloud metadata in octal"],
  ["http://[::ffff:169.254.169.254]/", "cloud metadata as IPv4-mapped IPv6"],
  ["http://[fd00:ec2::254]/", "AWS IPv6 metadata"],
  ["http://100.100.100.200/", "Alibaba metadata"],
  ["http://metadata.google.internal/", "GCP metadata by name"],
  ["http://169.254.1.1:9090/", "link-local"],
  ["http://[fe80::1]:9090/", "IPv6 link-local"],
  ["http://0.0.0.0:19090/", "0.0.0.0"],
  ["http://[::]:19090/", "::"],
  ["http://user:pass@127.0.0.1:19090/", "credentials in the URL"],
  ["http://:secret@127.0.0.1:19090/", "a password without a user"],
];
add("prometheus address", [
  ...REFUSED_ADDRESSES.map(([address, what]) => ({
    name: `address ${JSON.stringify(address)} (${what})`,
    spec: (c: Ctx) => stepGate(c, metric(), { prometheus: { address } }),
    expect: { reasons: GATE_ERRORS },
  })),
  {
    name: "per-metric address of the cloud metadata service",
    spec: c => stepGate(c, metric({ prometheus: { address: "http://169.254.169.254/" } })),
    expect: { reasons: GATE_ERRORS },
  },
  {
    name: "address of 2049 characters",
    spec: c => stepGate(c, metric(), { prometheus: { address: `http://x/${long(2040)}` } }),
    expect: { refused: /spec\.prometheus\.address: Too long/ },
  },
  {
    name: "empty address",
    spec: c => stepGate(c, metric(), { prometheus: { address: "" } }),
    expect: { refused: /spec\.prometheus\.address/ },
  },
  {
    name: "prometheus without address",
    spec: c => stepGate(c, metric(), { prometheus: { timeout: "1s" } }),
    expect: { refused: /spec\.prometheus\.address: Required value/ },
  },
  {
    name: "unreachable address (closed port)",
    spec: c =>
      stepGate(c, metric(), { prometheus: { address: "http://127.0.0.1:9", timeout: "1s" } }),
    expect: { reasons: ["PrometheusUnavailable"] },
  },
]);

const FAKE_EXPECT: [FakeMode, string[]][] = [
  ["bad-data", GATE_ERRORS],
  ["redirect", GATE_ERRORS],
  ["unauthorized", GATE_ERRORS],
  ["forbidden", GATE_ERRORS],
  ["not-json", GATE_ERRORS],
  ["wrong-shape", GATE_ERRORS],
  ["server-error", UNAVAILABLE],
  ["rate-limited", UNAVAILABLE],
  ["hang", UNAVAILABLE],
  ["huge", UNAVAILABLE],
];
add("hostile Prometheus", [
  ...FAKE_EXPECT.map(([mode, reasons]) => ({
    name: `a Prometheus that answers ${mode}`,
    spec: (c: Ctx) =>
      stepGate(c, metric(), { prometheus: { address: c.fake(mode), timeout: "2s" } }),
    expect: { reasons },
  })),
]);

add("gate credentials", [
  {
    name: "bearerTokenSecretRef to a Secret without the opt-in label",
    spec: c =>
      stepGate(c, metric(), {
        prometheus: {
          address: c.fake("bad-data"),
          bearerTokenSecretRef: { name: "unlabelled", key: "token" },
        },
      }),
    expect: {
      reasons: GATE_ERRORS,
      message: /unlabelled.*rollouts\.inference\.dev\/gate-credentials/,
    },
    check: c => expect(fake.requests.filter(r => r.tag === c.id)).toEqual([]),
  },
  {
    name: 'bearerTokenSecretRef to a Secret labelled "false"',
    spec: c =>
      stepGate(c, metric(), {
        prometheus: {
          address: c.fake("bad-data"),
          bearerTokenSecretRef: { name: "labelled-false", key: "token" },
        },
      }),
    expect: { reasons: GATE_ERRORS, message: /labelled-false/ },
    check: c => expect(fake.requests.filter(r => r.tag === c.id)).toEqual([]),
  },
  {
    name: "bearerTokenSecretRef to a missing key of a labelled Secret",
    spec: c =>
      stepGate(c, metric(), {
        prometheus: {
          address: c.fake("bad-data"),
          bearerTokenSecretRef: { name: "labelled", key: "nope" },
        },
      }),
    expect: { reasons: GATE_ERRORS, message: /labelled/ },
    check: c => expect(fake.requests.filter(r => r.tag === c.id)).toEqual([]),
  },
  {
    name: "bearerTokenSecretRef to a missing Secret",
    spec: c =>
      stepGate(c, metric(), {
        prometheus: {
          address: c.fake("bad-data"),
          bearerTokenSecretRef: { name: "does-not-exist", key: "token" },
        },
      }),
    expect: { reasons: UNAVAILABLE, message: /does-not-exist/ },
  },
  {
    name: "caSecretRef to a Secret without the opt-in label",
    spec: c =>
      stepGate(c, metric(), {
        prometheus: {
          address: c.fake("bad-data"),
          caSecretRef: { name: "unlabelled", key: "token" },
        },
      }),
    expect: { reasons: GATE_ERRORS, message: /unlabelled/ },
  },
  {
    name: "bearerTokenSecretRef ../../<victim namespace>/secrets/<labelled Secret> (path traversal)",
    spec: c =>
      stepGate(c, metric(), {
        prometheus: {
          address: c.fake("bad-data"),
          bearerTokenSecretRef: { name: `../../${c.victim}/secrets/${victimSecret}`, key: "token" },
        },
      }),
    expect: { refused: /spec\.prometheus\.bearerTokenSecretRef\.name/, reasons: UNAVAILABLE },
    check: c =>
      expect(fake.requests.filter(r => r.tag === c.id).map(r => r.authorization)).not.toContain(
        `Bearer ${VICTIM_TOKEN}`,
      ),
  },
  {
    name: "caSecretRef ../../<victim namespace>/secrets/<labelled Secret> (path traversal)",
    spec: c =>
      stepGate(c, metric(), {
        prometheus: {
          address: c.fake("bad-data"),
          caSecretRef: { name: `../../${c.victim}/secrets/${victimSecret}`, key: "token" },
        },
      }),
    expect: { refused: /spec\.prometheus\.caSecretRef\.name/, reasons: UNAVAILABLE },
  },
  {
    name: "bearerTokenSecretRef without key",
    spec: c =>
      stepGate(c, metric(), {
        prometheus: { address: c.prom, bearerTokenSecretRef: { name: "labelled" } },
      }),
    expect: { refused: /spec\.prometheus\.bearerTokenSecretRef\.key: Required value/ },
  },
]);

add("targets", [
  {
    name: "HTTPRoute absent",
    fixture: c => [pool(c.stablePool)],
    spec: c => ({ pools: pools(c), steps: STEPS }),
    expect: { reasons: ["HTTPRouteNotFound"] },
  },
  {
    name: "InferenceModel absent",
    fixture: none,
    spec: c => onModel(c),
    expect: { reasons: ["InferenceModelNotFound"] },
  },
  {
    name: "InferenceModelRewrite absent",
    fixture: none,
    spec: c => ({
      adapters: { inferenceModelRewrite: { name: c.model }, stable: "v1", canary: "v2" },
      steps: STEPS,
    }),
    expect: { reasons: ["InferenceModelRewriteNotFound"] },
  },
  {
    name: "stable InferencePool absent",
    fixture: c => [route(c.route, c.stablePool)],
    spec: c => ({ pools: pools(c), steps: STEPS }),
    expect: { reasons: ["InferencePoolNotFound"] },
  },
  {
    name: "canary InferencePool absent without canaryTemplate",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { canaryTemplate: undefined }), steps: STEPS }),
    expect: { reasons: ["CanaryPoolNotFound"] },
  },
  {
    name: "the InferenceModel has neither adapter",
    spec: c => onModel(c, { adapters: adapters(c, { stable: "x1", canary: "x2" }) }),
    expect: { reasons: ["TargetModelNotFound"] },
  },
  {
    name: "the InferenceModel already has 10 targetModels",
    fixture: c => [
      model(
        c,
        Array.from({ length: 10 }, (_, i) => ({ name: i ? `o${i}` : "v1", weight: 10 })),
      ),
    ],
    spec: c => onModel(c),
    expect: { reasons: ["TooManyTargetModels"] },
  },
  {
    name: "the HTTPRoute does not reference the stable pool",
    fixture: c => [pool(c.stablePool), route(c.route, "some-other-pool")],
    spec: c => ({ pools: pools(c), steps: STEPS }),
    expect: { reasons: ANY },
  },
  ...(
    [
      [5, "index 5 of 2 rules"],
      [-1, "index -1"],
      [1, "the rule without InferencePools"],
      ["no-such-rule", "a rule name that does not exist"],
      ['main"}', "a rule name with quotes"],
    ] as [number | string, string][]
  ).map(([rule, what]) => ({
    name: `httpRouteRule ${JSON.stringify(rule)} (${what})`,
    fixture: poolsFixture,
    spec: (c: Ctx) => ({ pools: pools(c, { httpRouteRule: rule }), steps: STEPS }),
    expect: { refused: /spec\.pools\.httpRouteRule/, reasons: ANY },
  })),
  {
    name: "httpRouteRule true",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { httpRouteRule: true }), steps: STEPS }),
    expect: { refused: /spec\.pools\.httpRouteRule/ },
  },
  {
    name: "a second rollout on the same InferenceModel",
    owner: c => ({ adapters: adapters(c), paused: true, steps: STEPS }),
    spec: c => onModel(c, { adapters: adapters(c, { canary: "v3" }) }),
    expect: { reasons: ["Conflict"], message: /already managed by ModelRollout o-/ },
  },
  {
    name: "a second rollout on the same HTTPRoute rule",
    fixture: poolsWithCanary,
    owner: c => ({ pools: pools(c, { canaryTemplate: undefined }), paused: true, steps: STEPS }),
    spec: c => ({ pools: pools(c, { canaryTemplate: undefined }), steps: STEPS }),
    expect: { reasons: ["Conflict"], message: /already managed by ModelRollout o-/ },
  },
]);

/** An InferencePool spec the InferencePool CRD refuses: creating the canary pool fails. */
add("canaryTemplate", [
  ...(
    [
      [{}, "empty"],
      [{ ...TEMPLATE, selector: "app=x" }, "selector is a string"],
      [{ ...TEMPLATE, targetPortNumber: 99999999 }, "port out of range"],
      [{ ...TEMPLATE, extensionRef: { name: long(300) } }, "a 300-character extensionRef"],
    ] as [Obj, string][]
  ).map(([template, what]) => ({
    name: `canaryTemplate ${what}`,
    fixture: poolsFixture,
    spec: (c: Ctx) => ({ pools: pools(c, { canaryTemplate: template }), steps: STEPS }),
    expect: { reasons: ["TargetUpdateRejected"] },
  })),
  {
    name: "canaryTemplate is a string",
    fixture: poolsFixture,
    spec: c => ({ pools: pools(c, { canaryTemplate: "spec" }), steps: STEPS }),
    expect: { refused: /spec\.pools\.canaryTemplate/ },
  },
  {
    name: "valid canaryTemplate with invalid PromQL: no canary pool is created",
    fixture: poolsFixture,
    spec: c => ({
      pools: pools(c),
      prometheus: { address: c.prom },
      steps: [{ setWeight: 10 }, { analysis: { metrics: [metric({ query: "up{" })] } }],
    }),
    expect: { reasons: GATE_ERRORS },
  },
  {
    name: "valid canaryTemplate with an unreachable Prometheus: no canary pool is created",
    fixture: poolsFixture,
    spec: c => ({
      pools: pools(c),
      prometheus: { address: "http://127.0.0.1:9", timeout: "1s" },
      steps: [{ setWeight: 10 }, { analysis: { metrics: [metric()] } }],
    }),
    expect: { reasons: ["PrometheusUnavailable"] },
  },
]);

add("unknown fields", [
  {
    name: "spec.foo",
    spec: c => onModel(c, { foo: "bar" }),
    expect: { refused: /unknown field "spec\.foo"/ },
  },
  {
    name: "a typo: setWeightt",
    spec: c => ({ adapters: adapters(c), steps: [{ setWeightt: 100 }] }),
    expect: { refused: /unknown field "spec\.steps\[0\]\.setWeightt"/ },
  },
  {
    name: "spec.adapters.namespace (another namespace's model)",
    spec: c => onModel(c, { adapters: adapters(c, { namespace: c.victim }) }),
    expect: { refused: /unknown field "spec\.adapters\.namespace"/ },
  },
  {
    name: "spec.prometheus.headers",
    spec: c =>
      stepGate(c, metric(), { prometheus: { address: c.prom, headers: { "X-Evil": "1" } } }),
    expect: { refused: /unknown field "spec\.prometheus\.headers"/ },
  },
  {
    name: "metric.eval",
    spec: c => stepGate(c, metric({ eval: "process.exit(1)" })),
    expect: { refused: /unknown field "spec\.steps\[1\]\.analysis\.metrics\[0\]\.eval"/ },
  },
]);

const ACTION = "rollouts.inference.dev/action";
add("action annotation", [
  ...(
    [
      ["rm -rf /", "a shell command"],
      ["PROMOTE", "upper case"],
      ["promote;abort", "two actions"],
      ["promote\nabort", "two lines"],
      ["", "empty"],
      ["💥", "an emoji"],
      [long(10_000, "p"), "10,000 characters"],
    ] as [string, string][]
  ).map(([value, what]) => ({
    name: `action ${what}`,
    spec: (c: Ctx) => onModel(c, { paused: true }),
    annotations: () => ({ [ACTION]: value }),
    expect: { actionRejected: true },
  })),
  {
    name: "action of 300 KB (annotations limit)",
    spec: c => onModel(c, { paused: true }),
    annotations: () => ({ [ACTION]: long(300_000, "p") }),
    expect: { refused: /metadata\.annotations: Too long/ },
  },
]);

// ---------------------------------------------------------------------------------------------
// Running it

let ns: TestNamespace;
let victim: TestNamespace;
let operator: WatchedOperator;
let fake: HostilePrometheus;
let before: TargetSnapshot;
const ctxs = new Map<Case, Ctx>();
const applied = new Map<Case, KubectlResult>();
const outcomes = new Map<Case, string>();
let finalRollouts = new Map<string, MRO>();
let windowLogLines: ReturnType<typeof readLog> = [];
let windowChanges = new Map<string, number>();
const started = Date.now();
let setupDone = 0;
let appliedAt = 0;
let reportedAfterMs = 0;

const caseName = (k: Case) => `${k.cls}: ${k.name}`;
const rolloutName = (c: Ctx) => `h-${c.id}`;

function ctxFor(i: number): Ctx {
  const id = `c${String(i).padStart(3, "0")}`;
  return {
    id,
    ns: ns.name,
    victim: victim.name,
    model: `m-${id}`,
    route: `r-${id}`,
    stablePool: `p-${id}-v1`,
    canaryPool: `p-${id}-v2`,
    prom: env().info.prometheusUrl,
    fake: mode => fake.address(mode, id),
  };
}

function rolloutObject(name: string, spec: unknown, annotations?: Record<string, string>) {
  return {
    apiVersion: "rollouts.inference.dev/v1alpha1",
    kind: "ModelRollout",
    metadata: { name, ...(annotations ? { annotations } : {}) },
    ...(spec === undefined ? {} : { spec }),
  };
}

const kubectl = (namespace: string, args: string[], input?: string) =>
  env().kubectl(["-n", namespace, ...args], input);
const list = (items: unknown[]) => JSON.stringify({ apiVersion: "v1", kind: "List", items });

function listRollouts(): Map<string, MRO> {
  const items = (
    JSON.parse(kubectl(ns.name, ["get", "modelrollouts", "-o", "json"])) as {
      items: MRO[];
    }
  ).items;
  return new Map(items.map(r => [r.metadata.name, r]));
}

/** What the operator reported: "Ready=False/<reason>", "Failed/<reason>", "ActionRejected". */
function outcomeOf(k: Case, r: MRO | undefined): string | undefined {
  const st = r?.status;
  if (!st) return undefined;
  if (k.expect.actionRejected && st.lastAction?.result === "Rejected") return "ActionRejected";
  const ready = st.conditions?.find(x => x.type === "Ready");
  if (ready?.status === "False") return `Ready=False/${ready.reason}`;
  if (st.phase === "Failed") {
    const why = st.conditions?.find(x => x.type === "Progressing")?.reason ?? "?";
    return `Failed/${why}`;
  }
  return undefined;
}

/** Phase, weight and Ready of a rollout, for failure messages. */
function summarize(r: MRO | undefined): string {
  const ready = r?.status?.conditions?.find(x => x.type === "Ready");
  return (
    `phase ${r?.status?.phase}, canaryWeight ${r?.status?.canaryWeight}, ` +
    `Ready ${ready?.status}/${ready?.reason}: ${ready?.message ?? r?.status?.message}`
  );
}

/** A rollout that moved traffic (or finished) can no longer be reported as expected. */
function movedTraffic(r: MRO | undefined): boolean {
  return (r?.status?.canaryWeight ?? 0) > 0 || r?.status?.phase === "Succeeded";
}

function meetsExpectation(k: Case, r: MRO | undefined): boolean {
  const out = outcomeOf(k, r);
  if (!out) return false;
  if (out === "ActionRejected") return true;
  const reason = out.slice(out.indexOf("/") + 1);
  const allowed = k.expect.reasons ?? [];
  if (!allowed.includes("*") && !allowed.includes(reason)) return false;
  if (k.expect.message) {
    const ready = r?.status?.conditions?.find(x => x.type === "Ready");
    const text = `${ready?.message ?? ""} ${r?.status?.message ?? ""}`;
    if (!k.expect.message.test(text)) return false;
  }
  return true;
}

beforeAll(async () => {
  ns = createTestNamespace("hostile");
  victim = createTestNamespace("hostile-victim");
  fake = await startHostilePrometheus();

  // The victim namespace: objects a rollout in `ns` must never reach.
  kubectl(
    victim.name,
    ["apply", "-f", "-"],
    list([
      {
        apiVersion: "inference.networking.x-k8s.io/v1alpha2",
        kind: "InferenceModel",
        metadata: { name: victimModel },
        spec: {
          modelName: victimModel,
          poolRef: { name: victimPool },
          targetModels: [{ name: "v1", weight: 100 }],
        },
      },
      pool(victimPool),
      route(victimRoute, victimPool),
    ]),
  );
  kubectl(victim.name, [
    "create",
    "secret",
    "generic",
    victimSecret,
    `--from-literal=token=${VICTIM_TOKEN}`,
  ]);
  kubectl(victim.name, ["label", "secret", victimSecret, `${GATE_CREDENTIALS_LABEL}=true`]);
  // Gate credentials in the rollouts' own namespace.
  kubectl(ns.name, [
    "create",
    "secret",
    "generic",
    "unlabelled",
    "--from-literal=token=UNLABELLED-TOKEN",
  ]);
  kubectl(ns.name, [
    "create",
    "secret",
    "generic",
    "labelled-false",
    "--from-literal=token=FALSE-TOKEN",
  ]);
  kubectl(ns.name, ["label", "secret", "labelled-false", `${GATE_CREDENTIALS_LABEL}=false`]);
  kubectl(ns.name, [
    "create",
    "secret",
    "generic",
    "labelled",
    "--from-literal=token=LABELLED-TOKEN",
  ]);
  kubectl(ns.name, ["label", "secret", "labelled", `${GATE_CREDENTIALS_LABEL}=true`]);

  // Every case's own targets, in one apply.
  cases.forEach((k, i) => ctxs.set(k, ctxFor(i)));
  const fixtures = cases.flatMap(k => (k.fixture ?? (c => [model(c)]))(ctxs.get(k)!));
  const unique = new Map(fixtures.map(o => [`${o.kind}/${(o.metadata as Obj).name}`, o]));
  kubectl(ns.name, ["apply", "-f", "-"], list([...unique.values()]));
  before = snapshotTargets([ns.name, victim.name]);

  operator = await startWatchedOperator({
    namespaces: [ns.name],
    kubeconfig: operatorKubeconfig(env().info),
    name: ns.name,
  });
  // Owners first: each starts (status.target) on its target before its rival arrives.
  const owners = cases.filter(k => k.owner);
  for (const k of owners) {
    const c = ctxs.get(k)!;
    kubectl(ns.name, ["apply", "-f", "-"], JSON.stringify(rolloutObject(`o-${c.id}`, k.owner!(c))));
  }
  await waitFor(
    "the owner rollouts to start on their targets",
    () => {
      const all = listRollouts();
      return owners.every(k => !!all.get(`o-${ctxs.get(k)!.id}`)?.status?.target);
    },
    60_000,
    () => operator.log,
  );
}, 180_000);

afterAll(async () => {
  const refused = cases.filter(k => applied.get(k) && !applied.get(k)!.ok).length;
  const byOutcome = new Map<string, number>();
  for (const k of cases) {
    const out = outcomes.get(k);
    if (out) byOutcome.set(out, (byOutcome.get(out) ?? 0) + 1);
  }
  const lines = [
    `[hostile] corpus: ${cases.length} specs in ${new Set(cases.map(k => k.cls)).size} classes; ${((Date.now() - started) / 1000).toFixed(0)} s`,
    `[hostile] set-up (targets, operator, owners) ${((setupDone - started) / 1000).toFixed(0)} s; applies (3 at a time) ${((appliedAt - setupDone) / 1000).toFixed(0)} s; every accepted spec reported ${(reportedAfterMs / 1000).toFixed(1)} s after the last apply`,
    ...[...new Set(cases.map(k => k.cls))].map(cls => {
      const of = cases.filter(k => k.cls === cls);
      const r = of.filter(k => applied.get(k) && !applied.get(k)!.ok).length;
      return `[hostile]   ${cls}: ${of.length} (refused ${r}, reported by the operator ${of.length - r})`;
    }),
    `[hostile] refused by the apiserver: ${refused}`,
    ...[...byOutcome.entries()].sort().map(([o, n]) => `[hostile] ${o}: ${n}`),
    `[hostile] accepted without a reported outcome: ${cases.filter(k => applied.get(k)?.ok && !outcomes.get(k)).length}`,
  ];
  process.stderr.write(`${lines.join("\n")}\n`);
  await operator?.stop();
  await fake?.close();
  await ns?.cleanup();
  await victim?.cleanup();
});

describe(`a corpus of hostile ModelRollout specs`, () => {
  it("has at least 100 cases, each with its own name", () => {
    expect(cases.length).toBeGreaterThanOrEqual(100);
    expect(new Set(cases.map(caseName)).size).toBe(cases.length);
  });

  it("applies every spec and waits until each is refused or reported", async () => {
    setupDone = Date.now();
    const results = await inBatches(
      cases.map(k => () => {
        const c = ctxs.get(k)!;
        const obj = rolloutObject(rolloutName(c), k.spec(c), k.annotations?.(c));
        return kubectlAsync(["-n", ns.name, "apply", "-f", "-"], JSON.stringify(obj));
      }),
      3,
    );
    cases.forEach((k, i) => applied.set(k, results[i]));
    const accepted = cases.filter(k => applied.get(k)!.ok);
    appliedAt = Date.now();
    let last = new Map<string, MRO>();
    const name = (k: Case) => rolloutName(ctxs.get(k)!);
    const pending = () =>
      accepted.filter(
        k => !meetsExpectation(k, last.get(name(k))) && !movedTraffic(last.get(name(k))),
      );
    const listed = (ks: Case[]) =>
      ks.map(k => `\n  ${caseName(k)} (${name(k)}): ${summarize(last.get(name(k)))}`).join("");
    // A rollout that moved traffic is a failure already: no need to wait for it.
    await waitFor(
      "every accepted rollout to be reported as expected",
      () => {
        last = listRollouts();
        return pending().length === 0;
      },
      180_000,
      () => listed(pending()),
      2000,
    );
    reportedAfterMs = Date.now() - appliedAt;
    const moved = accepted.filter(k => movedTraffic(last.get(name(k))));
    if (moved.length) throw new Error(`these rollouts moved traffic:${listed(moved)}`);
  }, 300_000);

  it("stays reported while it settles: no hot loop (status writes and log lines per rollout)", async () => {
    const from = logSize(operator.log);
    const seen = new Map<string, Set<string>>();
    for (let i = 0; i < 12; i++) {
      for (const [name, r] of listRollouts()) {
        if (!seen.has(name)) seen.set(name, new Set());
        seen.get(name)!.add(r.metadata.resourceVersion);
      }
      await new Promise(resolve => setTimeout(resolve, 1000));
    }
    windowLogLines = readLog(operator.log, from);
    windowChanges = new Map([...seen].map(([n, rvs]) => [n, rvs.size - 1]));
    finalRollouts = listRollouts();
    for (const k of cases) {
      const c = ctxs.get(k)!;
      const out = applied.get(k)?.ok ? outcomeOf(k, finalRollouts.get(rolloutName(c))) : undefined;
      if (out) outcomes.set(k, out);
    }
    const busy = [...windowChanges].filter(([, n]) => n > 3);
    expect(busy).toEqual([]);
    const perRollout = new Map<string, number>();
    for (const l of windowLogLines)
      if (l.rollout) perRollout.set(l.rollout, (perRollout.get(l.rollout) ?? 0) + 1);
    expect([...perRollout].filter(([, n]) => n > 12)).toEqual([]);
  }, 60_000);

  it.each(cases.map(k => [caseName(k), k] as const))("%s", async (_name, k) => {
    const c = ctxs.get(k)!;
    const res = applied.get(k);
    expect(res).toBeDefined();
    if (!res!.ok) {
      // (a) refused at apply: kubectl's message names the field.
      if (!k.expect.refused) throw new Error(`refused by the apiserver: ${res!.stderr}`);
      expect(res!.stderr).toMatch(k.expect.refused);
    } else {
      // (b) accepted, then reported by the operator, and never moved a weight.
      const r = finalRollouts.get(rolloutName(c));
      if (!k.expect.reasons && !k.expect.actionRejected)
        throw new Error(
          `the apiserver accepted it (expected a refusal matching ${k.expect.refused}); operator: ${outcomeOf(k, r)}`,
        );
      if (!meetsExpectation(k, r)) throw new Error(`not reported as expected: ${summarize(r)}`);
      expect(r?.status?.canaryWeight ?? 0).toBe(0);
      if (k.expect.actionRejected) {
        expect(r?.status?.phase).toBe("Paused");
        expect(r?.status?.lastAction?.result).toBe("Rejected");
      }
    }
    await k.check?.(c, finalRollouts.get(rolloutName(c)));
  });

  it("changed no target object in either namespace and created no canary pool", () => {
    const after = snapshotTargets([ns.name, victim.name]);
    expect(diffSnapshots(before, after)).toEqual([]);
  });

  it("never copied a hostile Prometheus reply into status or Events, and never sent a foreign token", () => {
    const statuses = kubectl(ns.name, ["get", "modelrollouts", "-o", "json"]);
    const events = kubectl(ns.name, ["get", "events", "-o", "json"]);
    expect(statuses).not.toContain(fake.leak);
    expect(events).not.toContain(fake.leak);
    const tokens = new Set(fake.requests.map(r => r.authorization).filter(Boolean));
    expect([...tokens]).toEqual([]);
  });

  it("the operator is still running, never crashed, and every failed reconcile is in status", () => {
    expect(operator.running()).toBe(true);
    expect(operator.exit()).toBeUndefined();
    const lines = readLog(operator.log);
    expect(crashLines(lines).map(l => l.raw)).toEqual([]);
    // A failed reconcile is reported (Ready=False ReconcileError or another reason), not only logged.
    const failed = lines.filter(l => /reconcile failed/.test(l.msg ?? ""));
    const silent = [...new Set(failed.map(l => l.rollout ?? "?"))].filter(key => {
      const r = finalRollouts.get(key.slice(key.indexOf("/") + 1));
      return r?.status?.conditions?.find(x => x.type === "Ready")?.status !== "False";
    });
    expect(silent).toEqual([]);
    const reasons = [
      ...new Set(failed.map(l => `${l.rollout}: ${l.msg?.replace(/^.*reconcile failed: /, "")}`)),
    ];
    if (reasons.length)
      process.stderr.write(
        `[hostile] reconcile failures (in status as ReconcileError):\n  ${reasons.join("\n  ")}\n`,
      );
    const inWindow = windowLogLines.filter(l => /reconcile failed/.test(l.msg ?? "")).length;
    expect(inWindow).toBeLessThanOrEqual(Math.max(10, finalRollouts.size / 4));
  });
});
