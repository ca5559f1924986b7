// Integration tests share one local environment: started here once, or reused when one is running.
import { ensureCluster, isClusterRunning } from "../hack/env/cluster";

export default async function globalSetup(): Promise<void> {
  const reused = isClusterRunning();
  const info = await ensureCluster(msg => process.stderr.write(`[env] ${msg}\n`));
  process.env.KUBECONFIG = info.kubeconfig;
  // Read by global-teardown: stop only what this run started.
  process.env.MODELROLLOUT_ENV_STARTED_BY_TESTS = reused ? "" : "1";
}
