// `npm run cluster:up` / `npm run cluster:down` / `npm run cluster:status`.
import { describeCluster, ensureCluster, stopCluster } from "./env/cluster";

async function main(): Promise<void> {
  const [command, ...flags] = process.argv.slice(2);
  switch (command) {
    case "up": {
      const started = Date.now();
      const info = await ensureCluster();
      process.stderr.write(`[cluster] ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      process.stdout.write(`${describeCluster(info)}\n`);
      return;
    }
    case "down":
      // Wipes etcd and Prometheus data unless --keep-data: the next `up` starts from a clean world.
      await stopCluster(undefined, { wipe: !flags.includes("--keep-data") });
      return;
    default:
      process.stderr.write("usage: tsx hack/cluster.ts up | down [--keep-data]\n");
      process.exitCode = 2;
  }
}

main().catch(err => {
  process.stderr.write(`[cluster] error: ${err.message}\n`);
  process.exitCode = 1;
});
