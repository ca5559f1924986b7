// Issue 15.5, against the real control plane and the operator: gate credentials only from Secrets
// labelled for it, replies never copied into status, and the operator's address policy (cloud
// metadata refused by default, MODELROLLOUT_PROMETHEUS_DENIED) refusing before any request. The
// gate runs at weight 0 (an analysis step first), so a refusal must leave all traffic on stable.
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { GATE_CREDENTIALS_LABEL } from "../../capabilities/analysis/credentials";
import { setTimeout as sleep } from "node:timers/promises";
import { createTestNamespace, env, TestNamespace } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers, type Rollout } from "../support/rollouts";

const DENIED_ENV = "MODELROLLOUT_PROMETHEUS_DENIED";
const TRAP_HOST = "127.0.0.3"; // loopback, but denied for this test's operator
const GOOD_TOKEN = "good-token-4c1d";
const LEAKED_BODY = "LEAKED-REPLY-BODY-7e9b2f";

/** A stand-in Prometheus answering vector(0) to the right token, 401 with LEAKED_BODY otherwise. */
interface FakePrometheus {
  address: string;
  requests: { authorization?: string }[];
  close(): Promise<void>;
}

async function startFakePrometheus(host: string): Promise<FakePrometheus> {
  const requests: { authorization?: string }[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      requests.push({ authorization: req.headers.authorization });
      if (req.headers.authorization !== `Bearer ${GOOD_TOKEN}`) {
        res.writeHead(401, `nope ${LEAKED_BODY}`, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: `denied: ${LEAKED_BODY}` }));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          status: "success",
          data: { resultType: "vector", result: [{ metric: {}, value: [Date.now() / 1000, "0"] }] },
        }),
      );
    });
  });
  await new Promise<void>(resolve => server.listen(0, host, resolve));
  return {
    address: `http://${host}:${(server.address() as AddressInfo).port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise(resolve => server.close(resolve));
    },
  };
}

let ns: TestNamespace;
let operator: RunningOperator;
let prometheus: FakePrometheus;
let trap: FakePrometheus;
const deniedBefore = process.env[DENIED_ENV];

beforeAll(async () => {
  ns = createTestNamespace("gatesecrets");
  prometheus = await startFakePrometheus("127.0.0.1");
  trap = await startFakePrometheus(TRAP_HOST);
  // The operator's environment: loopback stays allowed, except the trap's address.
  process.env[DENIED_ENV] = TRAP_HOST;
  operator = await startOperator({ namespaces: [ns.name], name: ns.name });
});

afterAll(async () => {
  if (deniedBefore === undefined) delete process.env[DENIED_ENV];
  else process.env[DENIED_ENV] = deniedBefore;
  await operator?.stop();
  await prometheus?.close();
  await trap?.close();
  await ns?.cleanup();
});

const { kubectl, apply, rollout, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);

function secret(name: string, token: string, labelled: boolean): void {
  kubectl(["create", "secret", "generic", name, `--from-literal=token=${token}`]);
  if (labelled) kubectl(["label", "secret", name, `${GATE_CREDENTIALS_LABEL}=true`]);
}

/** An InferenceModel at 100 % stable and a rollout whose first step is a gate at weight 0. */
function gatedRollout(name: string, provider: string): void {
  apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${name}-model}
spec:
  modelName: ${name}-model
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: ${name}-v1, weight: 100}]
`);
  apply(`
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${name}}
spec:
  prometheus: ${provider}
  adapters: {inferenceModel: ${name}-model, stable: ${name}-v1, canary: ${name}-v2}
  steps:
  - analysis:
      metrics:
      - name: gate
        query: vector(0)
        interval: 1s
        successCondition: result[0] == 0
        consecutiveErrorLimit: 0
  - setWeight: 100
`);
}

/** Everything a reader of the rollout sees: status, conditions, Events. */
function visibleText(name: string): string {
  const events = kubectl([
    "get",
    "events",
    "--field-selector",
    `involvedObject.name=${name}`,
    "-o",
    "json",
  ]);
  return JSON.stringify(rollout(name)) + events;
}

async function waitForMessage(name: string, what: RegExp): Promise<Rollout> {
  return waitForRollout(name, `a status message matching ${what}`, r =>
    what.test(JSON.stringify(r.status ?? {})),
  );
}

function expectNoTrafficMoved(name: string, r: Rollout): void {
  expect(targetModels(`${name}-model`)).toEqual([{ name: `${name}-v1`, weight: 100 }]);
  expect(r.status?.canaryWeight ?? 0).toBe(0);
}

