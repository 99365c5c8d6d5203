import { Counter, Gauge, Histogram, DURATION_BUCKETS_MS, type Registry } from '../core/metrics.js';
import type { UpstreamConnector } from './upstream/connector.js';

/**
 * The sidecar's Prometheus metrics, named and labelled like Istio's standard metrics so that
 * existing dashboards read them. Created once per registry (metrics outlive config versions);
 * pool gauges are computed at scrape time, costing nothing per request.
 */

export const REQUEST_LABELS = [
  'reporter',
  'source_workload',
  'source_version',
  'destination_workload',
  'destination_version',
  'response_code',
] as const;

export interface SidecarMetrics {
  requests: Counter<(typeof REQUEST_LABELS)[number]>;
  duration: Histogram<(typeof REQUEST_LABELS)[number]>;
  localReplies: Counter<'reason'>;
  /** Connectors whose pools the gauges report; the engine keeps this set current. */
  connectors: Set<{ direction: string; connector: UpstreamConnector }>;
  /**
   * Bound label children by label key, so a request does no label hashing. Label values come
   * from the registry and verified identities, so the set is small; it is still capped (cleared
   * when full) so that no input can grow it without bound.
   */
  children: Map<string, { c: Counter.Internal; h: Histogram.Internal<string> }>;
}

const byRegistry = new WeakMap<Registry, SidecarMetrics>();

export function sidecarMetrics(registry: Registry): SidecarMetrics {
  const hit = byRegistry.get(registry);
  if (hit) return hit;
  const connectors = new Set<{ direction: string; connector: UpstreamConnector }>();
  const poolGauge = (name: string, help: string, field: 'connected' | 'free' | 'pending' | 'running' | 'queued'): void => {
    new Gauge({
      name,
      help,
      labelNames: ['direction', 'cluster', 'endpoint'],
      registers: [registry],
      collect() {
        this.reset();
        for (const { direction, connector } of connectors) {
          for (const row of connector.stats()) this.set({ direction, cluster: row.cluster, endpoint: row.endpoint }, row[field]);
        }
      },
    });
  };
  poolGauge('etz_upstream_pool_connections', 'Open connections to an upstream endpoint', 'connected');
  poolGauge('etz_upstream_pool_idle_connections', 'Idle keep-alive connections to an upstream endpoint', 'free');
  poolGauge('etz_upstream_pool_active_requests', 'Requests in flight to an upstream endpoint', 'running');
  poolGauge('etz_upstream_pool_pending_requests', 'Requests waiting for a connection to an upstream endpoint', 'pending');
  const m: SidecarMetrics = {
    requests: new Counter({
      name: 'etz_requests_total',
      help: 'Requests handled by the sidecar, by reporter, workloads, versions and response code',
      labelNames: REQUEST_LABELS,
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'etz_request_duration_milliseconds',
      help: 'Request duration in milliseconds',
      labelNames: REQUEST_LABELS,
      buckets: DURATION_BUCKETS_MS,
      registers: [registry],
    }),
    localReplies: new Counter({
      name: 'etz_local_replies_total',
      help: 'Requests answered by the sidecar itself, by reason code',
      labelNames: ['reason'],
      registers: [registry],
    }),
    connectors,
    children: new Map(),
  };
  byRegistry.set(registry, m);
  return m;
}
