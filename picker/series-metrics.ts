// Counters and histograms for the per-request path, registered in a prom-client Registry and
// printed exactly as prom-client prints its own. prom-client checks and hashes the label set on
// every update, even through a bound child; here a series is looked up once and an update is an
// addition (and a bucket search). With seven updates per request that was ~8 % of the proxy's
// CPU (bench/picker). Metric kinds that change rarely stay plain prom-client.

import { Metric, Registry } from "prom-client";

type Labels = Record<string, string>;

interface Sample {
  labels: Labels | { le: number | string };
  sharedLabels?: Labels;
  value: number;
  metricName?: string;
  /** prom-client's buckets carry `exemplar: null` (no exemplars here). */
  exemplar?: null;
}

abstract class SeriesMetric<S> {
  readonly aggregator = "sum";
  protected readonly series = new Map<string, { labels: Labels; state: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "histogram",
    registers: Registry[],
  ) {
    for (const r of registers) r.registerMetric(this as unknown as Metric);
  }

  /**
   * The series of these labels (created on its first update, so that a label set never updated
   * prints nothing, as in prom-client); keep the returned getter.
   */
  protected lazyState(labels: Labels, create: () => S): () => S {
    let state: S | undefined;
    let generation = -1;
    return () => {
      if (generation !== this.generation) {
        state = this.stateOf(labels, create);
        generation = this.generation;
      }
      return state!;
    };
  }

  /** Bumped by reset(): handles then start their series afresh. */
  private generation = 0;

  private stateOf(labels: Labels, create: () => S): S {
    const key = Object.values(labels).join("\u0000");
    let s = this.series.get(key);
    if (!s) {
      s = { labels: { ...labels }, state: create() };
      this.series.set(key, s);
    }
    return s.state;
  }

  protected abstract samples(): Sample[];

  /** What the registry prints (prom-client's text format: `le` first, then the series labels). */
  async getForPromString() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.samples(),
    };
  }

  /** JSON form: every label on the sample itself, as prom-client's get(). */
  async get() {
    const data = await this.getForPromString();
    return {
      ...data,
      values: data.values.map(v => ({
        value: v.value,
        metricName: v.metricName,
        ...(v.exemplar === null ? { exemplar: null } : {}),
        labels: { ...(v.sharedLabels ?? {}), ...v.labels },
      })),
    };
  }

  reset(): void {
    this.series.clear();
    this.generation++;
  }
}

export class SeriesCounter extends SeriesMetric<{ value: number }> {
  constructor(name: string, help: string, registers: Registry[]) {
    super(name, help, "counter", registers);
  }

  labels(labels: Labels): { inc(by?: number): void } {
    const state = this.lazyState(labels, () => ({ value: 0 }));
    return {
      inc: (by = 1) => {
        state().value += by;
      },
    };
  }

  protected samples(): Sample[] {
    return [...this.series.values()].map(s => ({ labels: s.labels, value: s.state.value }));
  }
}

interface HistogramState {
  counts: number[];
  sum: number;
  count: number;
}

export class SeriesHistogram extends SeriesMetric<HistogramState> {
  constructor(
    name: string,
    help: string,
    private readonly upperBounds: readonly number[],
    registers: Registry[],
  ) {
    super(name, help, "histogram", registers);
  }

  labels(labels: Labels): { observe(value: number): void } {
    const bounds = this.upperBounds;
    const lazy = this.lazyState(labels, () => ({
      counts: new Array<number>(bounds.length).fill(0),
      sum: 0,
      count: 0,
    }));
    return {
      observe: (value: number) => {
        if (!Number.isFinite(value)) return;
        const state = lazy();
        state.sum += value;
        state.count++;
        // Bucket i counts values in (bound[i-1], bound[i]]; above the last: only +Inf (count).
        let lo = 0;
        let hi = bounds.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (bounds[mid] < value) lo = mid + 1;
          else hi = mid;
        }
        if (lo < bounds.length) state.counts[lo]++;
      },
    };
  }

  protected samples(): Sample[] {
    const out: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, state } of this.series.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((le, i) => {
        cumulative += state.counts[i];
        out.push({
          labels: { le },
          sharedLabels: labels,
          value: cumulative,
          metricName: bucket,
          exemplar: null,
        });
      });
      out.push(
        {
          labels: { le: "+Inf" },
          sharedLabels: labels,
          value: state.count,
          metricName: bucket,
          exemplar: null,
        },
        { labels: {}, sharedLabels: labels, value: state.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: labels, value: state.count, metricName: `${this.name}_count` },
      );
    }
    return out;
  }
}
