// A small Prometheus exporter a test controls exactly (prom-client on loopback), registered with
// the environment's real Prometheus as a scrape target. Every series carries the test's namespace.
import * as http from "node:http";
import { AddressInfo } from "node:net";
import { Counter, Gauge, Registry } from "prom-client";
import { addScrapeTarget, removeScrapeTarget } from "../../hack/env/prometheus";
import { env, promQuery, waitFor } from "./env";

export interface TestExporter {
  registry: Registry;
  value: Gauge<"series">;
  requests: Counter<"model_name" | "target_model_name" | "pool">;
  /** Waits until Prometheus has scraped the current values (the test's own marker gauge). */
  scraped(): Promise<void>;
  close(): Promise<void>;
}

export async function startExporter(namespace: string): Promise<TestExporter> {
  const registry = new Registry();
  const value = new Gauge({
    name: "modelrollout_test_value",
    help: "a value the test sets",
    labelNames: ["series"],
    registers: [registry],
  });
  const requests = new Counter({
    name: "inference_objective_request_total",
    help: "requests as the picker counts them",
    labelNames: ["model_name", "target_model_name", "pool"],
    registers: [registry],
  });
  const marker = new Gauge({
    name: "modelrollout_test_marker",
    help: "bumped by scraped()",
    registers: [registry],
  });
  const server = http.createServer((req, res) => {
    void registry.metrics().then(text => {
      res.setHeader("content-type", registry.contentType);
      res.end(text);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const info = env().info;
  const id = `test-exporter.${namespace}`;
  addScrapeTarget(info.stateDir, id, `127.0.0.1:${port}`, {
    namespace,
    component: "test-exporter",
  });
  let generation = 0;
  const exporter: TestExporter = {
    registry,
    value,
    requests,
    async scraped() {
      marker.set(++generation);
      const want = generation;
      await waitFor(
        `Prometheus to scrape the test exporter (generation ${want})`,
        async () => {
          const r = await promQuery(
            info.prometheusUrl,
            `modelrollout_test_marker{namespace="${namespace}"}`,
          );
          return r.length === 1 && Number(r[0].value[1]) >= want;
        },
        30000,
      );
    },
    async close() {
      removeScrapeTarget(info.stateDir, id);
      await new Promise<void>(resolve => server.close(() => resolve()));
    },
  };
  await exporter.scraped();
  return exporter;
}
