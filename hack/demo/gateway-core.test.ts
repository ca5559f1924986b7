import {
  applyHeaderMutation,
  attachedTo,
  chooseBackend,
  describeWeights,
  GatewayRequest,
  modelOfBody,
  MODEL_NAME_HEADER,
  pathPrefixMatches,
  Route,
  RouteRule,
  selectRule,
  destinationsOf,
  pickerRefOf,
  PodObject,
  PoolObject,
  serviceAddresses,
  ServiceObject,
} from "./gateway-core";

const req = (
  path: string,
  headers: Record<string, string> = {},
  method = "POST",
): GatewayRequest => ({
  method,
  path,
  headers,
  query: new URLSearchParams(),
});

const route = (name: string, rules: RouteRule[], created = "2026-01-01T00:00:00Z"): Route => ({
  metadata: { name, namespace: "ns", creationTimestamp: created },
  spec: { parentRefs: [{ name: "inference-gateway" }], rules },
});

// The seed's route plus a model-name route, as the demo deploys them.
const seedRoute = route("inference-route", [
  {
    backendRefs: [
      {
        group: "inference.networking.x-k8s.io",
        kind: "InferencePool",
        name: "mymodel-pool-v1",
        weight: 90,
      },
      {
        group: "inference.networking.x-k8s.io",
        kind: "InferencePool",
        name: "mymodel-pool-v2",
        weight: 10,
      },
    ],
    matches: [
      { path: { type: "PathPrefix", value: "/v1/completions" } },
      { path: { type: "PathPrefix", value: "/v1/chat/completions" } },
    ],
  },
]);
const modelRoute = route(
  "travelhelper-route",
  [
    {
      backendRefs: [
        { group: "inference.networking.x-k8s.io", kind: "InferencePool", name: "mymodel-pool-v1" },
      ],
      matches: [
        {
          path: { type: "PathPrefix", value: "/v1/chat/completions" },
          headers: [{ type: "Exact", name: "X-Gateway-Model-Name", value: "travelhelper" }],
        },
      ],
    },
  ],
  "2026-02-01T00:00:00Z",
);

describe("selectRule", () => {
  it("sends a request with the model-name header to the more specific header rule, others to the weighted rule", () => {
    const routes = [seedRoute, modelRoute];
    expect(
      selectRule(routes, req("/v1/chat/completions", { [MODEL_NAME_HEADER]: "travelhelper" }))
        ?.route.metadata.name,
    ).toBe("travelhelper-route");
    expect(
      selectRule(routes, req("/v1/chat/completions", { [MODEL_NAME_HEADER]: "mymodel" }))?.route
        .metadata.name,
    ).toBe("inference-route");
    expect(selectRule(routes, req("/v1/completions"))?.route.metadata.name).toBe("inference-route");
  });

  it("matches path prefixes element by element and answers nothing for unmatched paths", () => {
    expect(selectRule([seedRoute], req("/v1/completionsX"))).toBeUndefined();
    expect(selectRule([seedRoute], req("/other"))).toBeUndefined();
    expect(pathPrefixMatches("/v1/", "/v1/x")).toBe(true);
    expect(pathPrefixMatches("/", "/anything")).toBe(true);
    expect(pathPrefixMatches("/v1", "/v10")).toBe(false);
  });

  it("prefers an exact path over a longer prefix, a longer prefix over a shorter one", () => {
    const r = route("r", [
      {
        name: "short",
        matches: [{ path: { type: "PathPrefix", value: "/v1" } }],
        backendRefs: [{ name: "a" }],
      },
      {
        name: "long",
        matches: [{ path: { type: "PathPrefix", value: "/v1/chat" } }],
        backendRefs: [{ name: "b" }],
      },
      {
        name: "exact",
        matches: [{ path: { type: "Exact", value: "/v1/chat/completions" } }],
        backendRefs: [{ name: "c" }],
      },
    ]);
    expect(selectRule([r], req("/v1/chat/completions"))?.rule.name).toBe("exact");
    expect(selectRule([r], req("/v1/chat/x"))?.rule.name).toBe("long");
    expect(selectRule([r], req("/v1/models"))?.rule.name).toBe("short");
  });

  it("breaks ties by the oldest route, then by name, then by rule order; a rule without matches matches every path", () => {
    const older = route("zzz", [{ backendRefs: [{ name: "old" }] }], "2025-01-01T00:00:00Z");
    const newer = route("aaa", [{ backendRefs: [{ name: "new" }] }], "2026-01-01T00:00:00Z");
    expect(selectRule([newer, older], req("/x"))?.route.metadata.name).toBe("zzz");
    const sameAge = route(
      "bbb",
      [{ backendRefs: [{ name: "first" }] }, { backendRefs: [{ name: "second" }] }],
      "2026-01-01T00:00:00Z",
    );
    expect(selectRule([sameAge, newer], req("/x"))?.route.metadata.name).toBe("aaa");
    expect(selectRule([sameAge], req("/x"))?.ruleIndex).toBe(0);
  });

  it("honours method and regular-expression header matches", () => {
    const r = route("r", [
      { name: "get", matches: [{ method: "GET" }], backendRefs: [{ name: "a" }] },
      {
        name: "lora",
        matches: [
          { headers: [{ type: "RegularExpression", name: MODEL_NAME_HEADER, value: "travel.*" }] },
        ],
        backendRefs: [{ name: "b" }],
      },
    ]);
    expect(selectRule([r], req("/x", {}, "GET"))?.rule.name).toBe("get");
    expect(selectRule([r], req("/x", { [MODEL_NAME_HEADER]: "travelhelper" }))?.rule.name).toBe(
      "lora",
    );
    expect(selectRule([r], req("/x", { [MODEL_NAME_HEADER]: "xtravel" }))).toBeUndefined();
  });
});

