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
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  data?: Record<string, string>;
}

// A Secret's name (DNS-1123 subdomain) and a data key, as the apiserver allows them.
const SECRET_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;

/**
 * Refuses a SecretRef that is no Secret name or key before anything is read: the API client puts
 * the name into the request path unescaped, so `../../other-namespace/secrets/x` would read a
 * Secret of another namespace.
 */
export function checkSecretRef(namespace: string, ref: { name: string; key: string }): void {
  const shown = (v: unknown) => {
    const text = JSON.stringify(v) ?? String(v);
    return text.length > 80 ? text.slice(0, 80) + "…" : text;
  };
  const name = ref?.name;
  if (typeof name !== "string" || name.length > 253 || !SECRET_NAME.test(name)) {
    throw new GateCredentialsError(
      namespace,
      String(name),
      `SecretRef name ${shown(name)} is not a Secret name (lower-case letters, digits, '-' and '.'); ` +
        `a gate reads Secrets of the rollout's namespace ${namespace} only`,
    );
  }
  const key = ref.key;
  if (typeof key !== "string" || key.length > 253 || !SECRET_KEY.test(key)) {
    throw new GateCredentialsError(
      namespace,
      name,
      `SecretRef key ${shown(key)} of Secret ${namespace}/${name} is not a Secret key (letters, digits, '-', '_' and '.')`,
    );
  }
}

/**
 * The value (decoded) of `ref.key` in a Secret read for a gate; throws GateCredentialsError when the
 * ref is no Secret name/key, the object is not that Secret of `namespace`, or the Secret does not
 * carry GATE_CREDENTIALS_LABEL=true or has no such key.
 */
export function gateCredentialFrom(
  secret: SecretLike,
  namespace: string,
  ref: { name: string; key: string },
): string {
  checkSecretRef(namespace, ref);
  const meta = secret.metadata;
  if (
    (meta?.namespace !== undefined && meta.namespace !== namespace) ||
    (meta?.name !== undefined && meta.name !== ref.name)
  ) {
    throw new GateCredentialsError(
      namespace,
      ref.name,
      `the object read for Secret ${namespace}/${ref.name} is another object; not used`,
    );
  }
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
