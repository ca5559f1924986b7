// What the demo deploys: the seed document's setup (pools, InferenceModels, HTTPRoute, with the
// seed's names) and the three ModelRollouts it plays. docs/install.md shows the same objects for a
// real cluster. Objects are plain JSON, applied with kubectl.
import { apiVersionOf, GATEWAY_GROUP, gvk, InferenceGroup } from "../../capabilities/api/constants";
import type {
  HTTPRoute,
  HTTPRouteMatch,
  InferenceModel,
  InferencePoolV1alpha2,
} from "../../capabilities/api/objects";

export const SEED = {
  stablePool: "mymodel-pool-v1",
  canaryPool: "mymodel-pool-v2",
  badPool: "mymodel-pool-v3",
  route: "inference-route",
  loraRoute: "travelhelper-route",
  gateway: "inference-gateway",
  model: "mymodel",
  loraModel: "travelhelper",
  loraInferenceModel: "loramodel",
  stableAdapter: "travel-helper-v1",
  canaryAdapter: "travel-helper-v2",
} as const;

export const ROLLOUTS = {
  pools: "qwen-to-deepseek",
  adapters: "travel-helper-v1-to-v2",
  bad: "deepseek-to-broken-build",
  upstream: "upstream-epp-v1-to-v2",
} as const;

/**
 * Scenario 4's world, beside the seed's: a v1 (`inference.networking.k8s.io`) InferencePool pair,
 * each pool served by the upstream endpoint picker (GIE v1.5.0 `epp`, which watches v1 pools
 * only), behind its own HTTPRoute that matches the model name. Prometheus scrapes each EPP with
 * the target label `pool`; the rollout's built-in gates read the EPP's metrics.
 */
export const UPSTREAM = {
  model: "reviewer",
  route: "reviewer-route",
  stablePool: "reviewer-pool-v1",
  canaryPool: "reviewer-pool-v2",
} as const;

/** The Service each v1 pool's endpointPickerRef names: the upstream EPP behind it. */
export const UPSTREAM_EPP_SERVICES: Record<string, string> = {
  [UPSTREAM.stablePool]: `${UPSTREAM.stablePool}-epp`,
  [UPSTREAM.canaryPool]: `${UPSTREAM.canaryPool}-epp`,
};

/**
 * Each pool's endpoint picker Service (the pool's extensionRef, port 9002 by the v1alpha2 default):
 * the local gateway calls the picker behind it over ext_proc, as Envoy would.
 */
export const PICKER_SERVICES: Record<string, string> = {
  [SEED.stablePool]: "mymodel-v1-ext-proc",
  [SEED.canaryPool]: "mymodel-v2-ext-proc",
  [SEED.badPool]: "mymodel-v3-ext-proc",
};

/**
 * Where the Qwen server would load travel-helper-v2 from (vLLM's lora_path). The demo's Qwen pod
 * starts with travel-helper-v1 only: scenario 2 asks the operator to load the canary adapter
 * (spec.adapters.readiness.load) and holds its first weight until the pod serves it.
 */
export const CANARY_ADAPTER_PATH = "/adapters/travel-helper-v2";

/** The percent of requests the broken build's model server fails. */
export const BAD_FAILURE_RATE = 40;

export interface DemoPod {
  name: string;
  labels: Record<string, string>;
  model: string;
  loraAdapters?: string[];
  failureInjectionRate?: number;
  timeToFirstTokenMs: number;
  interTokenLatencyMs: number;
}

/**
 * The model-server pods: the seed's Qwen (with travel-helper-v1 only: v2 is loaded by the operator
 * during scenario 2) and DeepSeek, plus a broken build.
 */
export const PODS: DemoPod[] = [
  {
    name: "qwen-0",
    labels: { app: "custom-serving", release: "qwen" },
    model: "Qwen/Qwen-2.5-7B-Instruct",
    loraAdapters: [SEED.stableAdapter],
    timeToFirstTokenMs: 20,
    interTokenLatencyMs: 4,
  },
  {
    name: "deepseek-r1-0",
    labels: { app: "custom-serving", release: "deepseek-r1" },
    model: "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    timeToFirstTokenMs: 25,
    interTokenLatencyMs: 4,
  },
  {
    name: "deepseek-r1-broken-0",
    labels: { app: "custom-serving", release: "deepseek-r1-broken" },
    model: "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    failureInjectionRate: BAD_FAILURE_RATE,
    timeToFirstTokenMs: 25,
    interTokenLatencyMs: 4,
  },
];