describe("chooseBackend", () => {
  const refs = seedRoute.spec!.rules![0].backendRefs!;

  it("draws in proportion to the weights", () => {
    expect(chooseBackend(refs, () => 0)?.name).toBe("mymodel-pool-v1");
    expect(chooseBackend(refs, () => 0.899)?.name).toBe("mymodel-pool-v1");
    expect(chooseBackend(refs, () => 0.9)?.name).toBe("mymodel-pool-v2");
    expect(chooseBackend(refs, () => 0.9999)?.name).toBe("mymodel-pool-v2");
    let seed = 1;
    const lcg = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    let canary = 0;
    for (let i = 0; i < 10000; i++)
      if (chooseBackend(refs, lcg)?.name === "mymodel-pool-v2") canary++;
    expect(canary).toBeGreaterThan(850);
    expect(canary).toBeLessThan(1150);
  });

  it("never picks weight 0, defaults an unset weight to 1, and gives up when every weight is 0", () => {
    expect(
      chooseBackend(
        [
          { name: "a", weight: 0 },
          { name: "b", weight: 5 },
        ],
        () => 0,
      )?.name,
    ).toBe("b");
    expect(chooseBackend([{ name: "a" }, { name: "b" }], () => 0.6)?.name).toBe("b");
    expect(chooseBackend([{ name: "a", weight: 0 }], () => 0.5)).toBeUndefined();
    expect(chooseBackend([], () => 0.5)).toBeUndefined();
  });
});

describe("helpers", () => {
  it("keeps only routes attached to the gateway", () => {
    const other: Route = {
      metadata: { name: "o" },
      spec: { parentRefs: [{ name: "another-gateway" }], rules: [] },
    };
    expect(attachedTo([seedRoute, other], "inference-gateway").map(r => r.metadata.name)).toEqual([
      "inference-route",
    ]);
  });

  it("reads the model of an OpenAI body, and nothing from anything else", () => {
    expect(modelOfBody(Buffer.from('{"model":"travelhelper","messages":[]}'))).toBe("travelhelper");
    expect(modelOfBody(Buffer.from("not json"))).toBeUndefined();
    expect(modelOfBody(Buffer.from('{"model":42}'))).toBeUndefined();
  });

  it("describes a rule's weights with shares when they do not add up to 100", () => {
    expect(describeWeights(seedRoute.spec!.rules![0])).toBe(
      "mymodel-pool-v1=90 mymodel-pool-v2=10",
    );
    expect(
      describeWeights({
        backendRefs: [
          { name: "a", weight: 1 },
          { name: "b", weight: 3 },
        ],
      }),
    ).toBe("a=1 (25%) b=3 (75%)");
  });
});

