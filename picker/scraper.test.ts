import http from "node:http";
import { AddressInfo } from "node:net";
import { EndpointMetrics } from "./core/types";
import { MetricsScraper, ScrapeTarget } from "./scraper";

class Target implements ScrapeTarget {
  metrics = new Map<string, EndpointMetrics>();
  errors = new Map<string, string>();
  constructor(public addresses: string[]) {}
  scrapeAddresses() {
    return this.addresses;
  }
  setMetrics(a: string, m: EndpointMetrics) {
    this.metrics.set(a, m);
    this.errors.delete(a);
  }
  noteScrapeError(a: string, message: string) {
    this.errors.set(a, message);
  }
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(r => setTimeout(r, 5));
  }
}

interface FakeServer {
  address: string;
  state: {
    page: string;
    status: number;
    delayMs: number;
    hang: boolean;
    /** Headers at once, then a line of the page every 40 ms, never the end. */
    dribble: boolean;
    active: number;
    maxActive: number;
    hits: number;
  };
  close(): Promise<void>;
}

/** Concurrency over all fake servers of a test. */
const shared = { active: 0, maxActive: 0 };

async function metricsServer(): Promise<FakeServer> {
  const state = {
    page: "",
    status: 200,
    delayMs: 0,
    hang: false,
    dribble: false,
    active: 0,
    maxActive: 0,
    hits: 0,
  };
  const server = http.createServer((_req, res) => {
    state.hits++;
    state.active++;
    shared.active++;
    state.maxActive = Math.max(state.maxActive, state.active);
    shared.maxActive = Math.max(shared.maxActive, shared.active);
    if (state.hang) return;
    if (state.dribble) {
      res.writeHead(200, { "content-type": "text/plain" });
      const timer = setInterval(() => res.write("# still here\n"), 40);
      res.on("close", () => clearInterval(timer));
      return;
    }
    setTimeout(() => {
      state.active--;
      shared.active--;
      res.writeHead(state.status, { "content-type": "text/plain" }).end(state.page);
    }, state.delayMs);
  });
  await new Promise<void>(r => server.listen(0, "127.0.0.1", () => r()));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () => {
      server.closeAllConnections();
      return new Promise(r => server.close(() => r()));
    },
  };
}

const page = (waiting: number) =>
  `# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} ${waiting}\n` +
  `vllm:num_requests_running{model_name="m"} 1\nvllm:kv_cache_usage_perc{model_name="m"} 0.3\n`;

describe("MetricsScraper", () => {
  it("keeps every endpoint's metrics current and notes failures", async () => {
    const srv = await metricsServer();
    srv.state.page = page(2);
    const target = new Target([srv.address]);
    const scraper = new MetricsScraper(target, {
      intervalMs: 20,
      timeoutMs: 500,
      now: () => Date.now(),
    });
    scraper.start();
    try {
      await waitFor(() => target.metrics.get(srv.address)?.waiting === 2, "first scrape");
      expect(target.metrics.get(srv.address)).toMatchObject({ running: 1, kvCacheUsage: 0.3 });
      srv.state.page = page(7);
      await waitFor(() => target.metrics.get(srv.address)?.waiting === 7, "an update");
      const hits = srv.state.hits;
      await waitFor(() => srv.state.hits >= hits + 5, "repeated scrapes at the interval");
      srv.state.status = 500;
      await waitFor(() => target.errors.get(srv.address) === "HTTP 500", "a failure");
      expect(target.metrics.get(srv.address)?.waiting).toBe(7); // the last good scrape stays
      srv.state.status = 200;
      srv.state.page = "something_else 1\n";
      await waitFor(
        () => (target.errors.get(srv.address) ?? "").includes("no vllm"),
        "a non-vLLM page",
      );
    } finally {
      await scraper.stop();
      await srv.close();
    }
  });

  it("bounds concurrency and never overlaps scrapes of one endpoint", async () => {
    const servers = await Promise.all([1, 2, 3, 4, 5].map(() => metricsServer()));
    for (const s of servers) {
      s.state.page = page(0);
      s.state.delayMs = 60;
    }
    shared.maxActive = 0;
    const target = new Target(servers.map(s => s.address));
    const scraper = new MetricsScraper(target, {
      intervalMs: 10,
      timeoutMs: 1000,
      concurrency: 2,
      now: () => Date.now(),
    });
    scraper.start();
    try {
      await waitFor(() => target.metrics.size === 5, "all endpoints scraped");
      await waitFor(() => servers.every(s => s.state.hits >= 3), "several rounds");
      expect(shared.maxActive).toBe(2);
      for (const s of servers) expect(s.state.maxActive).toBe(1);
    } finally {
      await scraper.stop();
      await Promise.all(servers.map(s => s.close()));
    }
  });

  it("gives up on a scrape that takes longer than the timeout", async () => {
    const srv = await metricsServer();
    srv.state.hang = true;
    const target = new Target([srv.address]);
    const scraper = new MetricsScraper(target, {
      intervalMs: 1000,
      timeoutMs: 100,
      now: () => Date.now(),
    });
    const t0 = Date.now();
    await scraper.scrapeAll();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(target.errors.get(srv.address)).toMatch(/no answer in 100 ms/);
    expect(target.metrics.size).toBe(0);
    // A page that trickles in (every chunk within the agent's body timeout) is bounded too.
    srv.state.hang = false;
    srv.state.dribble = true;
    target.errors.clear();
    const t1 = Date.now();
    await scraper.scrapeAll();
    expect(Date.now() - t1).toBeLessThan(2000);
    expect(target.errors.get(srv.address)).toMatch(/no answer in 100 ms/);
    expect(target.metrics.size).toBe(0);
    await scraper.stop();
    await srv.close();
  });
});
