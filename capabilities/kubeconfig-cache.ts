// kubernetes-fluent-client 3.11 builds a new KubeConfig for every API request
// (fluent/utils.js k8sCfg → loadFromDefault → read and YAML-parse the kubeconfig file): ~0.1 ms of
// CPU per request, a large share of the operator's CPU when a thousand rollouts step at once.
// This reuses the parsed file while it is unchanged (same mtime and size), so a rotated
// kubeconfig is still picked up on the next request. In-cluster (no kubeconfig file) nothing
// changes. Imported first by the capability, so it applies to `npm run operator` and the Pepr
// image alike.
import { KubeConfig } from "@kubernetes/client-node";
import * as fs from "node:fs";

interface Parsed {
  mtimeMs: number;
  size: number;
  clusters: KubeConfig["clusters"];
  contexts: KubeConfig["contexts"];
  users: KubeConfig["users"];
  currentContext: string;
}

const parsedFiles = new Map<string, Parsed>();
const loadFromFile = KubeConfig.prototype.loadFromFile;
let installed = false;

export function cacheKubeconfigFiles(): void {
  if (installed) return;
  installed = true;
  KubeConfig.prototype.loadFromFile = function (
    this: KubeConfig,
    file: string,
    opts?: Parameters<KubeConfig["loadFromFile"]>[1],
  ): void {
    if (opts) return loadFromFile.call(this, file, opts);
    const { mtimeMs, size } = fs.statSync(file);
    const known = parsedFiles.get(file);
    if (known && known.mtimeMs === mtimeMs && known.size === size) {
      // Copies of the lists: a caller may add clusters or users to its own KubeConfig.
      this.loadFromOptions({
        clusters: [...known.clusters],
        contexts: [...known.contexts],
        users: [...known.users],
        currentContext: known.currentContext,
      });
      return;
    }
    loadFromFile.call(this, file);
    parsedFiles.set(file, {
      mtimeMs,
      size,
      clusters: [...this.clusters],
      contexts: [...this.contexts],
      users: [...this.users],
      currentContext: this.currentContext,
    });
  };
}

cacheKubeconfigFiles();
