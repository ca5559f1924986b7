// Gate credentials only from Secrets labelled for it; errors name the fix, never a value.
import {
  checkSecretRef,
  GATE_CREDENTIALS_LABEL,
  GateCredentialsError,
  gateCredentialFrom,
} from "./credentials";
import { isPermanentGateError } from "./prometheus/errors";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const ref = { name: "prom-token", key: "token" };

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

describe("gateCredentialFrom", () => {
  it("is the label the docs name", () => {
    expect(GATE_CREDENTIALS_LABEL).toBe("rollouts.inference.dev/gate-credentials");
  });

  it("reads a key of a labelled Secret", () => {
    const secret = {
      metadata: { labels: { [GATE_CREDENTIALS_LABEL]: "true" } },
      data: { token: b64("s3cret-token\n") },
    };
    expect(gateCredentialFrom(secret, "team-a", ref)).toBe("s3cret-token\n");
  });

  it.each([
    ["no labels", undefined],
    ["another label", { app: "x" }],
    ["the label set to false", { [GATE_CREDENTIALS_LABEL]: "false" }],
    ["the label set to yes", { [GATE_CREDENTIALS_LABEL]: "yes" }],
  ])("refuses a Secret with %s, naming the Secret, the label and the fix", (_what, labels) => {
    const secret = { metadata: { labels }, data: { token: b64("hunter2-db-password") } };
    const err = thrown(() => gateCredentialFrom(secret, "team-a", ref));
    expect(err).toBeInstanceOf(GateCredentialsError);
    expect(isPermanentGateError(err)).toBe(true);
    expect(err.message).toContain("Secret team-a/prom-token");
    expect(err.message).toContain(`${GATE_CREDENTIALS_LABEL}=true`);
    expect(err.message).toContain(
      `kubectl -n team-a label secret prom-token ${GATE_CREDENTIALS_LABEL}=true`,
    );
    expect(err.message).not.toContain("hunter2");
    expect(err.message).not.toContain(b64("hunter2-db-password"));
  });

  it("refuses a missing key without listing the Secret's content", () => {
    const secret = {
      metadata: { labels: { [GATE_CREDENTIALS_LABEL]: "true" } },
      data: { password: b64("hunter2") },
    };
    const err = thrown(() => gateCredentialFrom(secret, "team-a", ref));
    expect(err).toBeInstanceOf(GateCredentialsError);
    expect(err.message).toBe(
      'Secret team-a/prom-token has no key "token"; fix the key in the ModelRollout\'s SecretRef or add it to the Secret',
    );
  });

  it("refuses the object of another namespace or name", () => {
    const labels = { [GATE_CREDENTIALS_LABEL]: "true" };
    const data = { token: b64("victim-token") };
    expect(() =>
      gateCredentialFrom(
        { metadata: { namespace: "victim", name: "prom-token", labels }, data },
        "team-a",
        ref,
      ),
    ).toThrow(GateCredentialsError);
    expect(() =>
      gateCredentialFrom(
        { metadata: { namespace: "team-a", name: "other", labels }, data },
        "team-a",
        ref,
      ),
    ).toThrow("is another object");
  });
});

describe("checkSecretRef", () => {
  it.each([
    "../../victim/secrets/prom-token",
    "..",
    "a/b",
    "prom-token?x=1",
    "prom-token#x",
    "Prom-Token",
    "-x",
    "x-",
    "a..b",
    "%2e%2e",
    "",
    "x".repeat(254),
  ])("refuses the name %j before any read (path traversal)", name => {
    const err = thrown(() => checkSecretRef("team-a", { name, key: "token" }));
    expect(err).toBeInstanceOf(GateCredentialsError);
    expect(isPermanentGateError(err)).toBe(true);
    expect(err.message).toMatch(/is not a Secret name/);
  });

  it.each(["a/b", "..?", "", "k y"])("refuses the key %j", key => {
    expect(() => checkSecretRef("team-a", { name: "prom-token", key })).toThrow(
      /is not a Secret key/,
    );
  });

  it.each(["prom-token", "a.b-c", "0", "x".repeat(253)])("accepts the name %j", name => {
    expect(() => checkSecretRef("team-a", { name, key: "ca.crt" })).not.toThrow();
    expect(() => checkSecretRef("team-a", { name, key: "TOKEN_1-x" })).not.toThrow();
  });
});