describe("gate credentials and Prometheus addresses (real control plane)", () => {
  it("a Secret without the label is not read for the gate: no traffic moves, the status names the label and the fix", async () => {
    const value = "unlabelled-secret-value-91f0";
    secret("db-password", value, false);
    gatedRollout(
      "unlabelled",
      `{address: "${prometheus.address}", bearerTokenSecretRef: {name: db-password, key: token}}`,
    );
    const r = await waitForMessage(
      "unlabelled",
      new RegExp(`label secret db-password ${GATE_CREDENTIALS_LABEL}=true`),
    );
    expect(JSON.stringify(r.status)).toContain(
      `Secret ${ns.name}/db-password is not labelled ${GATE_CREDENTIALS_LABEL}=true`,
    );
    expectNoTrafficMoved("unlabelled", r);
    // Settled (rolled back or held): still no traffic, and the value was never used anywhere.
    await sleep(2000);
    expectNoTrafficMoved("unlabelled", rollout("unlabelled"));
    expect(prometheus.requests).toEqual([]);
    expect(visibleText("unlabelled")).not.toContain(value);
  });

  it("with the label, the token is sent and the gate passes", async () => {
    secret("prom-token", GOOD_TOKEN, true);
    gatedRollout(
      "labelled",
      `{address: "${prometheus.address}", bearerTokenSecretRef: {name: prom-token, key: token}}`,
    );
    await waitForRollout("labelled", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("labelled-model")).toEqual([{ name: "labelled-v2", weight: 100 }]);
    expect(prometheus.requests.length).toBeGreaterThan(0);
    expect(prometheus.requests.every(q => q.authorization === `Bearer ${GOOD_TOKEN}`)).toBe(true);
    expect(visibleText("labelled")).not.toContain(GOOD_TOKEN);
  });

  it("a reply is never copied into status: a 401's body and reason phrase stay out", async () => {
    secret("wrong-token", "wrong-token-value-22aa", true);
    const before = prometheus.requests.length;
    gatedRollout(
      "refused",
      `{address: "${prometheus.address}", bearerTokenSecretRef: {name: wrong-token, key: token}}`,
    );
    const r = await waitForMessage("refused", /HTTP 401 Unauthorized: check the bearer token/);
    expect(prometheus.requests.length).toBeGreaterThan(before);
    expectNoTrafficMoved("refused", r);
    const seen = visibleText("refused");
    expect(seen).not.toContain(LEAKED_BODY);
    expect(seen).not.toContain("wrong-token-value");
  });

  it("a cloud metadata address is refused by default, with the reason and the variable, before any traffic", async () => {
    gatedRollout("metadata", `{address: "http://169.254.169.254/", timeout: 2s}`);
    const r = await waitForMessage(
      "metadata",
      /address refused by the operator's address policy: 169\.254\.169\.254 is a cloud metadata address/,
    );
    expect(JSON.stringify(r.status)).toContain("MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS");
    // Refused before connecting: never a timeout or a network error.
    expect(JSON.stringify(r.status)).not.toMatch(/no answer within|EHOSTUNREACH|ETIMEDOUT/);
    expectNoTrafficMoved("metadata", r);
  });

  it("a SecretRef cannot reach another namespace's labelled Secret (path traversal)", async () => {
    const victim = createTestNamespace("gatesecrets-victim");
    try {
      const victimToken = "victim-token-5d0c";
      env().kubectl([
        "-n",
        victim.name,
        "create",
        "secret",
        "generic",
        "prom-token",
        `--from-literal=token=${victimToken}`,
      ]);
      env().kubectl([
        "-n",
        victim.name,
        "label",
        "secret",
        "prom-token",
        `${GATE_CREDENTIALS_LABEL}=true`,
      ]);
      const before = prometheus.requests.length;
      // Refused by the apiserver (the CRD's name pattern), naming the field; the operator's own
      // check (checkSecretRef, unit-tested) stands behind it for objects stored before.
      expect(() =>
        gatedRollout(
          "traversal",
          `{address: "${prometheus.address}", bearerTokenSecretRef: {name: "../../${victim.name}/secrets/prom-token", key: token}}`,
        ),
      ).toThrow(/bearerTokenSecretRef\.name/);
      await sleep(2000);
      expect(prometheus.requests.slice(before).map(q => q.authorization)).not.toContain(
        `Bearer ${victimToken}`,
      );
    } finally {
      await victim.cleanup();
    }
  });

  it("an address the operator's MODELROLLOUT_PROMETHEUS_DENIED lists gets no request at all", async () => {
    secret("trap-token", GOOD_TOKEN, true);
    gatedRollout(
      "denied",
      `{address: "${trap.address}", bearerTokenSecretRef: {name: trap-token, key: token}}`,
    );
    const r = await waitForMessage(
      "denied",
      new RegExp(`127\\.0\\.0\\.3 is denied by ${DENIED_ENV} \\(127\\.0\\.0\\.3\\)`),
    );
    expectNoTrafficMoved("denied", r);
    // Give a (wrong) retry time to happen: still nothing reached the trap.
    await sleep(2000);
    expect(trap.requests).toEqual([]);
  });
});
