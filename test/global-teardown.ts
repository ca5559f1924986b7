import { stopCluster } from "../hack/env/cluster";

export default async function globalTeardown(): Promise<void> {
  if (
    process.env.MODELROLLOUT_ENV_STARTED_BY_TESTS === "1" &&
    process.env.MODELROLLOUT_KEEP_ENV !== "1"
  ) {
    await stopCluster(msg => process.stderr.write(`[env] ${msg}\n`), { wipe: true });
  }
}