/** Scenario 4's model servers: one per v1 pool, both answering as `reviewer` alike. */
export const UPSTREAM_PODS: DemoPod[] = [
  {
    name: "reviewer-v1-0",
    labels: { app: "reviewer-serving", pool: UPSTREAM.stablePool },
    model: "Qwen/Qwen-2.5-7B-Instruct",
    timeToFirstTokenMs: 20,
    interTokenLatencyMs: 4,
  },
  {
    name: "reviewer-v2-0",
    labels: { app: "reviewer-serving", pool: UPSTREAM.canaryPool },
    model: "Qwen/Qwen-2.5-7B-Instruct",
    timeToFirstTokenMs: 20,
    interTokenLatencyMs: 4,
  },
];

const POOL_GROUP = InferenceGroup.xK8s;
const poolRef = (name: string) => ({ group: POOL_GROUP, kind: "InferencePool", name });

function pool(name: string, release: string, epp: string): InferencePoolV1alpha2 {
  return {
    apiVersion: apiVersionOf(gvk.inferencePoolV1alpha2),
    kind: "InferencePool",
    metadata: { name },
    spec: {
      extensionRef: { group: "", kind: "Service", name: epp },
      selector: { app: "custom-serving", release },
      targetPortNumber: 8000,
    },
  };
}

function inferenceModel(
  name: string,
  modelName: string,
  poolName: string,
  targets: { name: string; weight: number }[],
): InferenceModel {
  return {
    apiVersion: apiVersionOf(gvk.inferenceModel),
    kind: "InferenceModel",
    metadata: { name },
    spec: { criticality: "Critical", modelName, poolRef: poolRef(poolName), targetModels: targets },
  };
}

/** An HTTPRoute on the seed Gateway's listener whose one rule sends everything to the stable pool. */
function route(name: string, matches: HTTPRouteMatch[]): HTTPRoute {
  return {
    apiVersion: apiVersionOf(gvk.httpRoute),
    kind: "HTTPRoute",
    metadata: { name },
    spec: {
      parentRefs: [
        { group: GATEWAY_GROUP, kind: "Gateway", name: SEED.gateway, sectionName: "llm-gw" },
      ],
      rules: [{ backendRefs: [{ ...poolRef(SEED.stablePool), weight: 1 }], matches }],
    },
  };
}

/**
 * The seed's objects as they are before the two releases: both pools with their InferenceModels
 * (seed "Preparations" and scenario 1 steps 1-2), the LoRA InferenceModel serving travel-helper-v1
 * only, the Gateway and the seed's HTTPRoute sending everything to mymodel-pool-v1.
 *
 * One addition: `travelhelper-route` keeps requests for `travelhelper` on the Qwen pool, where its
 * LoRA adapters live, by matching the X-Gateway-Model-Name header that the Body-Based Routing
 * extension sets from the body. Without it, moving `inference-route` to DeepSeek would also move
 * travelhelper requests to pods that do not have the adapters. It also matches the adapters' own
 * names, so that a request naming one (the probe gate's, pinned to one side) reaches them too.
 */
export function seedObjects(): object[] {
  return [
    pool(SEED.stablePool, "qwen", PICKER_SERVICES[SEED.stablePool]),
    inferenceModel("mymodel-v1", SEED.model, SEED.stablePool, [{ name: SEED.model, weight: 100 }]),
    pool(SEED.canaryPool, "deepseek-r1", PICKER_SERVICES[SEED.canaryPool]),
    inferenceModel("mymodel-v2", SEED.model, SEED.canaryPool, [{ name: SEED.model, weight: 100 }]),
    inferenceModel(SEED.loraInferenceModel, SEED.loraModel, SEED.stablePool, [
      { name: SEED.stableAdapter, weight: 100 },
    ]),
    {
      apiVersion: `${GATEWAY_GROUP}/v1`,
      kind: "Gateway",
      metadata: { name: SEED.gateway },
      spec: {
        gatewayClassName: "inference-gateway",
        listeners: [{ name: "llm-gw", protocol: "HTTP", port: 8080 }],
      },
    },
    route(SEED.route, [
      { path: { type: "PathPrefix", value: "/v1/completions" } },
      { path: { type: "PathPrefix", value: "/v1/chat/completions" } },
    ]),
    // Same paths as inference-route: with equal paths, the header match is more specific.
    route(
      SEED.loraRoute,
      ["/v1/completions", "/v1/chat/completions"].flatMap(value =>
        [SEED.loraModel, SEED.stableAdapter, SEED.canaryAdapter].map(model => ({
          path: { type: "PathPrefix" as const, value },
          headers: [{ type: "Exact" as const, name: "X-Gateway-Model-Name", value: model }],
        })),
      ),
    ),
  ];
}

/**
 * Scenario 4's objects: the two v1 InferencePools (endpointPickerRef: the upstream EPP's Service)
 * and HTTPRoute reviewer-route, which takes the requests for `reviewer` (the model-name header,
 * more specific than inference-route's paths) to reviewer-pool-v1.
 */
