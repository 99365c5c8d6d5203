/**
 * What the dashboard shows, assembled from the manager's API routes: the service graph
 * (enrolled sidecars as nodes, traffic as edges), zones with their rollout state, risk per
 * subject with a short timeline, flagged end users and the audit feed. One snapshot serves every
 * viewer; the risk timeline is kept here, bounded.
 */

export type ApiCall = (method: string, path: string, body?: unknown) => Promise<unknown>;

const TIMELINE_POINTS = 180;
const MAX_TIMELINES = 200;

interface Sidecar { instance: string; service: string; version: string | null; connected: boolean; configVersion: number | null; state: string }
interface Zone { id: string; type: string; members: Array<{ service: string; version?: string; instance?: string }>; reason: string; createdAt: number; expiresAt: number | null; pinned: boolean; shadow: boolean; origin: string; detectedAt?: number; calmSince?: number | null }
interface Rollout { version: number; reason: string; startedAt: string; inForce: boolean; counts: Record<string, number> }
interface RiskItem { subject: Record<string, string>; key: string; score: number; level: string; warmingUp: boolean; reasons: Array<{ detector?: string; feature?: string; detail?: string }> }
interface Edge { source: string; destination: string; requests: number; errorRate: number }
interface ServiceTraffic { service: string; requests: number; requestsPerSecond: number; errors: { errorRate: number } }

export interface Snapshot {
  at: number;
  status: unknown;
  nodes: Array<{ service: string; versions: Array<{ version: string; instance: string; state: string; configVersion: number | null }>; rps: number; errorRate: number; risk: number; level: string; zones: string[] }>;
  edges: Array<{ source: string; destination: string; rps: number; errorRate: number; mtls: boolean }>;
  zones: Array<Zone & { rollout: { version: number | null; inForce: boolean; acked: number; total: number } }>;
  risk: RiskItem[];
  timeline: Record<string, Array<[number, number]>>;
  flagged: unknown[];
  audit: unknown[];
  rollouts: Rollout[];
}

export class DashboardState {
  private cached: { at: number; snap: Snapshot } | undefined;
  private pending: Promise<Snapshot> | undefined;
  private readonly timelines = new Map<string, Array<[number, number]>>();
  /** Config version in force when each zone was first seen: the zone is rolled out once every sidecar acked it. */
  private readonly zoneVersions = new Map<string, number>();

  constructor(private readonly call: ApiCall, private readonly flagged?: () => unknown[]) {}

  invalidate(): void {
    this.cached = undefined;
  }

  snapshot(fresh = false): Promise<Snapshot> {
    if (!fresh && this.cached && Date.now() - this.cached.at < 500) return Promise.resolve(this.cached.snap);
    // Viewers arriving while one is being built share it.
    this.pending ??= this.build().then((snap) => {
      this.cached = { at: Date.now(), snap };
      return snap;
    }).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async optional<T>(path: string, fallback: T): Promise<T> {
    try {
      return (await this.call('GET', path)) as T;
    } catch {
      // Risk and traffic routes exist only with the engine attached.
      return fallback;
    }
  }

  private async build(): Promise<Snapshot> {
    const [status, sidecars, zones, rollouts, audit, risk, traffic] = await Promise.all([
      this.call('GET', '/v1/status'),
      this.call('GET', '/v1/sidecars') as Promise<{ items: Sidecar[] }>,
      this.call('GET', '/v1/zones') as Promise<{ items: Zone[] }>,
      this.call('GET', '/v1/rollouts?limit=10') as Promise<{ items: Rollout[] }>,
      this.call('GET', '/v1/audit?limit=40') as Promise<{ entries: unknown[] }>,
      this.optional<{ items: RiskItem[] }>('/v1/risk?limit=200', { items: [] }),
      this.optional<{ window: { ms: number }; services: ServiceTraffic[]; edges: Edge[] }>('/v1/traffic?window=1m', { window: { ms: 60_000 }, services: [], edges: [] }),
    ]);
    const now = Date.now();
    const riskBy = new Map(risk.items.map((r) => [r.key, r]));
    const svcRisk = (s: string): RiskItem | undefined => risk.items.find((r) => r.subject.kind === 'service' && r.subject.service === s);

    // Timelines: services, instances and principals, bounded in points and subjects.
    for (const r of risk.items) {
      if (r.subject.kind === 'edge') continue;
      let t = this.timelines.get(r.key);
      if (!t) {
        if (this.timelines.size >= MAX_TIMELINES) this.timelines.delete(this.timelines.keys().next().value!);
        this.timelines.set(r.key, (t = []));
      }
      if (t.length === 0 || t[t.length - 1]![0] < now - 250) t.push([now, Math.round(r.score)]);
      if (t.length > TIMELINE_POINTS) t.splice(0, t.length - TIMELINE_POINTS);
    }

    const zonesOf = (service: string): string[] => zones.items.filter((z) => z.members.some((m) => m.service === service)).map((z) => z.id);
    const nodes = new Map<string, Snapshot['nodes'][number]>();
    const node = (service: string): Snapshot['nodes'][number] => {
      let n = nodes.get(service);
      if (!n) {
        const r = svcRisk(service);
        nodes.set(service, (n = { service, versions: [], rps: 0, errorRate: 0, risk: r ? Math.round(r.score) : 0, level: r?.level ?? 'low', zones: zonesOf(service) }));
      }
      return n;
    };
    for (const s of sidecars.items) node(s.service).versions.push({ version: s.version ?? '-', instance: s.instance, state: s.state, configVersion: s.configVersion });
    for (const t of traffic.services) {
      if (!nodes.has(t.service) && t.service !== 'ingress') continue;
      const n = node(t.service);
      n.rps = round(t.requestsPerSecond);
      n.errorRate = round(t.errors.errorRate);
    }
    const enrolled = new Set(sidecars.items.map((s) => s.service));
    const secs = Math.max(1, traffic.window.ms / 1000);
    const edges = traffic.edges.map((e) => ({
      source: e.source, destination: e.destination, rps: round(e.requests / secs), errorRate: round(e.errorRate),
      // Both ends run enrolled sidecars whose inbound is STRICT: the hop is mutual TLS.
      mtls: enrolled.has(e.source) && enrolled.has(e.destination),
    }));

    const latest = rollouts.items[0];
    const connected = sidecars.items.filter((s) => s.connected);
    const live = new Set(zones.items.map((z) => z.id));
    for (const id of this.zoneVersions.keys()) if (!live.has(id)) this.zoneVersions.delete(id);
    const zoneList = zones.items.map((z) => {
      if (!this.zoneVersions.has(z.id) && latest) this.zoneVersions.set(z.id, latest.version);
      const v = this.zoneVersions.get(z.id) ?? null;
      const acked = connected.filter((s) => v !== null && (s.configVersion ?? 0) >= v).length;
      return { ...z, rollout: { version: v, inForce: v !== null && acked === connected.length, acked, total: connected.length } };
    });

    const timeline: Record<string, Array<[number, number]>> = {};
    for (const [k, t] of this.timelines) if (riskBy.has(k) || t.some(([, s]) => s > 0)) timeline[k] = t;

    return {
      at: now,
      status,
      nodes: [...nodes.values()].sort((a, b) => a.service.localeCompare(b.service)),
      edges,
      zones: zoneList,
      risk: risk.items.slice(0, 60),
      timeline,
      flagged: this.flagged?.() ?? [],
      audit: audit.entries,
      rollouts: rollouts.items,
    };
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
