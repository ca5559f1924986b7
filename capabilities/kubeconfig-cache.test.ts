import { KubeConfig } from "@kubernetes/client-node";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { cacheKubeconfigFiles } from "./kubeconfig-cache";

const kubeconfig = (server: string) => `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: ${server}
users:
- name: admin
  user:
    token: abc
contexts:
- name: local
  context:
    cluster: local
    user: admin
current-context: local
`;

describe("cacheKubeconfigFiles", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kubeconfig-cache-"));
  const file = path.join(dir, "config");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const load = () => {
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    return kc;
  };

  it("reuses the parsed file while it is unchanged and rereads it when it changes", () => {
    cacheKubeconfigFiles();
    const mtime = new Date("2026-01-01T00:00:00Z");
    fs.writeFileSync(file, kubeconfig("https://one.example:6443"));
    fs.utimesSync(file, mtime, mtime);
    const first = load();
    expect(first.getCurrentCluster()?.server).toBe("https://one.example:6443");
    expect(first.getCurrentUser()?.token).toBe("abc");

    // Same size and mtime, other bytes: served from the cache, so the file was not read again.
    fs.writeFileSync(file, kubeconfig("https://ONE.example:6443"));
    fs.utimesSync(file, mtime, mtime);
    expect(load().getCurrentCluster()?.server).toBe("https://one.example:6443");

    // Another size (and mtime): a rotated kubeconfig is read again.
    fs.writeFileSync(file, kubeconfig("https://two.example.internal:16443"));
    expect(load().getCurrentCluster()?.server).toBe("https://two.example.internal:16443");
  });

  it("gives every KubeConfig its own lists", () => {
    fs.writeFileSync(file, kubeconfig("https://one.example:6443"));
    const a = load();
    a.addCluster({ name: "extra", server: "https://extra:1", skipTLSVerify: false });
    expect(load().clusters.map(c => c.name)).toEqual(["local"]);
  });
});