export function upstreamObjects(): object[] {
  const v1Pool = (name: string) => ({
    apiVersion: apiVersionOf(gvk.inferencePoolV1),
    kind: "InferencePool",
    metadata: { name },
    spec: {
      selector: { matchLabels: { app: "reviewer-serving", pool: name } },
      targetPorts: [{ number: 8000 }],
      endpointPickerRef: { name: UPSTREAM_EPP_SERVICES[name], port: { number: 9002 } },
    },
  });
  const route: HTTPRoute = {
    apiVersion: apiVersionOf(gvk.httpRoute),
    kind: "HTTPRoute",
    metadata: { name: UPSTREAM.route },
    spec: {
      parentRefs: [
        { group: GATEWAY_GROUP, kind: "Gateway", name: SEED.gateway, sectionName: "llm-gw" },
      ],
      rules: [
        {
          backendRefs: [
            {
              group: InferenceGroup.k8s,
              kind: "InferencePool",
              name: UPSTREAM.stablePool,
              weight: 1,
            },
          ],
          matches: ["/v1/completions", "/v1/chat/completions"].map(value => ({
            path: { type: "PathPrefix", value },
            headers: [{ type: "Exact", name: "X-Gateway-Model-Name", value: UPSTREAM.model }],
          })),
        },
      ],
    },
  };
  return [v1Pool(UPSTREAM.stablePool), v1Pool(UPSTREAM.canaryPool), route];
}

/** Canary error ratio below 5 %, checked every few seconds while the canary takes traffic. */
function errorRateGate(
  window: string,
  minRequests: number,
  interval: string,
  initialDelay: string,
) {
  return {
    name: "canary-error-rate",
    template: "error-rate",
    args: { maxRatio: "0.05", minRequests: String(minRequests), window },
    interval,
    initialDelay,
    // Too little canary traffic yet is Inconclusive; tolerate a few before holding the rollout.
    inconclusiveLimit: 6,
  };
}

/** Step gates measure twice, 3 s apart; one Inconclusive (too little data yet) is tolerated. */
const twice = { interval: "3s", count: 2, inconclusiveLimit: 1 };

/**
 * Scenario 1 gate: the share of `mymodel` requests the canary pool really served (picker metrics,
 * this namespace only) must be within `tolerance` points of the weight just written. It catches a
 * gateway that ignores the weights — a known trap with two InferencePools in one rule. About 400
 * requests in the window: 6 points at 10 % and 10 points at 50 % are 4 standard deviations of a
 * random split, and 0 % observed at weight 10 still fails.
 */
function observedSplitGate(window: string, tolerance: number) {
  const requests = (who: string) =>
    `sum(increase(inference_objective_request_total{namespace="{{namespace}}",model_name="${SEED.model}",pool="{{${who}}}"}[${window}]))`;
  return {
    name: "observed-split",
    query: `abs(100 * ${requests("canary")} / (${requests("canary")} + ${requests("stable")}) - {{weight}})`,
    successCondition: `result[0] <= ${tolerance}`,
    failureCondition: `result[0] > ${tolerance}`,
  };
}

/** Scenario 1: mymodel-pool-v1 (Qwen) -> mymodel-pool-v2 (DeepSeek) on the seed's HTTPRoute. */
export function poolsRollout(prometheus: string, pause = "20s") {
  const stepGate = (tolerance: number) => ({
    analysis: {
      metrics: [
        {
          name: "canary-traffic",
          template: "min-request-count",
          args: { minRequests: "20", window: pause },
          ...twice,
        },
        { ...observedSplitGate(pause, tolerance), ...twice },
      ],
    },
  });
  return {
    apiVersion: "rollouts.inference.dev/v1alpha1",
    kind: "ModelRollout",
    metadata: { name: ROLLOUTS.pools },
    spec: {
      prometheus: { address: prometheus },
      pools: { httpRoute: SEED.route, stable: SEED.stablePool, canary: SEED.canaryPool },
      analysis: { metrics: [errorRateGate("20s", 20, "5s", "10s")] },
      steps: [
        { setWeight: 10 },
        { pause: { duration: pause } },
        stepGate(6),
        { setWeight: 50 },
        { pause: { duration: pause } },
        stepGate(10),
        { setWeight: 100 },
      ],
    },
  };
}

/**
 * The probe gate of scenario 2: a few chat requests through the gateway to each adapter by name
 * (the seed's curl, automated), judged on status, served model, latency and a non-empty answer.
 * Sent before the first weight and every 20 s after; 2 requests per side keep the observed split
 * of the traffic-split gate (150 requests per window) nearly untouched.
 */
