/**
 * Circuit breaking per destination, after Envoy's cluster circuit breakers: limits on connections,
 * requests waiting for a connection, requests in flight and concurrent retries. A request over a
 * limit is answered 503 at once (ETZ_ERR_UPSTREAM_OVERFLOW) instead of joining a queue that only
 * grows while the upstream is slow — the queue in front of an upstream is never unbounded.
 *
 * HTTP/1.1 carries one request per connection at a time, so with `active` requests in flight and
 * at most maxConnections connections, `active - maxConnections` of them are waiting: that is the
 * pending count the limit applies to.
 */

export interface PoolLimitsConfig {
  maxConnections?: number;
  maxPendingRequests?: number;
  maxRequests?: number;
  /** Close a connection after this many requests (0 = no limit). Applied by the connection pool. */
  maxRequestsPerConnection?: number;
  maxRetries?: number;
}

export const POOL_DEFAULTS = {
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxRequests: 1024,
  maxRequestsPerConnection: 0,
  maxRetries: 3,
} as const;

export const poolLimitsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    maxConnections: { type: 'integer', minimum: 1 },
    maxPendingRequests: { type: 'integer', minimum: 0 },
    maxRequests: { type: 'integer', minimum: 1 },
    maxRequestsPerConnection: { type: 'integer', minimum: 0 },
    maxRetries: { type: 'integer', minimum: 0 },
  },
} as const;

export type Overflow = 'pending' | 'requests';

export class CircuitBreaker {
  readonly limits: Required<PoolLimitsConfig>;
  private active = 0;
  private retries = 0;

  constructor(cfg: PoolLimitsConfig = {}) {
    this.limits = { ...POOL_DEFAULTS, ...cfg };
  }

  /** Admit one request, or say which limit it overflows. Call release() once it ends. */
  tryAcquire(): Overflow | null {
    const l = this.limits;
    if (this.active >= l.maxRequests) return 'requests';
    if (this.active - l.maxConnections >= l.maxPendingRequests) return 'pending';
    this.active++;
    return null;
  }

  release(): void {
    if (this.active > 0) this.active--;
  }

  /** A retry also needs a retry slot: a burst of failures must not turn into a burst of retries. */
  tryAcquireRetry(): boolean {
    if (this.retries >= this.limits.maxRetries) return false;
    this.retries++;
    return true;
  }

  releaseRetry(): void {
    if (this.retries > 0) this.retries--;
  }

  get inFlight(): number {
    return this.active;
  }

  get pending(): number {
    return Math.max(0, this.active - this.limits.maxConnections);
  }

  /** Which breakers are at their limit now (exported as etz_upstream_circuit_open). */
  state(): { pending: boolean; requests: boolean; retries: boolean } {
    const l = this.limits;
    return {
      pending: this.active - l.maxConnections >= l.maxPendingRequests,
      requests: this.active >= l.maxRequests,
      retries: this.retries >= l.maxRetries,
    };
  }
}
