import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  connectionFromKubeconfig,
  inClusterConnection,
  loadConnection,
  type KubeconfigFile,
} from "./kubeconfig";

const b64 = (s: string) => Buffer.from(s).toString("base64");

function kubeconfig(user: string, cluster = "server: https://10.0.0.1:6443/"): string {
  return `apiVersion: v1
kind: Config
current-context: ctx
contexts:
  - name: ctx
    context: {cluster: c1, user: u1, namespace: serving}
clusters:
  - name: c1
    cluster:
      ${cluster}
users:
  - name: u1
    user:
      ${user}
`;
}

const noFiles = (file: string): string => {
  throw new Error(`unexpected read of ${file}`);
};

describe("connectionFromKubeconfig", () => {
  it("reads the current context's server, inline CA and client certificate", () => {
    const files: KubeconfigFile[] = [
      {
        path: "/home/me/.kube/config",
        text: kubeconfig(
          `{client-certificate-data: ${b64("CERT")}, client-key-data: ${b64("KEY")}}`,
          `{server: "https://10.0.0.1:6443/", certificate-authority-data: ${b64("CA")}}`,
        ),
      },
    ];
    const c = connectionFromKubeconfig(files, noFiles);
    expect(c).toMatchObject({
      server: "https://10.0.0.1:6443",
      ca: "CA",
      cert: "CERT",
      key: "KEY",
      insecureSkipTlsVerify: false,
    });
    expect(c.authorization()).toBeUndefined();
    expect(c.source).toBe("kubeconfig /home/me/.kube/config, context ctx");
  });

  it("reads files relative to the kubeconfig and a token file again for every request", () => {
    const reads: string[] = [];
    let token = "first";
    const readFile = (file: string) => {
      reads.push(file);
      return file.endsWith("token") ? `${token}\n` : `contents of ${path.basename(file)}`;
    };
    const c = connectionFromKubeconfig(
      [
        {
          path: "/etc/kube/config",
          text: kubeconfig(
            "{tokenFile: secrets/token}",
            "{server: https://k, certificate-authority: ca.crt, insecure-skip-tls-verify: true, tls-server-name: kubernetes}",
          ),
        },
      ],
      readFile,
    );
    expect(c.ca).toBe("contents of ca.crt");
    expect(c.insecureSkipTlsVerify).toBe(true);
    expect(c.tlsServerName).toBe("kubernetes");
    expect(c.authorization()).toBe("Bearer first");
    token = "rotated";
    expect(c.authorization()).toBe("Bearer rotated");
    expect(reads).toEqual([
      "/etc/kube/ca.crt",
      "/etc/kube/secrets/token",
      "/etc/kube/secrets/token",
    ]);
  });

  it("takes a static token, or basic auth", () => {
    const token = connectionFromKubeconfig([{ path: "k", text: kubeconfig("{token: abc}") }]);
    expect(token.authorization()).toBe("Bearer abc");
    const basic = connectionFromKubeconfig([
      { path: "k", text: kubeconfig("{username: ann, password: pw}") },
    ]);
    expect(basic.authorization()).toBe(`Basic ${b64("ann:pw")}`);
  });

  it("refuses exec and auth-provider users with the fix", () => {
    const exec = kubeconfig("{exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}");
    expect(() => connectionFromKubeconfig([{ path: "k", text: exec }])).toThrow(
      /exec, which the picker does not run; give it a token, tokenFile or client certificate/,
    );
    const provider = kubeconfig("{auth-provider: {name: gcp}}");
    expect(() => connectionFromKubeconfig([{ path: "k", text: provider }])).toThrow(
      /auth-provider/,
    );
  });

  it("merges several files: the first to name an entry or a current-context wins", () => {
    const first = `current-context: b
users: [{name: u1, user: {token: from-first}}]`;
    const second = `current-context: ctx
contexts:
  - {name: b, context: {cluster: c1, user: u1}}
clusters: [{name: c1, cluster: {server: "https://second"}}]
users: [{name: u1, user: {token: from-second}}]`;
    const c = connectionFromKubeconfig([
      { path: "/a", text: first },
      { path: "/b", text: second },
    ]);
    expect(c.server).toBe("https://second");
    expect(c.authorization()).toBe("Bearer from-first");
    expect(c.source).toBe(`kubeconfig /a${path.delimiter}/b, context b`);
  });

  it("names what is missing", () => {
    expect(() => connectionFromKubeconfig([{ path: "/k", text: "kind: Config" }])).toThrow(
      "kubeconfig /k: no current-context; set one with kubectl config use-context",
    );
    expect(() =>
      connectionFromKubeconfig([{ path: "/k", text: "current-context: nope\ncontexts: []" }]),
    ).toThrow('context "nope" or its cluster is missing');
    expect(() =>
      connectionFromKubeconfig([
        { path: "/k", text: kubeconfig("{}", "{proxy-url: http://p, server: https://x}") },
      ]),
    ).toThrow("proxy-url is not supported");
  });
});

describe("inClusterConnection", () => {
  it("uses the service account's CA and token (read per request) and the service's host", () => {
    let token = "t1";
    const readFile = (file: string) => (file.endsWith("ca.crt") ? "CA" : token);
    const env = { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" };
    const c = inClusterConnection(env, readFile, "/sa");
    expect(c.server).toBe("https://[fd00::1]:443");
    expect(c.ca).toBe("CA");
    expect(c.authorization()).toBe("Bearer t1");
    token = "t2";
    expect(c.authorization()).toBe("Bearer t2");
    expect(
      inClusterConnection({ ...env, KUBERNETES_SERVICE_HOST: "10.96.0.1" }, readFile).server,
    ).toBe("https://10.96.0.1:443");
  });

  it("says how to give the picker a cluster when there is none", () => {
    expect(() => inClusterConnection({})).toThrow(/set KUBECONFIG, create ~\/.kube\/config/);
  });
});

describe("loadConnection", () => {
  it("prefers $KUBECONFIG and names a path that does not exist", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kubeconfig-"));
    const file = path.join(dir, "config");
    fs.writeFileSync(file, kubeconfig("{token: x}"));
    expect(
      loadConnection({ KUBECONFIG: `${path.join(dir, "none")}${path.delimiter}${file}` }).server,
    ).toBe("https://10.0.0.1:6443");
    expect(() => loadConnection({ KUBECONFIG: path.join(dir, "none") })).toThrow(/no such file/);
    fs.rmSync(dir, { recursive: true });
  });
});
