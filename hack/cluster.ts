// `npm run cluster:up` / `npm run cluster:down` / `npm run cluster:check`.
import { describeCluster, ensureCluster, stopCluster } from "./env/cluster";
import { describeProblems, planPrerequisites, probeMachine } from "./env/prerequisites";

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
    case "check": {
      // What `up` would find, obtain and build first, changing nothing.
      const plan = planPrerequisites(await probeMachine());
      process.stdout.write(`found: ${plan.found.join(", ") || "-"}\n`);
      for (const s of plan.steps)
        process.stdout.write(
          s.kind === "apt"
            ? `would install Debian's ${s.packages.join(", ")} (apt-get, as root)\n`
            : "would build Prometheus from the Go module proxy (hack/build-binaries.sh prometheus)\n",
        );
      if (plan.builds.length)
        process.stdout.write(`would build from the Go module proxy: ${plan.builds.join(", ")}\n`);
      if (plan.problems.length) {
        process.stdout.write(`${describeProblems(plan.problems)}\n`);
        process.exitCode = 1;
      }
      return;
    }
    default:
      process.stderr.write("usage: tsx hack/cluster.ts up | down [--keep-data] | check\n");
      process.exitCode = 2;
  }
}

main().catch(err => {
  process.stderr.write(`[cluster] error: ${err.message}\n`);
  process.exitCode = 1;
});
