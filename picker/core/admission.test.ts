import { RateMeter, admissionOf, rejection } from "./admission";

const base = {
  sheddable: false,
  held: 0,
  heldSheddable: 0,
  maxQueue: 10,
  queueThreshold: 2,
  readyEndpoints: 3,
  expectedWaitMs: 0,
  sheddableMaxWaitMs: 1000,
};

describe("admissionOf", () => {
  it("holds a critical request while the queue has room, then displaces a sheddable one, then refuses", () => {
    expect(admissionOf({ ...base, held: 9 })).toBe("hold");
    expect(admissionOf({ ...base, held: 10, heldSheddable: 1 })).toBe("displace");
    expect(admissionOf({ ...base, held: 10 })).toBe("queue-full");
  });

  it("sheds a sheddable request once the held queue passes queueThreshold per ready endpoint", () => {
    const sheddable = { ...base, sheddable: true };
    expect(admissionOf({ ...sheddable, held: 5 })).toBe("hold");
    expect(admissionOf({ ...sheddable, held: 6 })).toBe("sheddable-saturated");
    // One that would wait past its bound is refused now, not after the wait.
    expect(admissionOf({ ...sheddable, held: 1, expectedWaitMs: 1001 })).toBe(
      "sheddable-saturated",
    );
    expect(admissionOf({ ...base, held: 1, expectedWaitMs: 60_000 })).toBe("hold");
    // A queue shorter than the saturation depth still bounds it.
    expect(admissionOf({ ...sheddable, held: 1, maxQueue: 1 })).toBe("queue-full");
  });
});

describe("RateMeter", () => {
  it("predicts the wait behind the held requests from the last whole window's dispatches", () => {
    const meter = new RateMeter(1000);
    expect(meter.expectedWaitMs(0, 0)).toBe(0);
    expect(meter.expectedWaitMs(3, 0)).toBe(Infinity); // nothing dispatched yet
    for (let t = 0; t < 1000; t += 25) meter.note(t); // 40 per second
    expect(meter.expectedWaitMs(3, 1000)).toBe(100); // 4 ahead, itself included, at 40/s
    expect(meter.expectedWaitMs(3, 3500)).toBe(Infinity); // a whole window without any
  });
});

describe("rejection", () => {
  it("is a 429 named InferencePoolResourceExhausted that says why", () => {
    const r = rejection("queue-timeout", "m", "t");
    expect(r.error.status).toBe(429);
    expect(r.error.code).toBe("InferencePoolResourceExhausted");
    expect(r.error.message).toContain("over capacity");
    expect(r).toMatchObject({ ok: false, model: "m", targetModel: "t", rejected: "queue-timeout" });
  });
});
