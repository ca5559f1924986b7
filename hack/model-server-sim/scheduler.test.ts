import { Scheduler, type Job } from "./scheduler";

function job(model: string, started: string[], isLora = model !== "base"): Job {
  return { model, isLora, kvBlocks: 2, start: () => started.push(model) };
}

describe("Scheduler", () => {
  it("runs at most max-num-seqs, queues the rest FIFO, rejects past the queue length", () => {
    const started: string[] = [];
    const s = new Scheduler({ maxNumSeqs: 1, maxLoras: 1, maxWaitingQueueLength: 2 });
    const [a, b, c, d] = ["base", "base", "base", "base"].map(m => job(m, started));
    expect(s.submit(a)).toBe("running");
    expect(s.submit(b)).toBe("waiting");
    expect(s.submit(c)).toBe("waiting");
    expect(s.submit(d)).toBe("rejected");
    expect(s.state()).toMatchObject({ running: 1, waiting: 2, kvBlocksInUse: 2 });
    s.finish(a);
    expect(started).toHaveLength(2);
    s.finish(c); // abandoned while waiting
    s.finish(b);
    expect(started).toHaveLength(2);
    expect(s.state()).toMatchObject({ running: 0, waiting: 0, kvBlocksInUse: 0 });
  });

  it("lets a LoRA request wait for an adapter slot; base requests pass it", () => {
    const started: string[] = [];
    const states: string[] = [];
    const s = new Scheduler({ maxNumSeqs: 4, maxLoras: 1, maxWaitingQueueLength: 10 }, st =>
      states.push(`${st.runningLoras}|${st.waitingLoras}`),
    );
    const a1 = job("a", started);
    const b1 = job("b", started);
    const base = job("base", started);
    const a2 = job("a", started);
    s.submit(a1);
    expect(s.submit(b1)).toBe("waiting");
    expect(s.submit(base)).toBe("running");
    expect(s.submit(a2)).toBe("running"); // adapter a already active
    expect(states[states.length - 1]).toBe("a|b");
    s.finish(a1);
    expect(started).toEqual(["a", "base", "a"]); // a2 still holds the adapter
    s.finish(a2); // a idle now: evicted for b
    expect(started).toEqual(["a", "base", "a", "b"]);
    expect(s.state()).toMatchObject({ runningLoras: ["b"], waitingLoras: [] });
  });

  it("prefers waiting requests whose adapter is active, then activates the next one", () => {
    const started: string[] = [];
    const s = new Scheduler({ maxNumSeqs: 1, maxLoras: 1, maxWaitingQueueLength: 10 });
    const a1 = job("a", started);
    s.submit(a1);
    s.submit(job("b", started));
    s.submit(job("a", started));
    s.finish(a1);
    expect(started).toEqual(["a", "a"]); // the second a jumps the b that waits for a slot
  });
});
