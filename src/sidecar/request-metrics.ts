import { DURATION_BUCKETS_MS, type Registry } from '../core/metrics.js';

/**
 * etz_requests_total and etz_request_duration_milliseconds, aggregated in plain arrays on the
 * request path and turned into Prometheus series only at scrape time. prom-client's labelled
 * inc/observe validate and hash the label set on every call (several microseconds per request);
 * here a request costs one map lookup by a precomputed key, two additions and a bucket scan.
 * Both are registered in the registry like any prom-client metric (name, help, type, get()).
 */

export const REQUEST_LABELS = [
  'reporter',
  'source_workload',
  'source_version',
  'destination_workload',
  'destination_version',
  'response_code',
] as const;

export type RequestLabels = Record<(typeof REQUEST_LABELS)[number], string>;

/** One label set's running totals. `buckets[i]` counts observations in (le[i-1], le[i]]. */
export class SeriesStats {
  readonly labels: Readonly<RequestLabels>;
  count = 0;
  sum = 0;
  readonly buckets: Float64Array;

  constructor(labels: RequestLabels) {
    this.labels = Object.freeze({ ...labels });
    this.buckets = new Float64Array(DURATION_BUCKETS_MS.length);
  }

  observe(ms: number): void {
    this.count++;
    this.sum += ms;
    const b = DURATION_BUCKETS_MS;
    for (let i = 0; i < b.length; i++) {
      if (ms <= b[i]!) {
        this.buckets[i]!++;
        return;
      }
    }
  }
}

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/**
 * Series are keyed by their joined label values. Label values come from the registry and
 * verified identities, so there are few; the map is still capped so that no input can grow it
 * without bound (at the cap, new label sets share one overflow series).
 */
const MAX_SERIES = 4096;

export class RequestMetrics {
  readonly #series = new Map<string, SeriesStats>();
  #overflow: SeriesStats | undefined;

  constructor(registry: Registry) {
    const series = this.#series;
    const overflowOf = (): SeriesStats[] => (this.#overflow ? [this.#overflow] : []);
    registry.registerMetric(
      metric('etz_requests_total', 'Requests handled by the sidecar, by reporter, workloads, versions and response code', 'counter', () => {
        const values: MetricValue[] = [];
        for (const s of [...series.values(), ...overflowOf()]) values.push({ labels: s.labels, value: s.count });
        return values;
      }) as never,
    );
    registry.registerMetric(
      metric('etz_request_duration_milliseconds', 'Request duration in milliseconds', 'histogram', () => {
        const name = 'etz_request_duration_milliseconds';
        const values: MetricValue[] = [];
        for (const s of [...series.values(), ...overflowOf()]) {
          let cum = 0;
          for (let i = 0; i < DURATION_BUCKETS_MS.length; i++) {
            cum += s.buckets[i]!;
            values.push({ labels: { le: DURATION_BUCKETS_MS[i]!, ...s.labels }, value: cum, metricName: `${name}_bucket` });
          }
          values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${name}_bucket` });
          values.push({ labels: s.labels, value: s.sum, metricName: `${name}_sum` });
          values.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
        }
        return values;
      }) as never,
    );
  }

  /** The series for a precomputed key, or undefined the first time the key is seen. */
  get(key: string): SeriesStats | undefined {
    return this.#series.get(key);
  }

  /** Start the series for `key` (or, at the cap, share the overflow series). */
  add(key: string, labels: RequestLabels): SeriesStats {
    if (this.#series.size >= MAX_SERIES) {
      return (this.#overflow ??= new SeriesStats({
        reporter: 'overflow',
        source_workload: 'overflow',
        source_version: 'overflow',
        destination_workload: 'overflow',
        destination_version: 'overflow',
        response_code: 'overflow',
      }));
    }
    const s = new SeriesStats(labels);
    this.#series.set(key, s);
    return s;
  }
}

function metric(name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValue[]) {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    async get() {
      return { name, help, type, aggregator: 'sum', values: values() };
    },
    reset() {
      /* totals since start, like prom-client counters */
    },
  };
}
