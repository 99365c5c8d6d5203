import type { AttemptOutcome } from './retry-policy.js';

/**
 * Passive outlier detection (Envoy's outlier_detection): an endpoint that fails several times in
 * a row is taken out of load balancing for baseEjectionTime × (how often it was ejected),
 * capped by maxEjectionTime, and comes back by itself when that time is over. At most
 * maxEjectionPercent of a destination's endpoints are out at once (at least one may always be
 * ejected, as in Envoy), so a fault that hits every endpoint cannot empty the pool.
 */

export interface OutlierConfig {
  /** Consecutive 5xx, resets, connect failures or timeouts before ejection; 0 = off. */
  consecutive5xx?: number;
  /** Consecutive 502/503/504, resets, connect failures or timeouts before ejection; 0 = off. */
  consecutiveGatewayErrors?: number;
  baseEjectionTimeMs?: number;
  maxEjectionTimeMs?: number;
  maxEjectionPercent?: number;
}

export const OUTLIER_DEFAULTS = {
  consecutive5xx: 5,
  consecutiveGatewayErrors: 0,
  baseEjectionTimeMs: 30_000,
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 10,
} as const;

export const outlierSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    consecutive5xx: { type: 'integer', minimum: 0 },
    consecutiveGatewayErrors: { type: 'integer', minimum: 0 },
    baseEjectionTimeMs: { type: 'integer', minimum: 1 },
    maxEjectionTimeMs: { type: 'integer', minimum: 1 },
    maxEjectionPercent: { type: 'number', minimum: 0, maximum: 100 },
  },
} as const;

interface EndpointHealth {
  errors: number;
  gatewayErrors: number;
  ejections: number;
  ejectedUntil: number;
  returnedAt: number;
}

export class OutlierDetector {
  private readonly cfg: Required<OutlierConfig>;
  private readonly hosts = new Map<string, EndpointHealth>();
  private ejected = 0;
  onEject: ((id: string, durationMs: number) => void) | undefined;
  onReturn: ((id: string) => void) | undefined;

  constructor(cfg: OutlierConfig = {}) {
    this.cfg = { ...OUTLIER_DEFAULTS, ...cfg };
  }

  private health(id: string): EndpointHealth {
    let h = this.hosts.get(id);
    if (!h) {
      h = { errors: 0, gatewayErrors: 0, ejections: 0, ejectedUntil: 0, returnedAt: 0 };
      this.hosts.set(id, h);
    }
    return h;
  }

  /** Forget endpoints that left the destination (bounds the map to the live endpoint set). */
  retain(ids: ReadonlySet<string>): void {
    for (const [id, h] of this.hosts) {
      if (!ids.has(id)) {
        if (h.ejectedUntil > 0) this.ejected--;
        this.hosts.delete(id);
      }
    }
  }

  /**
   * Record the outcome of one try against `id`. `total` is the destination's endpoint count, for
   * the ejection cap. Returns true when this outcome ejected the endpoint.
   */
  record(id: string, outcome: AttemptOutcome, total: number, now: number): boolean {
    const h = this.health(id);
    this.expire(id, h, now);
    const isResponse = outcome.kind === 'response';
    const status = isResponse ? outcome.status : 0;
    if (isResponse && status < 500) {
      h.errors = 0;
      h.gatewayErrors = 0;
      // Health that lasts a whole base period earns back one ejection's worth of penalty.
      if (h.ejections > 0 && h.ejectedUntil === 0 && now - h.returnedAt >= this.cfg.baseEjectionTimeMs) {
        h.ejections--;
        h.returnedAt = now;
      }
      return false;
    }
    h.errors++;
    if (!isResponse || status === 502 || status === 503 || status === 504) h.gatewayErrors++;
    if (h.ejectedUntil > 0) return false;
    const trip =
      (this.cfg.consecutive5xx > 0 && h.errors >= this.cfg.consecutive5xx) ||
      (this.cfg.consecutiveGatewayErrors > 0 && h.gatewayErrors >= this.cfg.consecutiveGatewayErrors);
    if (!trip) return false;
    const cap = Math.max(1, Math.floor((total * this.cfg.maxEjectionPercent) / 100));
    if (this.cfg.maxEjectionPercent <= 0 || this.ejected >= cap) return false;
    h.ejections++;
    const duration = Math.min(this.cfg.baseEjectionTimeMs * h.ejections, Math.max(this.cfg.baseEjectionTimeMs, this.cfg.maxEjectionTimeMs));
    h.ejectedUntil = now + duration;
    h.errors = 0;
    h.gatewayErrors = 0;
    this.ejected++;
    this.onEject?.(id, duration);
    return true;
  }

  private expire(id: string, h: EndpointHealth, now: number): void {
    if (h.ejectedUntil > 0 && h.ejectedUntil <= now) {
      h.ejectedUntil = 0;
      h.returnedAt = now;
      this.ejected--;
      this.onReturn?.(id);
    }
  }

  isEjected(id: string, now: number): boolean {
    const h = this.hosts.get(id);
    if (!h || h.ejectedUntil === 0) return false;
    this.expire(id, h, now);
    return h.ejectedUntil > 0;
  }

  /** Endpoints not ejected now. With none left, all of them (Envoy's panic routing). */
  healthy<T>(endpoints: readonly T[], idOf: (e: T) => string, now: number): readonly T[] {
    if (this.ejected === 0) return endpoints;
    const out = endpoints.filter((e) => !this.isEjected(idOf(e), now));
    return out.length > 0 ? out : endpoints;
  }

  ejectedCount(now: number): number {
    if (this.ejected > 0) for (const [id, h] of this.hosts) this.expire(id, h, now);
    return this.ejected;
  }

  ejectionCount(id: string): number {
    return this.hosts.get(id)?.ejections ?? 0;
  }
}
