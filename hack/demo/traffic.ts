// The demo's clients: a bounded, open-loop load of OpenAI chat completions per model name, sent to
// the local gateway on loopback only. It records who answered (the gateway's x-gateway-backend
// header and the response's `model`, which names the LoRA adapter) and every non-2xx status.

export interface TrafficStream {
  /** The public model name clients ask for (`mymodel`, `travelhelper`). */
  model: string;
  ratePerSecond: number;
  prompt: string;
}

export interface StreamStats {
  sent: number;
  ok: number;
  failed: number;
  byStatus: Record<string, number>;
  /** Successful answers per InferencePool (gateway header) and per answering model (LoRA adapter). */
  byPool: Record<string, number>;
  byAnsweringModel: Record<string, number>;
  /** Failed answers per InferencePool that gave them ("gateway" when none was chosen). */
  failedByPool: Record<string, number>;
}

export interface TrafficOptions {
  maxInFlight: number;
  /** Hard stop: the generator never runs longer than this. */
  maxDurationMs: number;
  requestTimeoutMs: number;
  tickMs: number;
}

export const defaultTrafficOptions: TrafficOptions = {
  maxInFlight: 32,
  maxDurationMs: 10 * 60_000,
  requestTimeoutMs: 10_000,
  tickMs: 50,
};

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

function emptyStats(): StreamStats {
  return {
    sent: 0,
    ok: 0,
    failed: 0,
    byStatus: {},
    byPool: {},
    byAnsweringModel: {},
    failedByPool: {},
  };
}

function bump(bucket: Record<string, number>, key: string): void {
  bucket[key] = (bucket[key] ?? 0) + 1;
}

export class TrafficGenerator {
  private readonly stats = new Map<string, StreamStats>();
  private readonly credits = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopTimer: NodeJS.Timeout | undefined;
  private last = 0;

  constructor(
    private readonly baseUrl: string,
    private readonly streams: TrafficStream[],
    private readonly options: TrafficOptions = defaultTrafficOptions,
  ) {
    const host = new URL(baseUrl).hostname;
    if (!LOOPBACK.has(host))
      throw new Error(`the demo's traffic goes to loopback only, not to ${host}`);
    for (const s of streams) {
      this.stats.set(s.model, emptyStats());
      this.credits.set(s.model, 0);
    }
  }

  start(): void {
    if (this.timer) return;
    this.last = performance.now();
    this.timer = setInterval(() => this.tick(), this.options.tickMs);
    this.stopTimer = setTimeout(() => void this.stop(), this.options.maxDurationMs);
    this.stopTimer.unref();
  }

  /** Stops sending and waits for the requests in flight. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.stopTimer);
    this.timer = undefined;
    await Promise.all([...this.inFlight]);
  }

  snapshot(): Record<string, StreamStats> {
    return Object.fromEntries([...this.stats].map(([k, v]) => [k, structuredClone(v)]));
  }

  private tick(): void {
    const now = performance.now();
    const elapsed = (now - this.last) / 1000;
    this.last = now;
    for (const s of this.streams) {
      // Credits accumulate at the rate; a backlog beyond one second is dropped, not burst later.
      let credit = Math.min(
        s.ratePerSecond,
        (this.credits.get(s.model) ?? 0) + s.ratePerSecond * elapsed,
      );
      while (credit >= 1 && this.inFlight.size < this.options.maxInFlight) {
        credit -= 1;
        this.send(s);
      }
      this.credits.set(s.model, credit);
    }
  }

  private send(s: TrafficStream): void {
    const stats = this.stats.get(s.model)!;
    stats.sent++;
    const p = this.request(s, stats).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async request(s: TrafficStream, stats: StreamStats): Promise<void> {
    try {
      const res = await fetch(`${this.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: s.model,
          temperature: 0,
          max_tokens: 8,
          messages: [{ role: "user", content: s.prompt }],
        }),
        signal: AbortSignal.timeout(this.options.requestTimeoutMs),
      });
      const text = await res.text();
      bump(stats.byStatus, String(res.status));
      const pool = res.headers.get("x-gateway-backend") ?? "gateway";
      if (!res.ok) {
        stats.failed++;
        bump(stats.failedByPool, pool);
        return;
      }
      stats.ok++;
      bump(stats.byPool, pool);
      try {
        const answered = (JSON.parse(text) as { model?: string }).model;
        if (answered) bump(stats.byAnsweringModel, answered);
      } catch {
        /* not JSON: counted by status only */
      }
    } catch (err) {
      stats.failed++;
      bump(stats.failedByPool, "gateway");
      bump(stats.byStatus, (err as Error).name === "TimeoutError" ? "timeout" : "network-error");
    }
  }
}
