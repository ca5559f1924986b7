import { describe, expect, it } from "@jest/globals";
import {
  liveness,
  readiness,
  RECONCILE_STUCK_MS,
  STARTUP_STUCK_MS,
  type HealthState,
} from "./health";

const T = 10_000_000;
const base: HealthState = { startedAt: T - 1000, reconcilesPending: 0 };

describe("readiness", () => {
  it("needs the watches up and the apiserver answering", () => {
    expect(readiness(base, T).ok).toBe(false);
    expect(readiness({ ...base, watchesReadyAt: T - 500 }, T).ok).toBe(false);
    expect(readiness({ ...base, watchesReadyAt: T - 500, lastApiAnswerAt: T - 1000 }, T).ok).toBe(
      true,
    );
    const outage = {
      ...base,
      watchesReadyAt: T - 500,
      lastApiAnswerAt: T - 60_000,
      apiFailingSince: T - 58_000,
    };
    expect(readiness(outage, T)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/not answering/),
    });
  });
});

describe("liveness", () => {
  it("stays alive while waiting out an outage, however long", () => {
    const waiting = { ...base, startedAt: T - 3_600_000, apiFailingSince: T - 3_600_000 };
    expect(liveness(waiting, T).ok).toBe(true);
    expect(
      liveness({ ...waiting, reconcilesPending: 5, lastReconcileAt: T - 3_000_000 }, T).ok,
    ).toBe(true);
  });
  it("fails a start-up stuck while the apiserver answers", () => {
    const stuck = { ...base, startedAt: T - STARTUP_STUCK_MS - 1, lastApiAnswerAt: T - 1000 };
    expect(liveness(stuck, T)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/start-up stuck/),
    });
    expect(liveness({ ...stuck, watchesReadyAt: T - 5000 }, T).ok).toBe(true);
  });
  it("fails reconciles that stopped finishing while the apiserver answers", () => {
    const s = {
      ...base,
      watchesReadyAt: T - 900_000,
      lastApiAnswerAt: T - 1000,
      reconcilesPending: 3,
    };
    expect(liveness({ ...s, lastReconcileAt: T - RECONCILE_STUCK_MS - 1 }, T).ok).toBe(false);
    expect(liveness({ ...s, lastReconcileAt: T - 10_000 }, T).ok).toBe(true);
    expect(liveness({ ...s, reconcilesPending: 0, lastReconcileAt: T - 3_000_000 }, T).ok).toBe(
      true,
    );
  });
});
