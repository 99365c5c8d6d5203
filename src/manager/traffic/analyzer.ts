import type { EngineEvent, RequestRecord, Subject } from '../risk/types.js';
import { reservoirOffer } from '../../scoring/stats.js';

/**
 * Traffic analysis (the zero-trust guide's traffic analyzer): per service and edge, volume, error
 * patterns, latency percentiles, top sources and principals, and the anomalies of the window, with
 * a mesh-wide summary. Fed by the engine's ingest; memory is bounded by the retained windows and
 * per-window caps on keys, never by traffic volume.
 */

const RESERVOIR = 32;
const TOP_CAP = 64;
const MAX_KEYS = 2000;
const MAX_ANOMALIES = 1000;

class Stats {
  count = 0;
  e4xx = 0;
  e5xx = 0;
  bytesIn = 0;
  bytesOut = 0;
  lat: number[] = [];
  private latSeen = 0;
  // Created on first use: most edges never see an error, and only services track callers.
  statuses: Map<number, number> | null = null;
  sources: Map<string, number> | null = null;
  principals: Map<string, number> | null = null;

  constructor(readonly who = true) {}

  add(r: RequestRecord): void {
    this.count++;
    if (r.status >= 500 || r.status === 0) this.e5xx++;
    else if (r.status >= 400) this.e4xx++;
    if (r.status >= 400 || r.status === 0) bump((this.statuses ??= new Map()), r.status);
    this.bytesIn += r.bytesIn ?? 0;
    this.bytesOut += r.bytesOut ?? 0;
    reservoirOffer(this.lat, this.latSeen++, r.durationMs, RESERVOIR);
    // Edges know their source; only services track who calls them.
    if (!this.who) return;
    bump((this.sources ??= new Map()), r.source.service === 'ingress' && r.source.ip ? `ingress:${r.source.ip}` : r.source.service);
    if (r.principal !== undefined) bump((this.principals ??= new Map()), r.principal);
  }
}

function bump<K>(m: Map<K, number>, k: K): void {
  const v = m.get(k);
  if (v !== undefined) m.set(k, v + 1);
  else if (m.size < TOP_CAP) m.set(k, 1);
}

interface Bucket {
  start: number;
  services: Map<string, Stats>;
  edges: Map<string, Map<string, Stats>>;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
}

export interface ServiceTraffic {
  service: string;
  requests: number;
  requestsPerSecond: number;
  errors: { clientErrors: number; serverErrors: number; errorRate: number; statuses: Array<{ status: number; count: number }> };
  latencyMs: LatencySummary;
  bytesIn: number;
  bytesOut: number;
  topSources: Array<{ source: string; requests: number }>;
  topPrincipals: Array<{ principal: string; requests: number }>;
}

export interface EdgeTraffic {
  source: string;
  destination: string;
  requests: number;
  errorRate: number;
  latencyMs: LatencySummary;
}

export interface Anomaly {
  ts: string;
  subject: Subject;
  score: number;
  level: string;
  reasons: Array<{ detector: string; feature?: string; detail: string }>;
}

export interface TrafficReport {
  window: { ms: number; from: string; to: string };
  summary: {
    requests: number;
    requestsPerSecond: number;
    errorRate: number;
    latencyP95Ms: number;
    anomalies: number;
    topSources: Array<{ source: string; requests: number }>;
  };
  services: ServiceTraffic[];
  edges: EdgeTraffic[];
  anomalies: Anomaly[];
}

export class TrafficRecorder {
  private readonly windowMs: number;
  private readonly retain: number;
  private readonly open = new Map<number, Bucket>();
  private readonly closed: Bucket[] = [];
  private readonly anomalies: Array<Anomaly & { at: number }> = [];

  constructor(windowMs: number, retainMs = 3_600_000) {
    // Traffic is kept per minute (or per scoring window if longer): an hour of history costs 60
    // buckets whatever the scoring window.
    this.windowMs = Math.max(windowMs, 60_000);
    this.retain = Math.max(1, Math.ceil(retainMs / this.windowMs));
  }

  record(r: RequestRecord, _windowStart: number): void {
    const start = r.ts - (((r.ts % this.windowMs) + this.windowMs) % this.windowMs);
    let b = this.open.get(start);
    if (!b) {
      b = { start, services: new Map(), edges: new Map() };
      this.open.set(start, b);
    }
    stat(b.services, r.destination.service, true)?.add(r);
    let m = b.edges.get(r.source.service);
    if (!m) {
      if (b.edges.size >= MAX_KEYS) return;
      m = new Map();
      b.edges.set(r.source.service, m);
    }
    stat(m, r.destination.service, false)?.add(r);
  }

  /** Called when the scoring window [start, end) closed: buckets that ended by then are history. */
  closeWindow(start: number, end = start): void {
    for (const [s, b] of this.open) {
      if (s + this.windowMs > end) continue;
      this.open.delete(s);
      this.closed.push(b);
    }
    while (this.closed.length > this.retain) this.closed.shift();
  }

  noteAnomaly(e: EngineEvent): void {
    if (e.event !== 'risk' || e.level === 'low') return;
    this.anomalies.push({ at: Date.parse(e.ts), ts: e.ts, subject: e.subject, score: e.score, level: e.level, reasons: e.reasons.map((r) => ({ detector: r.detector, ...(r.feature ? { feature: r.feature } : {}), detail: r.detail })) });
    if (this.anomalies.length > MAX_ANOMALIES) this.anomalies.shift();
  }

