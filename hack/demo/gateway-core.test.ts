import {
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
