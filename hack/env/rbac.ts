// An operator identity bound to exactly the RBAC rules the module declares (package.json pepr.rbac),
// plus the store Role Pepr itself needs — as `pepr build` would deploy it. Used to prove the rules
// are sufficient against the RBAC-enabled local apiserver.
import * as fs from "node:fs";
import * as path from "node:path";
import { ClusterInfo, kubectlFor } from "./cluster";
import { issueClientCert, kubeconfigYaml } from "./certs";
import { repoRoot } from "./config";

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** The module's declared rules (package.json pepr.rbac). */
export function declaredRules(): PolicyRule[] {
  return JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")).pepr.rbac;
}

/**
 * Writes a kubeconfig for `user` authorized only by the module's declared rules (or `rules`, for a
 * test of what the operator does without some of them); returns its path. Applying it again with
 * other rules changes the user's rights in place.
 */
export function operatorKubeconfig(
  info: ClusterInfo,
  user = "modelrollout-operator",
  rules: PolicyRule[] = declaredRules(),
): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"));
  const name =
    user === "modelrollout-operator" ? `pepr-${pkg.pepr.uuid}` : `pepr-${pkg.pepr.uuid}-${user}`;
  const objects = [
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name },
      rules,
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
      subjects: [{ kind: "User", name: user, apiGroup: "rbac.authorization.k8s.io" }],
    },
    {
      // Pepr's store (pepr src/lib/assets/rbac.ts storeRole), which every Pepr controller uses.
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: `${name}-store`, namespace: "pepr-system" },
      rules: [
        {
          apiGroups: ["pepr.dev"],
          resources: ["peprstores"],
          verbs: ["create", "get", "patch", "watch", "list"],
        },
      ],
    },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: `${name}-store`, namespace: "pepr-system" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: `${name}-store` },
      subjects: [{ kind: "User", name: user, apiGroup: "rbac.authorization.k8s.io" }],
    },
  ];
  kubectlFor(info)(
    ["apply", "--server-side", "--force-conflicts", "--field-manager=modelrollout-env", "-f", "-"],
    JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }),
  );
  const cert = issueClientCert(info.pki, user);
  const file = path.join(info.stateDir, `kubeconfig-${user}`);
  fs.writeFileSync(file, kubeconfigYaml(info.apiserverUrl, info.pki.caCert, cert, user), {
    mode: 0o600,
  });
  return file;
}
