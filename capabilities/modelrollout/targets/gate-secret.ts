// A gate's provider credentials: one key of a labelled Secret in the rollout's namespace.
import { K8s, kind } from "kubernetes-fluent-client";
import {
  checkSecretRef,
  GATE_CREDENTIALS_LABEL,
  gateCredentialFrom,
} from "../../analysis/credentials";
import { apiFailure } from "../../api-failure";

/**
 * Reads a key of a Secret in the rollout's namespace (gate provider credentials). Only Secrets
 * labelled GATE_CREDENTIALS_LABEL=true: others, a missing key and a ref that is no Secret name
 * (path traversal: `../../ns/secrets/x`) throw GateCredentialsError (a permanent error naming the
 * Secret and the fix, never its content).
 */
export async function readSecretKey(
  namespace: string,
  ref: { name: string; key: string },
): Promise<string> {
  checkSecretRef(namespace, ref); // before the name goes into a request path
  let secret;
  try {
    secret = await K8s(kind.Secret).InNamespace(namespace).Get(ref.name);
  } catch (err) {
    if (apiFailure(err).status === 404)
      throw new Error(
        `Secret ${namespace}/${ref.name} not found; create it with the label ${GATE_CREDENTIALS_LABEL}=true or fix the SecretRef`,
        { cause: err },
      );
    throw err;
  }
  return gateCredentialFrom(secret, namespace, ref);
}
