// Gate credentials (bearerTokenSecretRef, caSecretRef) come only from Secrets that opt in with a
// label: whoever may create a ModelRollout must not be able to make the operator read any Secret of
// the namespace and send it to an address of their choice.

/** The label a Secret needs (value "true") before the operator reads it for a gate. */
export const GATE_CREDENTIALS_LABEL = "rollouts.inference.dev/gate-credentials";

/**
 * A Secret referenced by a gate cannot be used: not labelled, or without the key. The message
 * names the Secret and the fix, never a value. Retrying alone does not fix it.
 */
export class GateCredentialsError extends Error {
  readonly permanent = true;
  readonly secretNamespace: string;
  readonly secretName: string;
  constructor(namespace: string, name: string, message: string) {
    super(message);
    this.name = "GateCredentialsError";
    this.secretNamespace = namespace;
    this.secretName = name;
  }
}

export interface SecretLike {
  metadata?: { labels?: Record<string, string> };
  data?: Record<string, string>;
}

/**
 * The value (decoded) of `ref.key` in a Secret read for a gate; throws GateCredentialsError when the
 * Secret does not carry GATE_CREDENTIALS_LABEL=true or has no such key.
 */
export function gateCredentialFrom(
  secret: SecretLike,
  namespace: string,
  ref: { name: string; key: string },
): string {
  if (secret.metadata?.labels?.[GATE_CREDENTIALS_LABEL] !== "true") {
    throw new GateCredentialsError(
      namespace,
      ref.name,
      `Secret ${namespace}/${ref.name} is not labelled ${GATE_CREDENTIALS_LABEL}=true, so the operator ` +
        `does not read it for a gate (bearerTokenSecretRef, caSecretRef); if it holds credentials meant ` +
        `for the gate's Prometheus, label it: kubectl -n ${namespace} label secret ${ref.name} ${GATE_CREDENTIALS_LABEL}=true`,
    );
  }
  const value = secret.data?.[ref.key];
  if (value === undefined) {
    throw new GateCredentialsError(
      namespace,
      ref.name,
      `Secret ${namespace}/${ref.name} has no key ${JSON.stringify(ref.key)}; fix the key in the ModelRollout's SecretRef or add it to the Secret`,
    );
  }
  return Buffer.from(value, "base64").toString("utf8");
}
