import { Counter, Gauge, type Registry } from '../core/metrics.js';
import type { UpstreamConnector } from './upstream/connector.js';
import { RequestMetrics } from './request-metrics.js';

/**
 * The sidecar's Prometheus metrics, named and labelled like Istio's standard metrics so that
 * existing dashboards read them. Created once per registry (metrics outlive config versions);
 * pool gauges are computed at scrape time, costing nothing per request.
 */

export interface SidecarMetrics {
  /** etz_requests_total and etz_request_duration_milliseconds (see request-metrics.ts). */
  requests: RequestMetrics;
  localReplies: Counter<'reason'>;
  /** Connectors whose pools the gauges report; the engine keeps this set current. */
  connectors: Set<{ direction: string; connector: UpstreamConnector }>;
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
    requests: new RequestMetrics(registry),
    localReplies: new Counter({
      name: 'etz_local_replies_total',
      help: 'Requests answered by the sidecar itself, by reason code',
      labelNames: ['reason'],
      registers: [registry],
    }),
    connectors,
  };
  byRegistry.set(registry, m);
  return m;
}
