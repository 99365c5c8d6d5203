import type { SidecarConfig } from '../../config/sidecar-schema.js';
import type { FilterFactory, RequestContext } from '../filter.js';
import { passThrough } from '../chain.js';
import { sidecarMetrics } from '../metrics.js';
import type { SeriesStats } from '../request-metrics.js';
import { serviceOfPeer } from '../telemetry.js';

/**
 * Istio-style request metrics, recorded at completion. Inbound reports as the destination
 * (source = the verified peer, or "unknown"), outbound as the source. A request costs one string
 * join and a map lookup; label objects are built once per new label set.
 */
const MAX_CACHED = 1024;

export const metricsFilter: FilterFactory<SidecarConfig> = {
  name: 'metrics',
  schema: {},
  compile(config, env) {
    const m = sidecarMetrics(env.metrics).requests;
    const self = config.service.name;
    const selfVersion = config.service.version || 'unknown';
    const inbound = env.direction === 'inbound';
    const reporter = inbound ? 'destination' : 'source';
    const cache = new Map<string, (SeriesStats | undefined)[]>();
    return {
      name: 'metrics',
      onRequest: passThrough,
      onComplete(ctx: RequestContext, status: number, durationMs: number) {
        let sw: string, sv: string, dw: string, dv: string;
        if (inbound) {
          sw = serviceOfPeer(ctx) ?? 'unknown';
          sv = 'unknown';
          dw = self;
          dv = selfVersion;
        } else {
          sw = self;
          sv = selfVersion;
          dw = ctx.destination?.service ?? 'unknown';
          dv = ctx.endpoint?.version ?? ctx.destination?.version ?? 'unknown';
        }
        // Per-version fast path: the part of the label set that varies (the peer inbound, the
        // destination outbound) → series by status code. Bounded like the series map.
        const sub = inbound ? sw : `${dw}\u0000${dv}`;
        let byStatus = cache.get(sub);
        if (byStatus === undefined) {
          if (cache.size >= MAX_CACHED) cache.clear();
          byStatus = [];
          cache.set(sub, byStatus);
        }
        let series = status < 1000 ? byStatus[status] : undefined;
        if (series === undefined) {
          const key = `${reporter}\u0000${sw}\u0000${sv}\u0000${dw}\u0000${dv}\u0000${status}`;
          series =
            m.get(key) ??
            m.add(key, {
              reporter,
              source_workload: sw,
              source_version: sv,
              destination_workload: dw,
              destination_version: dv,
              response_code: String(status),
            });
          if (status < 1000) byStatus[status] = series;
        }
        series.observe(durationMs);
      },
    };
  },
};