export function probeGate(gateway: string) {
  return {
    name: "adapter-answers",
    interval: "20s",
    probe: {
      url: `${gateway}/v1/chat/completions`,
      prompts: ["Plan a weekend in Lisbon.", "What should I pack for Iceland in March?"],
      requests: 2,
      rate: 4,
      maxTokens: 16,
      timeout: "10s",
      expect: { status: 200, regex: "\\w", maxLatency: "5s" },
    },
  };
}

/**
 * Scenario 2: travel-helper-v1 -> travel-helper-v2 in InferenceModel loramodel; with `gateway`,
 * the background analysis also probes both adapters' answers (probeGate).
 */
export function adaptersRollout(prometheus: string, pause = "20s", gateway?: string) {
  const stepGate = {
    analysis: {
      metrics: [
        {
          name: "traffic-split",
          template: "traffic-split",
          args: { window: pause, minRequests: "150" },
          ...twice,
        },
      ],
    },
  };
  return {
    apiVersion: "rollouts.inference.dev/v1alpha1",
    kind: "ModelRollout",
    metadata: { name: ROLLOUTS.adapters },
    spec: {
      prometheus: { address: prometheus },
      adapters: {
        inferenceModel: SEED.loraInferenceModel,
        stable: SEED.stableAdapter,
        canary: SEED.canaryAdapter,
        // Every Ready pod of mymodel-pool-v1 must list travel-helper-v2 before it gets weight;
        // the operator loads it where it is missing (vLLM's POST /v1/load_lora_adapter).
        readiness: { load: { path: CANARY_ADAPTER_PATH } },
      },
      analysis: {
        metrics: [errorRateGate("20s", 20, "5s", "10s"), ...(gateway ? [probeGate(gateway)] : [])],
      },
      steps: [
        { setWeight: 10 },
        { pause: { duration: pause } },
        stepGate,
        { setWeight: 50 },
        { pause: { duration: pause } },
        stepGate,
        { setWeight: 100 },
      ],
    },
  };
}

/**
 * The bad version: a broken DeepSeek build in a new pool the operator creates from canaryTemplate
 * (cloning mymodel-v2's InferenceModel for it). Its server fails 40 % of requests, the background
 * error-rate gate fails, and the operator rolls back to mymodel-pool-v2 and deletes the pool.
 */
export function badRollout(prometheus: string) {
  return {
    apiVersion: "rollouts.inference.dev/v1alpha1",
    kind: "ModelRollout",
    metadata: { name: ROLLOUTS.bad },
    spec: {
      prometheus: { address: prometheus },
      pools: {
        httpRoute: SEED.route,
        stable: SEED.canaryPool,
        canary: SEED.badPool,
        canaryTemplate: {
          extensionRef: { group: "", kind: "Service", name: PICKER_SERVICES[SEED.badPool] },
          selector: { app: "custom-serving", release: "deepseek-r1-broken" },
          targetPortNumber: 8000,
        },
      },
      postRollout: { unusedPool: "Delete" },
      analysis: { metrics: [errorRateGate("15s", 10, "2s", "3s")] },
      steps: [
        { setWeight: 20 },
        { pause: { duration: "60s" } },
        { setWeight: 50 },
        { pause: { duration: "60s" } },
        { setWeight: 100 },
      ],
    },
  };
}

/**
 * Scenario 4: reviewer-pool-v1 -> reviewer-pool-v2 (v1 pools, upstream EPP) on reviewer-route,
 * 20 -> 50 -> 100, each step gated on the upstream EPP's own metrics (metricsSource upstream-epp,
 * the pool from the scrape's target label): enough canary requests, and the canary's p95 request
 * latency at most 3x the stable one's.
 */
export function upstreamRollout(prometheus: string, pause = "20s") {
  const gate = { metricsSource: "upstream-epp", interval: "3s", count: 2, inconclusiveLimit: 3 };
  const args = { minRequests: "20", window: "30s", namespaceLabel: "namespace" };
  const stepGate = {
    analysis: {
      metrics: [
        { name: "canary-traffic", template: "min-request-count", args, ...gate },
        {
          name: "latency",
          template: "latency-p95-ratio",
          args: { ...args, maxRatio: "3" },
          ...gate,
        },
      ],
    },
  };
  return {
    apiVersion: "rollouts.inference.dev/v1alpha1",
    kind: "ModelRollout",
    metadata: { name: ROLLOUTS.upstream },
    spec: {
      prometheus: { address: prometheus },
      pools: {
        httpRoute: UPSTREAM.route,
        stable: UPSTREAM.stablePool,
        canary: UPSTREAM.canaryPool,
      },
      steps: [
        { setWeight: 20 },
        { pause: { duration: pause } },
        stepGate,
        { setWeight: 50 },
        { pause: { duration: pause } },
        stepGate,
        { setWeight: 100 },
      ],
    },
  };
}
