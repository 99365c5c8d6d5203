import type { Registry } from '../../core/metrics.js';
import { counter, gauge, instanceState } from '../routing/instance-state.js';
import { LB_POLICIES } from './balancer.js';
import { poolLimitsSchema } from './circuit.js';
import { outlierSchema } from './outlier.js';
import { createDestinationTraffic, type DestinationPolicyConfig, type DestinationTraffic, type SendObserver } from './resilience.js';
import { retryBudgetSchema } from './retry-policy.js';
import type { BalancedEndpoint } from './balancer.js';

/**
 * Traffic policy per destination service (Istio's DestinationRule: load balancer, connection pool
 * limits, outlier detection, retry budget), from `routes.destinations`. The live state behind a
 * policy — ejections, in-flight counts, budget — belongs to the sidecar instance and survives
 * config versions for as long as the destination's policy is unchanged: a config push must not
 * readmit an ejected endpoint or reset a retry budget.
 */

export const destinationPolicySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    loadBalancer: { enum: [...LB_POLICIES] },
    pool: poolLimitsSchema,
    outlierDetection: outlierSchema,
    retryBudget: retryBudgetSchema,
  },
} as const;

interface Entry {
  sig: string;
  traffic: DestinationTraffic<BalancedEndpoint>;
}

export interface UpstreamMetrics extends SendObserver {
  /** Export ejection/return events of one destination's outlier detector. */
  watch(traffic: DestinationTraffic<BalancedEndpoint>): void;
}

export class DestinationPolicies {
  private readonly entries: Map<string, Entry>;
  private configs: Readonly<Record<string, DestinationPolicyConfig>> = {};
  private readonly sigs = new Map<string, string>();
  readonly metrics: UpstreamMetrics;

  constructor(registry: Registry, direction: string) {
    this.entries = instanceState(registry, `destinations:${direction}`, () => new Map<string, Entry>());
    this.metrics = upstreamMetrics(registry, this.entries);
  }

  /**
   * This version's policies. Nothing shared changes here (a version that fails to compile must
   * leave the running one untouched); `get` swaps a destination's state the first time this
   * version uses a changed policy.
   */
  configure(configs: Readonly<Record<string, DestinationPolicyConfig>> | undefined): void {
    this.configs = configs ?? {};
    this.sigs.clear();
    for (const [svc, cfg] of Object.entries(this.configs)) this.sigs.set(svc, JSON.stringify(cfg));
  }

  /** Whether `service` has a policy of its own in this version. */
  has(service: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.configs, service);
  }

  /** The traffic state of `service` (created on first use with its policy or the defaults). */
  get<E extends BalancedEndpoint>(service: string): DestinationTraffic<E> {
    let e = this.entries.get(service);
    const sig = this.sigs.get(service) ?? '{}';
    if (!e || e.sig !== sig) {
      e = { sig, traffic: createDestinationTraffic(service, this.configs[service] ?? {}) };
      this.entries.set(service, e);
      this.metrics.watch(e.traffic);
    }
    return e.traffic as unknown as DestinationTraffic<E>;
  }

  /** maxRequestsPerConnection / maxConnections for the connection pool of `service`. */
  poolOptions(service: string): { connections?: number; maxRequestsPerClient?: number } | undefined {
    const p = this.configs[service]?.pool;
    if (!p || (!p.maxConnections && !p.maxRequestsPerConnection)) return undefined;
    return {
      ...(p.maxConnections ? { connections: p.maxConnections } : {}),
      // undici closes a connection after maxRequestsPerClient + 1 requests; a limit of 1 is the
      // request's own `reset` flag instead (see resilient-forward.ts).
      ...(p.maxRequestsPerConnection && p.maxRequestsPerConnection > 1 ? { maxRequestsPerClient: p.maxRequestsPerConnection - 1 } : {}),
    };
  }
}

function upstreamMetrics(registry: Registry, entries: Map<string, Entry>): UpstreamMetrics {
  const retries = counter(registry, 'etz_upstream_retries_total', 'Retries sent, by destination and the outcome that caused them.', ['destination', 'reason']);
  const budget = counter(registry, 'etz_upstream_retry_budget_exhausted_total', 'Retries not sent because the retry budget was spent.', ['destination']);
  const overflow = counter(registry, 'etz_upstream_overflow_total', 'Requests or retries refused by circuit breaking, by limit.', ['destination', 'limit']);
  const ejections = counter(registry, 'etz_upstream_ejections_total', 'Endpoints ejected by outlier detection.', ['destination']);
  const returns = counter(registry, 'etz_upstream_ejection_returns_total', 'Ejected endpoints returned to load balancing.', ['destination']);
  gauge(registry, 'etz_upstream_ejected_endpoints', 'Endpoints currently ejected.', ['destination'], function collect() {
    this.reset();
    const now = Date.now();
    for (const [svc, e] of entries) this.set({ destination: svc }, e.traffic.outlier.ejectedCount(now));
  });
  gauge(registry, 'etz_upstream_circuit_open', 'Circuit breakers at their limit (1) or not (0), by destination and limit.', ['destination', 'limit'], function collect() {
    this.reset();
    for (const [svc, e] of entries) {
      const s = e.traffic.circuit.state();
      this.set({ destination: svc, limit: 'pending' }, s.pending ? 1 : 0);
      this.set({ destination: svc, limit: 'requests' }, s.requests ? 1 : 0);
      this.set({ destination: svc, limit: 'retries' }, s.retries ? 1 : 0);
    }
  });
  return {
    retry: (svc, reason) => retries.inc({ destination: svc, reason }),
    budgetExhausted: (svc) => budget.inc({ destination: svc }),
    overflow: (svc, which) => overflow.inc({ destination: svc, limit: which }),
    watch(traffic) {
      traffic.outlier.onEject = () => ejections.inc({ destination: traffic.service });
      traffic.outlier.onReturn = () => returns.inc({ destination: traffic.service });
    },
  };
}