  report(windowMs: number, now: number): TrafficReport {
    const from = now - windowMs;
    const buckets = [...this.closed, ...[...this.open.values()].sort((a, b) => a.start - b.start)].filter((b) => b.start + this.windowMs > from && b.start <= now);
    const services = new Map<string, Stats[]>();
    const edges = new Map<string, Stats[]>();
    for (const b of buckets) {
      for (const [k, s] of b.services) push(services, k, s);
      for (const [src, m] of b.edges) for (const [dst, s] of m) push(edges, `${src}\u0000${dst}`, s);
    }
    const secs = Math.max(1, windowMs / 1000);
    let total = 0;
    let errs = 0;
    const allLat: number[] = [];
    const meshSources = new Map<string, number>();
    const svcOut: ServiceTraffic[] = [];
    for (const [name, list] of services) {
      const m = merge(list);
      total += m.count;
      errs += m.e5xx;
      allLat.push(...m.lat);
      if (m.sources) for (const [k, v] of m.sources) meshSources.set(k, (meshSources.get(k) ?? 0) + v);
      svcOut.push({
        service: name,
        requests: m.count,
        requestsPerSecond: round(m.count / secs),
        errors: {
          clientErrors: m.e4xx,
          serverErrors: m.e5xx,
          errorRate: m.count ? round(m.e5xx / m.count, 4) : 0,
          statuses: top(m.statuses ?? new Map<number, number>(), 5).map(([status, count]) => ({ status, count })),
        },
        latencyMs: lat(m.lat),
        bytesIn: m.bytesIn,
        bytesOut: m.bytesOut,
        topSources: top(m.sources ?? new Map<string, number>(), 5).map(([source, requests]) => ({ source, requests })),
        topPrincipals: top(m.principals ?? new Map<string, number>(), 5).map(([principal, requests]) => ({ principal, requests })),
      });
    }
    svcOut.sort((a, b) => b.requests - a.requests || cmp(a.service, b.service));
    const edgeOut: EdgeTraffic[] = [];
    for (const [k, list] of edges) {
      const m = merge(list);
      const [source, destination] = k.split('\u0000') as [string, string];
      edgeOut.push({ source, destination, requests: m.count, errorRate: m.count ? round((m.e5xx + m.e4xx) / m.count, 4) : 0, latencyMs: lat(m.lat) });
    }
    edgeOut.sort((a, b) => b.requests - a.requests || cmp(a.source + a.destination, b.source + b.destination));
    const anomalies = this.anomalies.filter((a) => a.at > from && a.at <= now).map(({ at: _at, ...a }) => a);
    return {
      window: { ms: windowMs, from: new Date(from).toISOString(), to: new Date(now).toISOString() },
      summary: {
        requests: total,
        requestsPerSecond: round(total / secs),
        errorRate: total ? round(errs / total, 4) : 0,
        latencyP95Ms: lat(allLat).p95,
        anomalies: anomalies.length,
        topSources: top(meshSources, 5).map(([source, requests]) => ({ source, requests })),
      },
      services: svcOut,
      edges: edgeOut,
      anomalies,
    };
  }
}

function stat(m: Map<string, Stats>, k: string, who: boolean): Stats | undefined {
  let s = m.get(k);
  if (!s) {
    if (m.size >= MAX_KEYS) return undefined;
    s = new Stats(who);
    m.set(k, s);
  }
  return s;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

function merge(list: Stats[]): Stats {
  const m = new Stats();
  for (const s of list) {
    m.count += s.count;
    m.e4xx += s.e4xx;
    m.e5xx += s.e5xx;
    m.bytesIn += s.bytesIn;
    m.bytesOut += s.bytesOut;
    // Each window's reservoir stands for its whole count: repeat samples in proportion.
    const w = s.lat.length ? Math.max(1, Math.round(s.count / s.lat.length)) : 0;
    for (const x of s.lat) for (let i = 0; i < Math.min(w, 16); i++) m.lat.push(x);
    if (s.statuses) for (const [k, v] of s.statuses) (m.statuses ??= new Map()).set(k, (m.statuses.get(k) ?? 0) + v);
    if (s.sources) for (const [k, v] of s.sources) (m.sources ??= new Map()).set(k, (m.sources.get(k) ?? 0) + v);
    if (s.principals) for (const [k, v] of s.principals) (m.principals ??= new Map()).set(k, (m.principals.get(k) ?? 0) + v);
  }
  return m;
}

function lat(xs: number[]): LatencySummary {
  if (!xs.length) return { p50: 0, p95: 0, p99: 0 };
  const s = xs.slice().sort((a, b) => a - b);
  const q = (p: number) => round(s[Math.min(s.length - 1, Math.floor(p * s.length))]!);
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99) };
}

function top<K>(m: Map<K, number>, n: number): Array<[K, number]> {
  return [...m].sort((a, b) => b[1] - a[1] || cmp(String(a[0]), String(b[0]))).slice(0, n);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function round(x: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/** Parse `5m`, `30s`, `1h`, `250ms` or plain milliseconds. */
export function parseDuration(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) return null;
  const v = Number(m[1]);
  const unit = m[2] ?? 'ms';
  const ms = unit === 'h' ? v * 3_600_000 : unit === 'm' ? v * 60_000 : unit === 's' ? v * 1000 : v;
  return ms > 0 && Number.isFinite(ms) ? Math.round(ms) : null;
}
