// Certificates of the local control plane, made with the openssl CLI: a CA, the apiserver's serving
// certificate, client certificates (admin = system:masters; any other identity for RBAC tests) and
// the service-account signing key pair.
import * as fs from "node:fs";
import * as path from "node:path";
import { run } from "./procs";

export interface ClientCert {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  saKey: string;
  saPub: string;
  admin: ClientCert;
}

function openssl(args: string[]): void {
  run("openssl", args);
}

function signed(
  pki: { dir: string; caCert: string; caKey: string },
  name: string,
  subject: string,
  extensions: string,
): ClientCert {
  const key = path.join(pki.dir, `${name}.key`);
  const csr = path.join(pki.dir, `${name}.csr`);
  const cert = path.join(pki.dir, `${name}.crt`);
  const ext = path.join(pki.dir, `${name}.ext`);
  fs.writeFileSync(ext, extensions);
  openssl(["genrsa", "-out", key, "2048"]);
  openssl(["req", "-new", "-key", key, "-subj", subject, "-out", csr]);
  openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    pki.caCert,
    "-CAkey",
    pki.caKey,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "3650",
    "-extfile",
    ext,
  ]);
  return { cert, key };
}

/** Creates the PKI once; later calls return the existing files. */
export function ensurePki(stateDir: string): Pki {
  const dir = path.join(stateDir, "pki");
  fs.mkdirSync(dir, { recursive: true });
  const pki: Pki = {
    dir,
    caCert: path.join(dir, "ca.crt"),
    caKey: path.join(dir, "ca.key"),
    serverCert: path.join(dir, "apiserver.crt"),
    serverKey: path.join(dir, "apiserver.key"),
    saKey: path.join(dir, "sa.key"),
    saPub: path.join(dir, "sa.pub"),
    admin: { cert: path.join(dir, "admin.crt"), key: path.join(dir, "admin.key") },
  };
  if (!fs.existsSync(pki.caCert)) {
    openssl(["genrsa", "-out", pki.caKey, "2048"]);
    openssl([
      "req",
      "-x509",
      "-new",
      "-nodes",
      "-key",
      pki.caKey,
      "-subj",
      "/CN=modelrollout-local-ca",
      "-days",
      "3650",
      "-out",
      pki.caCert,
    ]);
  }
  if (!fs.existsSync(pki.serverCert)) {
    signed(
      pki,
      "apiserver",
      "/CN=kube-apiserver",
      "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n",
    );
  }
  if (!fs.existsSync(pki.admin.cert)) issueClientCert(pki, "admin", ["system:masters"]);
  if (!fs.existsSync(pki.saKey)) {
    openssl(["genrsa", "-out", pki.saKey, "2048"]);
    openssl(["rsa", "-in", pki.saKey, "-pubout", "-out", pki.saPub]);
  }
  return pki;
}

/** A client certificate for user `user` in `groups`, signed by the local CA (reused if present). */
export function issueClientCert(
  pki: { dir: string; caCert: string; caKey: string },
  user: string,
  groups: string[] = [],
): ClientCert {
  const name = `user-${user.replace(/[^a-zA-Z0-9_.-]/g, "_")}`;
  const existing = {
    cert: path.join(pki.dir, `${name}.crt`),
    key: path.join(pki.dir, `${name}.key`),
  };
  if (user !== "admin" && fs.existsSync(existing.cert)) return existing;
  const subject = `/CN=${user}${groups.map(g => `/O=${g}`).join("")}`;
  const issued = signed(
    pki,
    user === "admin" ? "admin" : name,
    subject,
    "extendedKeyUsage=clientAuth\n",
  );
  return issued;
}

/** A kubeconfig with embedded CA and client certificate (the fluent client ignores insecure-skip-tls). */
export function kubeconfigYaml(
  server: string,
  caCert: string,
  client: ClientCert,
  user: string,
): string {
  const b64 = (file: string) => fs.readFileSync(file).toString("base64");
  return `apiVersion: v1
kind: Config
clusters:
  - name: modelrollout-local
    cluster:
      server: ${server}
      certificate-authority-data: ${b64(caCert)}
users:
  - name: ${user}
    user:
      client-certificate-data: ${b64(client.cert)}
      client-key-data: ${b64(client.key)}
contexts:
  - name: modelrollout-local
    context:
      cluster: modelrollout-local
      user: ${user}
      namespace: default
current-context: modelrollout-local
`;
}
