// Scrapes every endpoint's /metrics about every 50 ms over kept-alive connections (undici),
// with a timeout per scrape, at most one scrape in flight per endpoint, and a bound on how many
// run at once. A failed or slow scrape leaves the old metrics in place; they turn stale after
// 200 ms and the scheduler then treats the endpoint as saturated.

import http from "node:http";
import { get } from "./http-get";
import { LoraSeriesMemory, newLoraSeriesMemory, vllmMetricsFromText } from "./core/promtext";
import { EndpointMetrics } from "./core/types";

export interface ScrapeTarget {
  scrapeAddresses(): string[];
  setMetrics(address: string, metrics: EndpointMetrics): void;
  noteScrapeError(address: string, message: string): void;
}

export interface ScraperOptions {
  intervalMs: number;
  timeoutMs: number;
  concurrency: number;
  path: string;
  /** Larger pages are cut off: a misbehaving server must not stall the event loop. */
  maxBodyBytes: number;
  now: () => number;
  onError?: (address: string, message: string) => void;
}

export const defaultScraperOptions: ScraperOptions = {
  intervalMs: 50,
  timeoutMs: 1000,
  concurrency: 16,
  path: "/metrics",
  maxBodyBytes: 8 << 20,
  now: () => performance.now(),
};

export class MetricsScraper {
  private readonly options: ScraperOptions;
  private readonly agent: http.Agent;
  private readonly inFlight = new Set<string>();
  /** Per endpoint, what the previous scrape showed of vllm:lora_requests_info (ties). */
  private readonly loraMemory = new Map<string, LoraSeriesMemory>();
  private readonly queue: string[] = [];
  private active = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: ScrapeTarget,
    options: Partial<ScraperOptions> = {},
  ) {
    this.options = { ...defaultScraperOptions, ...options };
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  }

  start(): void {
    if (this.timer) return;
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.agent.destroy();
  }

  /** Queues one scrape of every endpoint that has none in flight. */
  tick(): void {
    const addresses = this.target.scrapeAddresses();
    if (this.loraMemory.size > addresses.length) {
      const live = new Set(addresses);
      for (const address of this.loraMemory.keys())
        if (!live.has(address)) this.loraMemory.delete(address);
    }
    for (const address of addresses) {
      if (this.inFlight.has(address)) continue;
      this.inFlight.add(address);
      this.queue.push(address);
    }
    this.pump();
  }

  /** Scrapes all endpoints once and resolves when done (tests, startup). */
  async scrapeAll(): Promise<void> {
    await Promise.all(this.target.scrapeAddresses().map(a => this.scrape(a)));
  }

  private pump(): void {
    while (this.active < this.options.concurrency && this.queue.length > 0) {
      const address = this.queue.shift()!;
      this.active++;
      void this.scrape(address).finally(() => {
        this.active--;
        this.inFlight.delete(address);
        this.pump();
      });
    }
  }

  private async scrape(address: string): Promise<void> {
    try {
      // One timeout for the whole page, however it trickles in.
      const res = await get(`http://${address}${this.options.path}`, {
        agent: this.agent,
        timeoutMs: this.options.timeoutMs,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new Error(`HTTP ${res.statusCode}`);
      }
      const text = await readLimited(res.body, this.options.maxBodyBytes);
      let memory = this.loraMemory.get(address);
      if (!memory) this.loraMemory.set(address, (memory = newLoraSeriesMemory()));
      const metrics = vllmMetricsFromText(text, this.options.now(), memory);
      if (!metrics) throw new Error("no vllm:num_requests_waiting/running in the page");
      this.target.setMetrics(address, metrics);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.target.noteScrapeError(address, message);
      this.options.onError?.(address, message);
    }
  }
}

async function readLimited(body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) throw new Error(`metrics page larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
