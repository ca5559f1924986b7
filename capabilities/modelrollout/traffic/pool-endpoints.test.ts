import { describe, expect, it } from "@jest/globals";
import {
  isReadyPod,
  modelsListAdapter,
  poolEndpoints,
  poolSelection,
  type PodLike,
} from "./pool-endpoints";

const pod = (name: string, labels: Record<string, string>, ip?: string, ready = true): PodLike => ({
  metadata: { name, labels },
  status: {
    ...(ip ? { podIP: ip } : {}),
    conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
  },
});

describe("poolSelection", () => {
  it("reads v1alpha2 (selector map, targetPortNumber) and v1 (matchLabels, targetPorts)", () => {
    expect(poolSelection({ spec: { selector: { app: "a" }, targetPortNumber: 8000 } })).toEqual({
      selector: { app: "a" },
      ports: [8000],
    });
    expect(
      poolSelection({
        spec: {
          selector: { matchLabels: { app: "b" } },
          targetPorts: [{ number: 8000 }, { number: 8001 }],
        },
      }),
    ).toEqual({ selector: { app: "b" }, ports: [8000, 8001] });
  });

  it("refuses an empty selector (every pod) and a pool without a port", () => {
    expect(poolSelection({ spec: { selector: {}, targetPortNumber: 8000 } })).toEqual({
      problem: "its selector is empty",
    });
    expect(poolSelection({ spec: { selector: { app: "a" } } })).toEqual({
      problem: "it has no target port",
    });
    expect(poolSelection({ spec: { selector: { app: "a" }, targetPortNumber: 70000 } })).toEqual({
      problem: "it has no target port",
    });
  });
});

describe("poolEndpoints", () => {
  const sel = { selector: { app: "a" }, ports: [8000] };

  it("keeps the Ready pods with an IP the selector matches, sorted", () => {
    const pods = [
      pod("z", { app: "a" }, "127.0.0.3"),
      pod("b", { app: "a" }, "127.0.0.2"),
      pod("other", { app: "x" }, "127.0.0.4"),
      pod("not-ready", { app: "a" }, "127.0.0.5", false),
      pod("no-ip", { app: "a" }),
      {
        ...pod("deleting", { app: "a" }, "127.0.0.6"),
        metadata: {
          name: "deleting",
          labels: { app: "a" },
          deletionTimestamp: "2026-01-01T00:00:00Z",
        },
      },
    ];
    expect(poolEndpoints(sel, pods)).toEqual([
      { key: "b", pod: "b", url: "http://127.0.0.2:8000" },
      { key: "z", pod: "z", url: "http://127.0.0.3:8000" },
    ]);
  });

  it("names pod:port with several target ports, and brackets IPv6", () => {
    expect(
      poolEndpoints({ selector: { app: "a" }, ports: [8000, 8001] }, [
        pod("p", { app: "a" }, "fd00::1"),
      ]),
    ).toEqual([
      { key: "p:8000", pod: "p", url: "http://[fd00::1]:8000" },
      { key: "p:8001", pod: "p", url: "http://[fd00::1]:8001" },
    ]);
  });

  it("isReadyPod needs the Ready condition True", () => {
    expect(isReadyPod(pod("p", {}, "127.0.0.2"))).toBe(true);
    expect(isReadyPod(pod("p", {}, "127.0.0.2", false))).toBe(false);
  });
});

describe("modelsListAdapter", () => {
  const body = {
    object: "list",
    data: [
      { id: "mymodel", object: "model" },
      {
        id: "travel-helper-v1",
        object: "model",
        parent: "mymodel",
        root: "/adapters/travel-helper-v1",
      },
    ],
  };
  it("finds the adapter by id", () => {
    expect(modelsListAdapter(body, "travel-helper-v1")).toBe(true);
    expect(modelsListAdapter(body, "travel-helper-v2")).toBe(false);
  });
  it("is undefined for anything that is no model list", () => {
    expect(modelsListAdapter({ error: "x" }, "a")).toBeUndefined();
    expect(modelsListAdapter([], "a")).toBeUndefined();
    expect(modelsListAdapter(null, "a")).toBeUndefined();
  });
});
