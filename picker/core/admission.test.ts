import { RateMeter, admissionOf, rejection, sheddableWaitMs } from "./admission";

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

describe("RateMeter and sheddableWaitMs", () => {
  it("count events per second over the last whole window", () => {
    const meter = new RateMeter(1000);
    expect(meter.rate(0)).toBe(0);
    for (let t = 0; t < 1000; t += 25) meter.note(t); // 40 per second
    expect(meter.rate(1000)).toBe(40);
    expect(meter.rate(3500)).toBe(0); // a whole window without any
  });

  it("predict a sheddable request's wait from what the pool takes beyond critical arrivals", () => {
    expect(sheddableWaitMs(0, 0)).toBe(0); // nobody ahead: it starts as soon as a slot frees
    expect(sheddableWaitMs(3, 10)).toBe(400); // 4 to go, itself included, at 10 spare per second
    expect(sheddableWaitMs(3, 0)).toBe(Infinity); // critical requests take everything
    expect(sheddableWaitMs(3, -5)).toBe(Infinity);
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
