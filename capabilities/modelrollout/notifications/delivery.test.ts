// The delivery queue against real HTTP receivers on loopback (short timeouts and backoff here; the
// integration test runs the operator's defaults).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@jest/globals";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { DENIED_ENV } from "../../analysis/address-policy";
import { NotificationDelivery, postOnce, retryableStatus, type Outcome } from "./delivery";
import type { NotifyAction } from "./payload";

type Answer = number | "hang";
interface Received {
  path: string;
  body: { transition: string; step: number; id: string };
}

let server: http.Server;
let base: string;
const received: Received[] = [];
/** What the receiver answers to each request, in order (then 200). */
let answers: Answer[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let text = "";
    req.on("data", chunk => (text += chunk));
    req.on("end", () => {
      received.push({ path: req.url ?? "", body: JSON.parse(text) });
      const answer = answers.shift() ?? 200;
      if (answer === "hang") return; // never answers
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  received.length = 0;
  answers = [];
  delete process.env[DENIED_ENV];
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise(resolve => server.close(resolve));
});

const rollout = { namespace: "ns", name: "r", uid: "uid-1", steps: 2 };
const action = (transition: NotifyAction["transition"], step: number): NotifyAction => ({
  type: "notify",
  transition,
  notifications: ["hook"],
  phase: "Progressing",
  step,
  canaryWeight: 10,
  message: `${transition} ${step}`,
  at: "2026-12-07T14:00:00.000Z",
});
const fast = { timeoutMs: 300, backoffMs: [20, 40] };

function deliverAll(
  delivery: NotificationDelivery,
  actions: NotifyAction[],
  path = "/hook",
): Promise<Outcome[]> {
  return Promise.all(
    actions.map(
      a =>
        new Promise<Outcome>(resolve =>
          delivery.enqueue(
            { rollout, webhook: { name: "hook", url: base + path }, action: a },
            resolve,
          ),
        ),
    ),
  );
}

describe("notification delivery", () => {
  it("delivers in order per rollout and webhook, retrying a 5xx without reordering", async () => {
    answers = [500, 503];
    const outcomes = await deliverAll(new NotificationDelivery(fast), [
      action("StepReached", 0),
      action("Paused", 0),
      action("Succeeded", 1),
    ]);
    expect(outcomes).toEqual([
      { result: "Delivered", attempts: 3 },
      { result: "Delivered", attempts: 1 },
      { result: "Delivered", attempts: 1 },
    ]);
    expect(received.map(r => r.body.transition)).toEqual([
      "StepReached",
      "StepReached",
      "StepReached",
      "Paused",
      "Succeeded",
    ]);
    // Every attempt carries the same id.
    expect(new Set(received.slice(0, 3).map(r => r.body.id)).size).toBe(1);
  });

  it("gives up after the last attempt, and at once on a 4xx that retrying cannot fix", async () => {
    answers = [500, 500, 500];
    const [failed] = await deliverAll(new NotificationDelivery(fast), [action("Failed", 1)]);
    expect(failed).toEqual({
      result: "Failed",
      attempts: 3,
      message: "3 attempt(s), last: HTTP 500",
    });
    received.length = 0;
    answers = [404];
    const [gone] = await deliverAll(new NotificationDelivery(fast), [action("Failed", 1)]);
    expect(gone).toEqual({
      result: "Failed",
      attempts: 1,
      message: "1 attempt(s), last: HTTP 404",
    });
    expect(received).toHaveLength(1);
    expect([500, 502, 429, 408].every(retryableStatus)).toBe(true);
    expect([400, 401, 403, 404, 410].some(retryableStatus)).toBe(false);
  });

  it("a receiver that hangs costs each attempt its timeout; enqueue itself returns at once", async () => {
    answers = ["hang", "hang"];
    const delivery = new NotificationDelivery({ ...fast, attempts: 2 });
    const started = performance.now();
    const pending = deliverAll(delivery, [action("StepReached", 0)]);
    expect(performance.now() - started).toBeLessThan(20);
    expect(delivery.pending).toBe(1);
    const [outcome] = await pending;
    expect(outcome).toEqual({
      result: "Failed",
      attempts: 2,
      message: "2 attempt(s), last: no answer within 300 ms",
    });
    expect(received).toHaveLength(2);
    await delivery.flushed();
    expect(delivery.pending).toBe(0);
  });

  it("is bounded: beyond maxPending, new notifications are dropped and reported", async () => {
    answers = ["hang"];
    const delivery = new NotificationDelivery({ ...fast, attempts: 1, maxPending: 2 });
    const outcomes = await deliverAll(delivery, [
      action("StepReached", 0),
      action("Paused", 0),
      action("Succeeded", 1),
    ]);
    expect(outcomes.map(o => o.result)).toEqual(["Failed", "Delivered", "Dropped"]);
    expect(outcomes[2]).toMatchObject({ message: expect.stringMatching(/more than 2 .* dropped/) });
  });

  it("sends nothing to an address the operator's policy refuses, before or at connect time", async () => {
    process.env[DENIED_ENV] = "127.0.0.1,::1";
    const port = (server.address() as AddressInfo).port;
    for (const url of [`http://127.0.0.1:${port}/x`, `http://localhost:${port}/x`]) {
      await expect(postOnce({ name: "hook", url }, "{}", 300)).rejects.toMatchObject({
        retry: false,
        message: expect.stringMatching(/address refused by the operator's address policy/),
      });
    }
    expect(received).toEqual([]);
  });
});
