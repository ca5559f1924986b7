import { Counter, Histogram, Registry } from "prom-client";
import { SeriesCounter, SeriesHistogram } from "./series-metrics";

// The oracle is prom-client itself: the same updates must print the same page.
describe("series metrics print as prom-client's", () => {
  const buckets = [0.001, 0.01, 0.1, 1];
  const a = { model_name: "m", target_model_name: "m-v1", pool: "p" };
  const b = { model_name: "m", target_model_name: "m-v2", pool: "p" };
  const values = [0, 0.001, 0.0015, 0.01, 0.5, 1, 7, 0.05];

  it("histograms: buckets (value <= le), +Inf, sum and count, per label set", async () => {
    const theirs = new Registry();
    const ours = new Registry();
    const labelNames = ["model_name", "target_model_name", "pool"];
    const h = new Histogram({
      name: "h_seconds",
      help: "x",
      labelNames,
      buckets,
      registers: [theirs],
    });
    const s = new SeriesHistogram("h_seconds", "x", buckets, [ours]);
    const sb = s.labels(b); // series print in the order they first appear, as in prom-client
    const sa = s.labels(a);
    values.forEach((v, i) => {
      h.observe(i % 3 ? a : b, v);
      (i % 3 ? sa : sb).observe(v);
    });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());
  });

  it("counters", async () => {
    const theirs = new Registry();
    const ours = new Registry();
    const c = new Counter({
      name: "c_total",
      help: "y",
      labelNames: ["pool", "endpoint"],
      registers: [theirs],
    });
    const s = new SeriesCounter("c_total", "y", [ours]);
    const e1 = { pool: "p", endpoint: "10.0.0.1:8000" };
    const e2 = { pool: "p", endpoint: "10.0.0.2:8000" };
    c.inc(e1);
    c.inc(e1);
    c.inc(e2, 3);
    s.labels(e1).inc();
    s.labels(e1).inc();
    s.labels(e2).inc(3);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());
  });

  it("a label set never updated prints nothing; after a reset, handles start afresh", async () => {
    const ours = new Registry();
    const s = new SeriesCounter("c_total", "y", [ours]);
    const handle = s.labels({ pool: "p" });
    expect(await ours.metrics()).not.toContain("c_total{");
    handle.inc(2);
    ours.resetMetrics();
    handle.inc();
    expect(await ours.metrics()).toContain('c_total{pool="p"} 1');
  });
});
