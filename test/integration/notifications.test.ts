// Issue 18.5, on the real control plane with the operator, the real Prometheus and a real
// llm-d-inference-sim model server (the gates query its scrape): webhook receivers in this test
// process get the transitions of a Succeeded and of a Failed rollout, in order, as JSON or as a
// Slack payload; receivers that answer 500 or hang are retried and do not delay the rollout; a
// Secret without the opt-in label or a URL the address policy refuses sends nothing and says so
// (Warning Event, NotificationsReady=False); a restarted operator does not re-send old transitions.
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { OPERATOR_METRICS } from "../../capabilities/operator-metrics";
import { NOTIFICATION_WEBHOOK_LABEL } from "../../capabilities/modelrollout/notifications/webhooks";
import { deployModelServer, removeModelServer } from "../../hack/env/model-servers";
import { freePort } from "../../hack/env/procs";
import { createTestNamespace, env, promQuery, TestNamespace, waitFor } from "../support/env";
import { RunningOperator, startOperator } from "../support/operator";
import { rolloutHelpers, type Rollout } from "../support/rollouts";

const report = (line: string) => process.stderr.write(`[notifications] ${line}\n`);

type Behaviour = "ok" | "500" | "hang";
interface Request {
  body: Record<string, unknown>;
  at: number;
}
interface Receiver {
  url: string;
  requests: Request[];
  close(): Promise<void>;
}

const receivers: Receiver[] = [];

