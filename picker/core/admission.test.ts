import { admissionOf, rejection } from "./admission";

const base = {
  sheddable: false,
  held: 0,
  heldSheddable: 0,
  maxQueue: 10,
  queueThreshold: 2,
  readyEndpoints: 3,
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
    // A queue shorter than the saturation depth still bounds it.
    expect(admissionOf({ ...sheddable, held: 1, maxQueue: 1 })).toBe("queue-full");
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