describe("the endpoint picker of an InferencePool", () => {
  it("v1 endpointPickerRef: Service name and port number; FailClose by default", () => {
    const pool: PoolObject = {
      metadata: { name: "p", namespace: "ns" },
      spec: { endpointPickerRef: { name: "p-epp", port: { number: 9002 } } },
    };
    expect(pickerRefOf(pool)).toEqual({ service: "p-epp", port: 9002, failureMode: "FailClose" });
    pool.spec!.endpointPickerRef!.failureMode = "FailOpen";
    expect(pickerRefOf(pool)).toMatchObject({ failureMode: "FailOpen" });
  });

  it("v1alpha2 extensionRef: portNumber, 9002 when unset (the CRD's documented default)", () => {
    expect(
      pickerRefOf({ spec: { extensionRef: { group: "", kind: "Service", name: "x" } } }),
    ).toEqual({ service: "x", port: 9002, failureMode: "FailClose" });
    expect(pickerRefOf({ spec: { extensionRef: { name: "x", portNumber: 9100 } } })).toMatchObject({
      port: 9100,
    });
  });

  it("errors name the pool, the field and the fix", () => {
    const meta = { name: "p", namespace: "ns" };
    expect(pickerRefOf({ metadata: meta, spec: {} })).toEqual({
      error:
        "InferencePool ns/p has no endpoint picker (set spec.endpointPickerRef in v1, spec.extensionRef in v1alpha2)",
    });
    expect(
      pickerRefOf({
        metadata: meta,
        spec: { endpointPickerRef: { name: "e", kind: "Backend", group: "x.io" } },
      }),
    ).toEqual({
      error:
        "InferencePool ns/p: spec.endpointPickerRef names Backend.x.io e; only a core Service can be followed",
    });
    expect(pickerRefOf({ metadata: meta, spec: { endpointPickerRef: { name: "e" } } })).toEqual({
      error: "InferencePool ns/p: spec.endpointPickerRef.port.number is required for a Service",
    });
  });
});

describe("a Service's addresses (selector -> Ready Pods -> targetPort)", () => {
  const ref = { service: "epp", port: 9002, failureMode: "FailClose" as const };
  const service = (targetPort?: number | string): ServiceObject => ({
    metadata: { name: "epp" },
    spec: { selector: { app: "epp" }, ports: [{ name: "grpc", port: 9002, targetPort }] },
  });
  const pod = (name: string, ip: string, ready: boolean, labels = { app: "epp" }): PodObject => ({
    metadata: { name, labels },
    spec: { containers: [{ ports: [{ name: "grpc-ext-proc", containerPort: 31000 }] }] },
    status: { podIP: ip, conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
  });

  it("Ready matching Pods at the numeric, named or implied target port", () => {
    const pods = [
      pod("a", "127.0.0.1", true),
      pod("b", "127.0.0.2", false),
      pod("c", "127.0.0.3", true, { app: "other" }),
      pod("d", "fd00::1", true),
    ];
    expect(serviceAddresses("ns", ref, [service(31000)], pods)).toEqual([
      "127.0.0.1:31000",
      "[fd00::1]:31000",
    ]);
    expect(serviceAddresses("ns", ref, [service("grpc-ext-proc")], pods)).toEqual([
      "127.0.0.1:31000",
      "[fd00::1]:31000",
    ]);
    expect(serviceAddresses("ns", ref, [service()], [pods[0]])).toEqual(["127.0.0.1:9002"]);
  });

  it("says what is missing", () => {
    expect(serviceAddresses("ns", ref, [], [])).toEqual({
      error: "Service ns/epp (the endpoint picker) does not exist",
    });
    expect(serviceAddresses("ns", { ...ref, port: 80 }, [service(1)], [])).toEqual({
      error: "Service ns/epp has no port 80 (its ports: 9002)",
    });
    expect(serviceAddresses("ns", ref, [service(1)], [pod("b", "127.0.0.2", false)])).toEqual({
      error:
        "Service ns/epp port 9002 has no ready endpoint (no Ready Pod with a podIP matches app=epp)",
    });
    expect(
      serviceAddresses(
        "ns",
        ref,
        [{ metadata: { name: "epp" }, spec: { type: "ExternalName" } }],
        [],
      ),
    ).toEqual({
      error: "Service ns/epp is an ExternalName Service, which the Inference Extension forbids",
    });
  });
});

describe("the picker's decision", () => {
  it("envoy.lb metadata first, else the header; a comma list is the fallbacks in order", () => {
    expect(destinationsOf("10.0.0.1:8000", "10.0.0.2:8000")).toEqual(["10.0.0.1:8000"]);
    expect(destinationsOf(undefined, "10.0.0.2:8000, 10.0.0.3:8000")).toEqual([
      "10.0.0.2:8000",
      "10.0.0.3:8000",
    ]);
    expect(destinationsOf("", "")).toEqual([]);
  });

  it("header mutations: removals then sets, never pseudo-headers or protected ones", () => {
    const out = applyHeaderMutation(
      { "content-type": "application/json", "x-drop": "1", "content-length": "10" },
      {
        set: [
          [":path", "/elsewhere"],
          ["X-Gateway-Destination-Endpoint", "10.0.0.1:8000"],
          ["Content-Length", "99"],
        ],
        remove: ["x-drop"],
      },
      new Set(["content-length"]),
    );
    expect(out).toEqual({
      "content-type": "application/json",
      "content-length": "10",
      "x-gateway-destination-endpoint": "10.0.0.1:8000",
    });
  });
});