async function startReceiver(behaviour: Behaviour): Promise<Receiver> {
  const requests: Request[] = [];
  const server = http.createServer((req, res) => {
    let text = "";
    req.on("data", chunk => (text += chunk));
    req.on("end", () => {
      requests.push({ body: JSON.parse(text), at: Date.now() });
      if (behaviour === "hang") return; // never answers
      res.writeHead(behaviour === "500" ? 500 : 200).end();
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const receiver = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/T000/B000/secret-token`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise(resolve => server.close(resolve));
    },
  };
  receivers.push(receiver);
  return receiver;
}

let ns: TestNamespace;
let operator: RunningOperator;
let operatorMetricsUrl: string;
const SERVER = "vllm-notify-0";

async function runOperator(): Promise<void> {
  const healthPort = await freePort();
  operator = await startOperator({
    namespaces: [ns.name],
    name: ns.name,
    env: { MODELROLLOUT_HEALTH_PORT: String(healthPort) },
  });
  operatorMetricsUrl = `http://127.0.0.1:${healthPort}`;
}

beforeAll(async () => {
  ns = createTestNamespace("notify");
  await deployModelServer(env().info, {
    model: "Qwen/Qwen2.5-1.5B-Instruct",
    servedModelNames: ["mymodel"],
    loraAdapters: ["a-v1", "a-v2"],
    maxLoras: 2,
    namespace: ns.name,
    name: SERVER,
    labels: { app: "vllm-notify" },
    port: 8000,
  });
  // The gates read the model server's scrape: wait until Prometheus has it.
  await waitFor(
    "Prometheus scrapes the model server",
    async () =>
      (await promQuery(prometheus(), `up{namespace="${ns.name}",pod="${SERVER}"}`))[0]?.value[1] ===
      "1",
    60_000,
  );
  await runOperator();
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  for (const r of receivers) await r.close();
  await removeModelServer(env().info, ns.name, SERVER);
  await ns?.cleanup();
});

const { kubectl, apply, targetModels, waitForRollout } = rolloutHelpers(
  () => ns.name,
  () => operator.log,
);
const prometheus = () => env().info.prometheusUrl;

function webhookSecret(name: string, url: string, labelled = true): void {
  kubectl(["create", "secret", "generic", name, `--from-literal=url=${url}`]);
  if (labelled) kubectl(["label", "secret", name, `${NOTIFICATION_WEBHOOK_LABEL}=true`]);
}

/** The model server is scraped (up == 1): a healthy canary passes; `fail` asks for up > 1. */
function gate(fail = false): string {
  return `
      metrics:
      - name: model-server-up
        query: 'max(up{namespace="{{namespace}}",component="model-server"})'
        interval: 1s
        successCondition: result[0] ${fail ? "> 1" : "== 1"}`;
}

/** An InferenceModel at 100 % on <name>-v1 and a rollout to <name>-v2 with `notifications`. */
function rolloutWith(name: string, steps: string, notifications: string): void {
  apply(`
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: ${name}-model}
spec:
  modelName: ${name}-model
  poolRef: {name: mymodel-pool-v1}
  targetModels: [{name: ${name}-v1, weight: 100}]
---
apiVersion: rollouts.inference.dev/v1alpha1
kind: ModelRollout
metadata: {name: ${name}}
spec:
  prometheus: {address: "${prometheus()}"}
  adapters: {inferenceModel: ${name}-model, stable: ${name}-v1, canary: ${name}-v2}
  notifications: ${notifications}
  steps: ${steps}
`);
}

const transitions = (r: Receiver) =>
  r.requests.map(q => `${q.body.transition} ${q.body.step} ${q.body.canaryWeight}`);

function eventsOf(name: string): { reason: string; type: string; message: string }[] {
  const list = JSON.parse(
    kubectl(["get", "events", "--field-selector", `involvedObject.name=${name}`, "-o", "json"]),
  ) as { items: { reason: string; type: string; message: string }[] };
  return list.items;
}

function conditionOf(r: Rollout, type: string) {
  return r.status?.conditions?.find(c => c.type === type);
}

async function metricsPage(): Promise<string> {
  return (await fetch(`${operatorMetricsUrl}/metrics`)).text();
}

function sample(page: string, series: string): number {
  const line = page.split("\n").find(l => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

const finishedAt = (r: Rollout) => (r.status as { finishedAt?: string } | undefined)?.finishedAt;

/** From creation (whole seconds) to status.finishedAt. */
const secondsToFinish = (r: Rollout) =>
  (Date.parse(finishedAt(r) ?? "") -
    Date.parse((r.metadata as { creationTimestamp?: string }).creationTimestamp ?? "")) /
  1000;

describe("notifications (real control plane, Prometheus and llm-d-inference-sim)", () => {
  it("a Succeeded rollout tells every transition in order, once, as JSON", async () => {
    const hook = await startReceiver("ok");
    webhookSecret("ok-hook", hook.url);
    rolloutWith(
      "good",
      `
  - setWeight: 10
  - pause: {duration: 2s}
  - analysis: ${gate()}
  - setWeight: 50
  - setWeight: 100`,
      "[{name: ops, urlSecretRef: {name: ok-hook, key: url}}]",
    );
    const done = await waitForRollout("good", "Succeeded", r => r.status?.phase === "Succeeded");
    expect(targetModels("good-model")).toEqual([{ name: "good-v2", weight: 100 }]);
    const expected = [
      "StepReached 0 10",
      "StepReached 1 10",
      "Paused 1 10",
      "StepReached 2 10",
      "StepReached 3 50",
      "StepReached 4 100",
      "Succeeded 5 100",
    ];
    await waitFor(
      "all transitions received",
      () => hook.requests.length >= expected.length,
      15_000,
    );
    expect(transitions(hook)).toEqual(expected);
    const uid = kubectl(["get", "mro", "good", "-o", "jsonpath={.metadata.uid}"]).trim();
    const last = hook.requests[expected.length - 1].body;
    expect(last).toMatchObject({
      notification: "ops",
      transition: "Succeeded",
      rollout: { namespace: ns.name, name: "good", uid },
      phase: "Succeeded",
      steps: 5,
      canaryWeight: 100,
      stableWeight: 0,
      target: { kind: "InferenceModel", name: "good-model", stable: "good-v1", canary: "good-v2" },
      message: expect.stringContaining("rollout succeeded"),
      time: finishedAt(done),
    });
    expect(new Set(hook.requests.map(q => q.body.id)).size).toBe(expected.length);
    expect(conditionOf(done, "NotificationsReady")).toMatchObject({ status: "True" });
    const page = await metricsPage();
    expect(
      sample(
        page,
        `${OPERATOR_METRICS.notifications}{namespace="${ns.name}",name="good",notification="ops",result="Delivered"}`,
      ),
    ).toBe(expected.length);
    // The URL (a credential) is nowhere in status or Events.
    expect(JSON.stringify(done) + JSON.stringify(eventsOf("good"))).not.toContain("secret-token");
  }, 90_000);

  it("a Failed rollout tells Failed and RolledBack; a Slack notification gets {text, blocks} of only the transitions it selects", async () => {
    const hook = await startReceiver("ok");
    const slack = await startReceiver("ok");
    webhookSecret("fail-hook", hook.url);
    webhookSecret("slack-hook", slack.url);
    rolloutWith(
      "bad",
      `
  - setWeight: 20
  - analysis: ${gate(true)}
  - setWeight: 100`,
      `
  - {name: ops, urlSecretRef: {name: fail-hook, key: url}}
  - {name: chat, format: slack, transitions: [Failed, RolledBack, Succeeded], urlSecretRef: {name: slack-hook, key: url}}`,
    );
    await waitForRollout("bad", "Failed", r => r.status?.phase === "Failed");
    expect(targetModels("bad-model")).toEqual([{ name: "bad-v1", weight: 100 }]);
    const expected = ["StepReached 0 20", "StepReached 1 20", "Failed 1 0", "RolledBack 1 0"];
    await waitFor("all transitions received", () => hook.requests.length >= 4, 15_000);
    await waitFor("the Slack messages received", () => slack.requests.length >= 2, 15_000);
    expect(transitions(hook)).toEqual(expected);
    expect(hook.requests[3].body).toMatchObject({ phase: "Failed", stableWeight: 100 });
    expect(slack.requests).toHaveLength(2);
    for (const [i, what] of [":x:", ":leftwards_arrow_with_hook:"].entries()) {
      const body = slack.requests[i].body as { text: string; blocks: { type: string }[] };
      expect(Object.keys(body).sort()).toEqual(["blocks", "text"]);
      expect(body.text).toMatch(new RegExp(`^${what} ModelRollout ${ns.name}/bad: `));
      expect(body.blocks.map(b => b.type)).toEqual(["section", "context"]);
    }
  }, 90_000);

  it("receivers that answer 500 or hang are retried and do not delay the rollout", async () => {
    const ok = await startReceiver("ok");
    const failing = await startReceiver("500");
    const hanging = await startReceiver("hang");
    const steps = `
  - setWeight: 10
  - pause: {duration: 2s}
  - setWeight: 50
  - pause: {duration: 2s}
  - setWeight: 100`;
    for (const [name, r] of [
      ["quick", ok],
      ["failing", failing],
      ["hanging", hanging],
    ] as const) {
      webhookSecret(`${name}-hook`, r.url);
      rolloutWith(name, steps, `[{name: ops, urlSecretRef: {name: ${name}-hook, key: url}}]`);
    }
    const took: Record<string, number> = {};
    for (const name of ["quick", "failing", "hanging"]) {
      const done = await waitForRollout(name, "Succeeded", r => r.status?.phase === "Succeeded");
      took[name] = secondsToFinish(done);
    }
    report(`time to Succeeded: ${JSON.stringify(took)} s`);
    // creationTimestamp has whole seconds: 2 s of slack over the healthy receiver's rollout.
    expect(took.failing).toBeLessThanOrEqual(took.quick + 2);
    expect(took.hanging).toBeLessThanOrEqual(took.quick + 2);
    expect(took.hanging).toBeLessThan(10);

    // Retried with the same id: 3 attempts for the 500s (then a Warning Event and the counter),
    // a second attempt after the hanging one's 5 s timeout.
    await waitFor("3 attempts at the failing receiver", () => failing.requests.length >= 3, 30_000);
    const first = failing.requests.filter(q => q.body.id === failing.requests[0].body.id);
    expect(first).toHaveLength(3);
    report(
      `attempts at +${first.map(q => ((q.at - first[0].at) / 1000).toFixed(1)).join(", +")} s`,
    );
    expect(first[2].at - first[0].at).toBeGreaterThanOrEqual(10_000);
    await waitFor(
      "a NotificationFailed Warning Event",
      () => eventsOf("failing").some(e => e.reason === "NotificationFailed"),
      20_000,
    );
    const warning = eventsOf("failing").find(e => e.reason === "NotificationFailed")!;
    expect(warning.type).toBe("Warning");
    expect(warning.message).toMatch(
      /notification ops: StepReached \(steps\[0\]\) not delivered \(Failed\): 3 attempt\(s\), last: HTTP 500/,
    );
    expect(warning.message).not.toContain("secret-token");
    const page = await metricsPage();
    expect(
      sample(
        page,
        `${OPERATOR_METRICS.notifications}{namespace="${ns.name}",name="failing",notification="ops",result="Failed"}`,
      ),
    ).toBeGreaterThanOrEqual(1);
    await waitFor(
      "a second attempt at the hanging receiver",
      () => hanging.requests.length >= 2,
      20_000,
    );
    expect(hanging.requests[1].body.id).toBe(hanging.requests[0].body.id);
    expect(hanging.requests[1].at - hanging.requests[0].at).toBeGreaterThanOrEqual(5_000);
    // The healthy receiver got all of its rollout's transitions meanwhile.
    expect(transitions(ok)).toEqual([
      "StepReached 0 10",
      "StepReached 1 10",
      "Paused 1 10",
      "StepReached 2 50",
      "StepReached 3 50",
      "Paused 3 50",
      "StepReached 4 100",
      "Succeeded 5 100",
    ]);
  }, 120_000);

  it("a Secret without the opt-in label or a refused URL sends nothing and says so; the rollout goes on", async () => {
    const trap = await startReceiver("ok");
    webhookSecret("plain-secret", trap.url, false);
    webhookSecret("metadata-hook", "http://169.254.169.254/latest/meta-data");
    rolloutWith(
      "unlabelled",
      `
  - setWeight: 10
  - setWeight: 100`,
      `
  - {name: ops, urlSecretRef: {name: plain-secret, key: url}}
  - {name: metadata, urlSecretRef: {name: metadata-hook, key: url}}`,
    );
    const done = await waitForRollout(
      "unlabelled",
      "Succeeded",
      r => r.status?.phase === "Succeeded",
    );
    const cond = conditionOf(done, "NotificationsReady");
    expect(cond).toMatchObject({ status: "False", reason: "NotificationSecretNotLabelled" });
    expect(cond?.message).toContain(
      `notification ops: Secret ${ns.name}/plain-secret is not labelled ${NOTIFICATION_WEBHOOK_LABEL}=true`,
    );
    expect(cond?.message).toContain(`kubectl -n ${ns.name} label secret plain-secret`);
    expect(cond?.message).toMatch(
      /notification metadata: the URL in key url of Secret \S+\/metadata-hook: address refused by the operator's address policy: 169.254.169.254 is/,
    );
    await waitFor(
      "the Warning Event",
      () => eventsOf("unlabelled").some(e => e.reason === "NotificationSecretNotLabelled"),
      15_000,
    );
    const warning = eventsOf("unlabelled").find(e => e.reason === "NotificationSecretNotLabelled")!;
    expect(warning.type).toBe("Warning");
    expect(warning.message).toContain("plain-secret");
    expect(JSON.stringify(done) + JSON.stringify(eventsOf("unlabelled"))).not.toContain(
      "secret-token",
    );
    expect(trap.requests).toEqual([]);
  }, 60_000);

  it("a restarted operator does not re-send the transitions of finished rollouts", async () => {
    await operator.stop();
    // Taken once the old process is gone (its retries to the hanging receiver went with it).
    const seen = receivers.map(r => r.requests.length);
    await runOperator();
    // The new operator is at work once a new rollout has moved; the old ones have been reconciled
    // by then (it reconciles every rollout it lists at start).
    const fresh = await startReceiver("ok");
    webhookSecret("fresh-hook", fresh.url);
    rolloutWith(
      "fresh",
      `\n  - setWeight: 100`,
      "[{name: ops, transitions: [Succeeded], urlSecretRef: {name: fresh-hook, key: url}}]",
    );
    await waitForRollout("fresh", "Succeeded", r => r.status?.phase === "Succeeded");
    await waitFor("the new rollout's notification", () => fresh.requests.length === 1, 15_000);
    expect(receivers.slice(0, seen.length).map(r => r.requests.length)).toEqual(seen);
  }, 60_000);
});
