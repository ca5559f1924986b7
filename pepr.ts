// First: one keep-alive connection pool for kubernetes-fluent-client, before it imports undici.
import "./capabilities/shared-http-agent";
import { PeprModule } from "pepr";
// cfg loads the Pepr configuration (uuid, rbac, ...) from package.json
import cfg from "./package.json";
import { ModelRollouts } from "./capabilities";
import { startOperatorRuntime, waitForApiserver } from "./capabilities/runtime";

// The watcher serves /healthz and /metrics on PEPR_PORT (default 3000, as Pepr's own default), so
// that several local operators (tests, benchmarks) can run side by side.
const port = Number(process.env.PEPR_PORT ?? 3000);

async function main(): Promise<void> {
  if (process.env.PEPR_MODE === "build") {
    new PeprModule(cfg, [ModelRollouts], { deferStart: true });
    return;
  }
  // Pepr creates its store once, at construction, and never retries: wait for the apiserver first.
  await waitForApiserver();
  const module = new PeprModule(cfg, [ModelRollouts], { deferStart: true });
  module.start(port);
  const release = await startOperatorRuntime(port);
  // Give the Lease up before Pepr's own SIGTERM handler exits, so the other replica takes over
  // at once instead of after the lease duration.
  const peprHandlers = process.listeners("SIGTERM");
  process.removeAllListeners("SIGTERM");
  process.once("SIGTERM", () => {
    const done = () => peprHandlers.forEach(handler => handler("SIGTERM"));
    void Promise.race([release(), new Promise(resolve => setTimeout(resolve, 2000))]).finally(done);
  });
}

main().catch(err => {
  console.error("ModelRollout operator failed to start:", err);
  process.exit(1);
});
