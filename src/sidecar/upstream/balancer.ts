import { HashRing } from '../routing/hash-ring.js';

/**
 * Endpoint selection for one destination: round robin, least request by the power of two choices
 * (two random endpoints, the one with fewer requests in flight wins — Envoy's default), or a
 * consistent-hash ring for session affinity. `pick` takes the destination's (subset's) endpoint
 * list as built for the config version, plus a predicate for endpoints to avoid now (ejected
 * ones, ones a retry already tried); when every endpoint is to be avoided it uses them all, as
 * Envoy's panic routing does, rather than failing a request a sick endpoint might still serve.
 */

export type LbPolicy = 'round-robin' | 'least-request' | 'consistent-hash' | 'random';

export const LB_POLICIES: readonly LbPolicy[] = ['round-robin', 'least-request', 'consistent-hash', 'random'];

export interface BalancedEndpoint {
  readonly key: string;
  readonly weight?: number;
}

export class Balancer<T extends BalancedEndpoint> {
  readonly policy: LbPolicy;
  private cursor = 0;
  private readonly active = new Map<string, number>();
  private readonly rings = new WeakMap<readonly T[], HashRing<T>>();

  constructor(policy: LbPolicy = 'least-request', private readonly random: () => number = Math.random) {
    this.policy = policy;
  }

  pick(endpoints: readonly T[], hashKey?: string, avoid?: (e: T) => boolean): T | undefined {
    const n = endpoints.length;
    if (n === 0) return undefined;
    if (n === 1) return endpoints[0];
    if (this.policy === 'consistent-hash' && hashKey !== undefined) return this.pickHashed(endpoints, hashKey, avoid);
    let list = endpoints;
    if (avoid) {
      const usable = endpoints.filter((e) => !avoid(e));
      if (usable.length > 0) list = usable;
    }
    const m = list.length;
    if (m === 1) return list[0];
    switch (this.policy) {
      case 'round-robin':
      case 'consistent-hash': // without a key there is nothing to be consistent about
        return list[this.cursor++ % m];
      case 'random':
        return list[Math.floor(this.random() * m)];
      case 'least-request': {
        const i = Math.floor(this.random() * m);
        let j = Math.floor(this.random() * (m - 1));
        if (j >= i) j++;
        const a = list[i]!;
        const b = list[j]!;
        return (this.active.get(b.key) ?? 0) < (this.active.get(a.key) ?? 0) ? b : a;
      }
    }
  }

  private pickHashed(endpoints: readonly T[], key: string, avoid?: (e: T) => boolean): T {
    let ring = this.rings.get(endpoints);
    if (!ring) {
      ring = new HashRing(endpoints.map((e) => ({ id: e.key, value: e, weight: e.weight ?? 1 })));
      this.rings.set(endpoints, ring);
    }
    const first = ring.get(key)!;
    if (!avoid || !avoid(first)) return first;
    // Rehash with a salt so the keys of an avoided endpoint spread over the others, while keys of
    // healthy endpoints stay where they were.
    for (let salt = 1; salt <= endpoints.length * 2; salt++) {
      const e = ring.get(`${key}\u0000${salt}`)!;
      if (!avoid(e)) return e;
    }
    return first;
  }

  /** A request to `id` started (least request counts these). */
  started(id: string): void {
    this.active.set(id, (this.active.get(id) ?? 0) + 1);
  }

  finished(id: string): void {
    const v = (this.active.get(id) ?? 1) - 1;
    if (v <= 0) this.active.delete(id);
    else this.active.set(id, v);
  }

  inFlight(id: string): number {
    return this.active.get(id) ?? 0;
  }
}
