import { mulberry32, type Rng } from '../../src/scoring/index.js';

/**
 * A deterministic bookinfo-like trace generator for scenario tests: page views from end users
 * through ingress → productpage, which fans out to details, reviews (v1/v2/v3) → ratings and, for
 * some views, the accounts service. Every record of one page view shares its requestId.
 */

export const T0 = Date.UTC(2026, 10, 21, 10, 0, 0);
export const MIN = 60_000;

export type Rec = Record<string, unknown> & { ts: number };

export interface MeshOptions {
  seed?: number;
  from: number;
  to: number;
  /** Page views per second, possibly varying with time. */
  rate: number | ((t: number) => number);
  users?: number;
  /** reviews instances in service at time t: [version, instance][] */
  reviews?: (t: number) => Array<[string, string]>;
  /** bytes accounts returns per call at time t */
  accountsBytes?: (t: number) => number;
}

export class Trace {
  readonly records: Rec[] = [];
  private seq = 0;
  constructor(readonly rng: Rng = mulberry32(1)) {}

  add(r: Rec): void {
    this.records.push(r);
  }

  nextId(prefix = 'req'): string {
    return `${prefix}-${++this.seq}`;
  }

  /** Records sorted by time (stable), serialised as JSON lines with RFC 3339 timestamps. */
  sorted(): Rec[] {
    return this.records.map((r, i) => [r, i] as const).sort((a, b) => a[0].ts - b[0].ts || a[1] - b[1]).map(([r]) => r);
  }

  jsonl(): string {
    return this.sorted().map((r) => JSON.stringify({ ...r, ts: new Date(r.ts).toISOString() })).join('\n') + '\n';
  }
}

const DEFAULT_REVIEWS: Array<[string, string]> = [
  ['v1', 'reviews-v1-0'],
  ['v2', 'reviews-v2-0'],
  ['v3', 'reviews-v3-0'],
];

/** Normal traffic of the mesh between `from` and `to`. */
export function mesh(trace: Trace, o: MeshOptions): void {
  const rng = mulberry32(o.seed ?? 7);
  const users = o.users ?? 2000;
  let t = o.from;
  while (t < o.to) {
    const rate = typeof o.rate === 'number' ? o.rate : o.rate(t);
    t += (-Math.log(1 - rng()) / Math.max(rate, 0.01)) * 1000;
    if (t >= o.to) break;
    pageView(trace, rng, Math.round(t), `user${Math.floor(rng() * users)}`, o);
  }
}

export function pageView(trace: Trace, rng: Rng, t: number, principal: string, o: Partial<MeshOptions> = {}, status = 200): string {
  const id = trace.nextId();
  const lat = (base: number) => Math.round((base * (0.6 + rng() * 0.8)) * 10) / 10;
  const ip = `198.51.100.${1 + (principal.length * 7 + principal.charCodeAt(principal.length - 1)) % 200}`;
  trace.add({ ts: t, source: { service: 'ingress', ip }, destination: { service: 'productpage', version: 'v1', instance: 'productpage-v1-0' }, principal, method: 'GET', path: '/productpage', status, durationMs: lat(25), bytesOut: 5000 + Math.floor(rng() * 300), requestId: id });
  if (status !== 200) return id;
  const pp = { service: 'productpage', version: 'v1', instance: 'productpage-v1-0' };
  trace.add({ ts: t + 1, source: pp, destination: { service: 'details', version: 'v1', instance: 'details-v1-0' }, principal, method: 'GET', path: '/details/0', status: 200, durationMs: lat(4), bytesOut: 180 + Math.floor(rng() * 20), mtls: true, requestId: id });
  const reviews = (o.reviews ?? (() => DEFAULT_REVIEWS))(t);
  const [version, instance] = reviews[Math.floor(rng() * reviews.length)]!;
  trace.add({ ts: t + 2, source: pp, destination: { service: 'reviews', version, instance }, principal, method: 'GET', path: '/reviews/0', status: 200, durationMs: lat(8), bytesOut: 400 + Math.floor(rng() * 40), mtls: true, requestId: id });
  if (version !== 'v1') {
    trace.add({ ts: t + 3, source: { service: 'reviews', version, instance }, destination: { service: 'ratings', version: 'v1', instance: 'ratings-v1-0' }, principal, method: 'GET', path: '/ratings/0', status: 200, durationMs: lat(3), bytesOut: 60, mtls: true, requestId: id });
  }
  if (rng() < 0.3) {
    const bytes = o.accountsBytes ? o.accountsBytes(t) : 2000;
    trace.add({ ts: t + 4, source: pp, destination: { service: 'accounts', version: 'v1', instance: 'accounts-v1-0' }, principal, method: 'GET', path: '/accounts/profile', status: 200, durationMs: lat(6), bytesOut: Math.round(bytes * (0.9 + rng() * 0.2)), mtls: true, requestId: id });
  }
  return id;
}
