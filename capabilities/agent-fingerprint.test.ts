import { fingerprintOf } from "./agent-fingerprint";

describe("fingerprintOf (the shared Agent's key)", () => {
  const options = (ca: string) => ({
    keepAliveTimeout: 600000,
    connect: { ca: Buffer.from(ca), cert: Buffer.from("cert"), key: undefined },
  });

  it("is equal for equal options, whatever the key order or Buffer identity", () => {
    const a = options("CA-1");
    const b = {
      connect: { key: undefined, cert: Buffer.from("cert"), ca: Buffer.from("CA-1") },
      keepAliveTimeout: 600000,
    };
    expect(fingerprintOf(a)).toBe(fingerprintOf(b));
  });

  it("differs when any byte, value or key differs", () => {
    const base = fingerprintOf(options("CA-1"));
    expect(fingerprintOf(options("CA-2"))).not.toBe(base);
    expect(fingerprintOf({ ...options("CA-1"), keepAliveTimeout: 1 })).not.toBe(base);
    expect(fingerprintOf({ ...options("CA-1"), bodyTimeout: 0 })).not.toBe(base);
    // A string and a Buffer of the same bytes are different TLS inputs.
    expect(fingerprintOf({ ca: "x" })).not.toBe(fingerprintOf({ ca: Buffer.from("x") }));
    expect(fingerprintOf(undefined)).toBe(fingerprintOf({}));
  });
});
