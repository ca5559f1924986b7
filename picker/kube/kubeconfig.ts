// Where the picker reaches the apiserver and how it authenticates: $KUBECONFIG (paths joined by
// the platform's delimiter, merged as kubectl does: the first file that names an entry wins),
// else ~/.kube/config, else the pod's service account (in-cluster). The picker's own small
// Kubernetes client (client.ts, watch.ts) uses it instead of @kubernetes/client-node, which alone
// holds ~50 MiB of the process (bench/picker/README.md, "Memory (issue 19)").

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { load as loadYaml } from "js-yaml";

/** What a request to the apiserver needs. The token is read again for every request (rotation). */
export interface KubeConnection {
  /** e.g. https://10.96.0.1:443, without a trailing slash. */
  server: string;
  ca?: string;
  cert?: string;
  key?: string;
  insecureSkipTlsVerify: boolean;
  tlsServerName?: string;
  /** The Authorization header's value, if any: "Bearer …" or "Basic …". */
  authorization(): string | undefined;
  /** Where it came from, for logs and errors: a kubeconfig path and context, or "in-cluster". */
  source: string;
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

type Json = Record<string, unknown>;
type ReadFile = (file: string) => string;

const readUtf8: ReadFile = file => fs.readFileSync(file, "utf8");

function obj(value: unknown): Json | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Json)
    : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** Named entries of one kubeconfig list (clusters, users, contexts) by name. */
function named(
  config: Json,
  list: string,
  field: string,
  into: Map<string, Json>,
  dir: string,
  dirOf: Map<Json, string>,
): void {
  const entries = Array.isArray(config[list]) ? (config[list] as unknown[]) : [];
  for (const entry of entries) {
    const name = str(obj(entry)?.name);
    const value = obj(obj(entry)?.[field]);
    if (!name || !value || into.has(name)) continue;
    into.set(name, value);
    dirOf.set(value, dir);
  }
}

export interface KubeconfigFile {
  path: string;
  text: string;
}

/**
 * The connection of a kubeconfig's current context. Relative file paths are relative to the
 * file that names them; `-data` fields are base64 as in kubectl's files.
 */
export function connectionFromKubeconfig(
  files: readonly KubeconfigFile[],
  readFile: ReadFile = readUtf8,
): KubeConnection {
  const clusters = new Map<string, Json>();
  const users = new Map<string, Json>();
  const contexts = new Map<string, Json>();
  const dirOf = new Map<Json, string>();
  let currentContext: string | undefined;
  for (const file of files) {
    const config = obj(loadYaml(file.text));
    if (!config) throw new Error(`kubeconfig ${file.path}: not a YAML mapping; fix the file`);
    currentContext ??= str(config["current-context"]);
    const dir = path.dirname(file.path);
    named(config, "clusters", "cluster", clusters, dir, dirOf);
    named(config, "users", "user", users, dir, dirOf);
    named(config, "contexts", "context", contexts, dir, dirOf);
  }
  const where = files.map(f => f.path).join(path.delimiter);
  if (!currentContext) {
    throw new Error(
      `kubeconfig ${where}: no current-context; set one with kubectl config use-context`,
    );
  }
  const context = contexts.get(currentContext);
  const cluster = clusters.get(str(context?.cluster) ?? "");
  if (!context || !cluster) {
    throw new Error(
      `kubeconfig ${where}: context "${currentContext}" or its cluster is missing; fix the file`,
    );
  }
  const user = users.get(str(context.user) ?? "") ?? {};
  const source = `kubeconfig ${where}, context ${currentContext}`;
  return {
    ...tlsOf(cluster, user, dirOf, readFile, source),
    authorization: authorizationOf(user, dirOf.get(user) ?? ".", readFile, source),
    source,
  };
}

/** "-data" (base64) or a file path relative to the kubeconfig's directory. */
function material(entry: Json, field: string, dir: string, readFile: ReadFile): string | undefined {
  const data = str(entry[`${field}-data`]);
  if (data) return Buffer.from(data, "base64").toString("utf8");
  const file = str(entry[field]);
  return file ? readFile(path.resolve(dir, file)) : undefined;
}

function tlsOf(
  cluster: Json,
  user: Json,
  dirOf: Map<Json, string>,
  readFile: ReadFile,
  source: string,
): Omit<KubeConnection, "authorization" | "source"> {
  const server = str(cluster.server)?.replace(/\/+$/, "");
  if (!server) throw new Error(`${source}: the cluster has no server; fix the kubeconfig`);
  if (str(cluster["proxy-url"])) {
    throw new Error(`${source}: proxy-url is not supported by the picker; remove it`);
  }
  const clusterDir = dirOf.get(cluster) ?? ".";
  const userDir = dirOf.get(user) ?? ".";
  return {
    server,
    ca: material(cluster, "certificate-authority", clusterDir, readFile),
    cert: material(user, "client-certificate", userDir, readFile),
    key: material(user, "client-key", userDir, readFile),
    insecureSkipTlsVerify: cluster["insecure-skip-tls-verify"] === true,
    tlsServerName: str(cluster["tls-server-name"]),
  };
}

function authorizationOf(
  user: Json,
  dir: string,
  readFile: ReadFile,
  source: string,
): () => string | undefined {
  if (user.exec !== undefined || user["auth-provider"] !== undefined) {
    throw new Error(
      `${source}: the user authenticates through ${user.exec !== undefined ? "exec" : "auth-provider"}, ` +
        "which the picker does not run; give it a token, tokenFile or client certificate " +
        "(in a cluster: its service account)",
    );
  }
  const token = str(user.token);
  if (token) return () => `Bearer ${token}`;
  const tokenFile = str(user.tokenFile);
  if (tokenFile) {
    const file = path.resolve(dir, tokenFile);
    return () => `Bearer ${readFile(file).trim()}`;
  }
  const username = str(user.username);
  if (username) {
    const basic = Buffer.from(`${username}:${str(user.password) ?? ""}`).toString("base64");
    return () => `Basic ${basic}`;
  }
  return () => undefined;
}

/** The pod's service account: its token file is read again for every request, as it rotates. */
export function inClusterConnection(
  env: NodeJS.ProcessEnv,
  readFile: ReadFile = readUtf8,
  dir = SERVICE_ACCOUNT_DIR,
): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new Error(
      "no kubeconfig: set KUBECONFIG, create ~/.kube/config, or run in a pod " +
        "(KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT unset)",
    );
  }
  const tokenFile = path.join(dir, "token");
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    ca: readFile(path.join(dir, "ca.crt")),
    insecureSkipTlsVerify: false,
    authorization: () => `Bearer ${readFile(tokenFile).trim()}`,
    source: "in-cluster service account",
  };
}

/** $KUBECONFIG, else ~/.kube/config, else in-cluster: the order kubectl and client-node use. */
export function loadConnection(env: NodeJS.ProcessEnv = process.env): KubeConnection {
  const listed = (env.KUBECONFIG ?? "").split(path.delimiter).filter(p => p !== "");
  const candidates = listed.length > 0 ? listed : [path.join(os.homedir(), ".kube", "config")];
  const files = candidates.filter(p => fs.existsSync(p)).map(p => ({ path: p, text: readUtf8(p) }));
  if (files.length > 0) return connectionFromKubeconfig(files);
  if (listed.length > 0) {
    throw new Error(`KUBECONFIG=${env.KUBECONFIG}: no such file; fix the path`);
  }
  return inClusterConnection(env);
}
