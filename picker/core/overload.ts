// Self-protection of the picker process: past its own capacity (its CPU), requests queue in the
// event loop and every one of them gets slower until clients give up — a queueing collapse. The
// front doors ask this guard first, before they read or parse a body, and answer a fast 429
// while it says the process is overloaded. Pure: the caller (app.ts) feeds it the event loop's
// delay, and the front doors the requests they have taken in but not decided yet.

export interface OverloadConfig {
  /**
   * Smoothed event-loop delay (ms) above which new requests get 429 at once; 0: off. The delay is
   * how late a periodic timer fires: the time every callback waits for the loop, new requests
   * included.
   */
  maxLoopDelayMs: number;
  /** Requests taken in and not decided yet (flow control's held ones included); 0: no limit. */
  maxPending: number;
}

export const defaultOverloadConfig: OverloadConfig = { maxLoopDelayMs: 100, maxPending: 4096 };

/** How often the event loop's delay is sampled, and the weight of the newest sample. */
export const loopSampleMs = 10;
const newestWeight = 0.25;

export class OverloadGuard {
  private smoothedDelayMs = 0;
  private pendingCount = 0;
  private rejectedCount = 0;

  constructor(private readonly config: OverloadConfig) {}

  /**
   * A timer meant to fire every `loopSampleMs` fired `lateMs` late. Smoothed (an exponentially
   * weighted mean over about four samples), so that one garbage-collector pause does not turn
   * requests away, while a loop that stays behind does.
   */
  noteLoopDelay(lateMs: number): void {
    const sample = Math.max(0, lateMs);
    this.smoothedDelayMs += newestWeight * (sample - this.smoothedDelayMs);
  }

  /** True: take the request (call `release` once it is decided); false: answer 429 now. */
  admit(): boolean {
    const { maxLoopDelayMs, maxPending } = this.config;
    const overloaded =
      (maxLoopDelayMs > 0 && this.smoothedDelayMs > maxLoopDelayMs) ||
      (maxPending > 0 && this.pendingCount >= maxPending);
    if (overloaded) {
      this.rejectedCount++;
      return false;
    }
    this.pendingCount++;
    return true;
  }

  /** A request `admit` took was decided (placed, refused, or its client left). */
  release(): void {
    if (this.pendingCount > 0) this.pendingCount--;
  }

  get loopDelayMs(): number {
    return this.smoothedDelayMs;
  }

  get pending(): number {
    return this.pendingCount;
  }

  get rejected(): number {
    return this.rejectedCount;
  }
}
