import { OverloadGuard } from "./overload";

describe("OverloadGuard", () => {
  it("turns requests away while the smoothed event-loop delay is over its bound, not for one pause", () => {
    const guard = new OverloadGuard({ maxLoopDelayMs: 50, maxPending: 0 });
    guard.noteLoopDelay(150); // one garbage-collector pause: 37.5 ms smoothed
    expect(guard.admit()).toBe(true);
    for (let i = 0; i < 4; i++) guard.noteLoopDelay(150);
    expect(guard.loopDelayMs).toBeGreaterThan(50);
    expect(guard.admit()).toBe(false);
    expect(guard.rejected).toBe(1);
    // The loop catches up: requests are taken again.
    for (let i = 0; i < 10; i++) guard.noteLoopDelay(0);
    expect(guard.admit()).toBe(true);
  });

  it("takes at most maxPending undecided requests", () => {
    const guard = new OverloadGuard({ maxLoopDelayMs: 0, maxPending: 2 });
    expect(guard.admit()).toBe(true);
    expect(guard.admit()).toBe(true);
    expect(guard.admit()).toBe(false);
    guard.release();
    expect(guard.pending).toBe(1);
    expect(guard.admit()).toBe(true);
    guard.noteLoopDelay(10_000); // off: the delay does not count
    guard.release();
    expect(guard.admit()).toBe(true);
  });
});
