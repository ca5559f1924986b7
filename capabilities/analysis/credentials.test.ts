// Gate credentials only from Secrets labelled for it; errors name the fix, never a value.
import { GATE_CREDENTIALS_LABEL, GateCredentialsError, gateCredentialFrom } from "./credentials";
import { isPermanentGateError } from "./prometheus";

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
});
