import type { Counter } from '../../core/metrics.js';
import type { CompileEnv, ConnectionAdmission, ConnectionInfo, FilterFactory, HttpFilter, LocalReply, RequestContext } from '../filter.js';
import { counter } from '../routing/instance-state.js';
import { zonesResourceSchema, type CompiledZone, type ZonesResource } from '../../manager/zones/compile.js';

/**
 * The zone-rules filter (the `zones` resource): enforces the Ephemeral Trust Zones the zone
 * manager compiled. Per config version it resolves which zones this workload belongs to and
 * indexes the others by service; per request it is a few map lookups.
 *
 *  - containment: members' outbound calls are blocked except the allow-list (or, in scrutinise
 *    mode, rate-limited and logged in full); requests from members are refused by every other
 *    sidecar; doubt (no identity, no destination) inside a containment zone means deny.
 *  - isolation: only members and explicitly allowed principals (SPIFFE ID or service) may call a
 *    member, over mTLS; every access is audited.
 *  - performance: marks requests between members so routing prefers in-zone endpoints and costly
 *    inspection is skipped.
 *
 * A containment zone around some instances (or a version) of a service binds only those: their
 * own sidecars block their outbound calls, and callers route around them to the service's other
 * endpoints (ctx.avoidEndpoints), so users keep being served by the siblings. Peers cannot tell
 * one instance of a service from another by identity (SPIFFE IDs name the service), so the
 * contained instance's own sidecar is where its calls are refused.
 *
 * End users the zone manager flagged (`principals` resource) with action `block` are refused at
 * the first hop here; `ratelimit` flags are the rate-limit filter's and `route` flags routing's.
 *
 * It puts `{ source, destination }` — zone ids followed by zone types — on ctx.attrs 'zones' for
 * the authorization and network-policy filters. Shadow zones (enforce: false) are evaluated and
 * logged as `wouldDeny`, never enforced.
 */

export const ZONES_ATTR = 'zones';
export const ZONE_PERFORMANCE_ATTR = 'zone.performance';

type Self = { service: string; version: string; instance: string };

interface Index {
  /** Zones naming this workload. */
  mine: CompiledZone[];
  containment: CompiledZone | undefined;
  isolation: CompiledZone | undefined;
  performance: CompiledZone | undefined;
  /** Zones naming other services as a whole (instance-level members only bind that instance). */
  byService: Map<string, CompiledZone[]>;
  /** Services contained by an enforced or shadow zone (requests from them are refused). */
  contained: Map<string, CompiledZone>;
  selfAttr: string[];
  /** Per service: endpoint keys of its contained instances, where it has others to route to. */
  avoid: Map<string, ReadonlySet<string>>;
}

function memberOf(z: CompiledZone, self: Self): boolean {
  return z.members.some((m) => m.service === self.service && (m.instance === undefined || m.instance === self.instance) && (m.version === undefined || m.version === self.version));
}

/**
 * Endpoints of instance- or version-level containment members, per service, from this version's
 * clusters. A service all of whose endpoints are contained keeps them: that is a whole-service
 * containment, which callers still reach.
 */
function containedEndpoints(zones: CompiledZone[], clusters: CompileEnv['clusters']): Map<string, ReadonlySet<string>> {
  const out = new Map<string, ReadonlySet<string>>();
  const keys = new Map<string, Set<string>>();
  for (const z of zones) {
    if (z.type !== 'containment' || !z.enforce) continue;
    for (const m of z.members) {
      if (m.instance === undefined && m.version === undefined) continue;
      const c = clusters.get(m.service);
      if (!c) continue;
      for (const ep of c.endpoints) {
        if (m.instance !== undefined && ep.instance !== m.instance) continue;
        if (m.version !== undefined && ep.version !== m.version) continue;
        let s = keys.get(m.service);
        if (!s) keys.set(m.service, (s = new Set()));
        s.add(ep.key);
      }
    }
  }
  for (const [svc, s] of keys) if (clusters.get(svc)!.endpoints.some((ep) => !s.has(ep.key))) out.set(svc, s);
  return out;
}

function index(zones: CompiledZone[], self: Self, clusters: CompileEnv['clusters']): Index {
  const mine = zones.filter((z) => memberOf(z, self));
  const byService = new Map<string, CompiledZone[]>();
  const contained = new Map<string, CompiledZone>();
  for (const z of zones) {
    for (const m of z.members) {
      if (m.instance !== undefined || m.version !== undefined) continue;
      const list = byService.get(m.service);
      if (list) {
        if (!list.includes(z)) list.push(z);
      } else byService.set(m.service, [z]);
      if (z.type === 'containment' && (!contained.has(m.service) || z.enforce)) contained.set(m.service, z);
    }
  }
  // Enforced zones take precedence over shadow ones of the same type.
  const pick = (t: CompiledZone['type']) => mine.filter((z) => z.type === t).sort((a, b) => Number(b.enforce) - Number(a.enforce))[0];
  return {
    mine,
    containment: pick('containment'),
    isolation: pick('isolation'),
    performance: pick('performance'),
    byService,
    contained,
    selfAttr: attr(mine),
    avoid: containedEndpoints(zones, clusters),
  };
}

function attr(zones: readonly CompiledZone[]): string[] {
  const ids = zones.map((z) => z.id);
  for (const z of zones) if (!ids.includes(z.type)) ids.push(z.type);
  return ids;
}

class Bucket {
  private tokens: number;
  private last = 0;
  constructor(private readonly perMinute: number) {
    this.tokens = perMinute;
  }
  take(now: number): boolean {
    if (this.last) this.tokens = Math.min(this.perMinute, this.tokens + ((now - this.last) / 60_000) * this.perMinute);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

class ZoneRulesFilter implements HttpFilter, ConnectionAdmission {
  readonly name = 'zone-rules';
  readonly #ix: Index;
  readonly #env: CompileEnv;
  readonly #self: Self;
  readonly #attrCache = new Map<string, string[]>();
  readonly #decisions: Counter<'zone_type' | 'action'>;
  readonly #bucket: Bucket | undefined;
  readonly #blocked: Map<string, string>;

  constructor(ix: Index, env: CompileEnv, self: Self, blocked: Map<string, string>) {
    this.#ix = ix;
    this.#env = env;
    this.#self = self;
    this.#blocked = blocked;
    this.#decisions = counter(env.metrics, 'etz_zone_decisions_total', 'Zone-rules decisions by zone type and action', ['zone_type', 'action']);
    const out = ix.containment?.outbound;
    if (out && out.mode === 'scrutinise') this.#bucket = new Bucket(out.ratePerMinute);
  }

  #zonesOf(service: string | undefined): string[] {
    if (service === undefined) return [];
    let a = this.#attrCache.get(service);
    if (a === undefined) {
      a = attr(this.#ix.byService.get(service) ?? []);
      if (this.#attrCache.size < 10_000) this.#attrCache.set(service, a);
    }
    return a;
  }

  onRequest(ctx: RequestContext): LocalReply | undefined {
    const ix = this.#ix;
    const inbound = ctx.direction !== 'outbound';
    // The caller's service: its SPIFFE service account inbound; ourselves outbound; outside (ingress) at a gateway.
    const caller = ctx.direction === 'outbound' ? this.#self.service : ctx.direction === 'gateway' ? 'ingress' : ctx.peer?.serviceAccount;
    const callee = inbound ? this.#self.service : (ctx.destination?.service ?? (ctx.host || undefined));
    ctx.attrs.set(ZONES_ATTR, {
      source: ctx.direction === 'outbound' ? ix.selfAttr : this.#zonesOf(caller),
      destination: inbound ? ix.selfAttr : this.#zonesOf(callee),
    });

    if (ctx.principal !== undefined && this.#blocked.size > 0 && ctx.direction !== 'outbound') {
      const why = this.#blocked.get(ctx.principal);
      if (why !== undefined) return this.#deny(ctx, null, 'principal', `end user ${ctx.principal} is blocked by the zone manager: ${why}`);
    }

    if (ctx.direction !== 'inbound' && ix.avoid.size > 0) {
      const to = ctx.destination?.service ?? (ctx.host || undefined);
      const avoid = to === undefined ? undefined : ix.avoid.get(to);
      if (avoid !== undefined) ctx.avoidEndpoints = avoid;
    }

    if (ctx.direction === 'outbound') {
      const c = ix.containment;
      if (c) {
        const out = c.outbound ?? { mode: 'block', allow: [], ratePerMinute: 60 };
        if (callee === undefined) return this.#deny(ctx, c, 'containment', `containment zone ${c.id}: destination unknown, denied on doubt`);
        if (!out.allow.includes(callee)) {
          if (out.mode === 'block') return this.#deny(ctx, c, 'containment', `containment zone ${c.id}: outbound from ${this.#self.service} to ${callee} is blocked`);
          this.#audit(ctx, c, caller, callee, 'scrutinised');
          if (!this.#bucket!.take(Date.now())) return this.#deny(ctx, c, 'containment', `containment zone ${c.id}: scrutinised outbound rate exceeded`, 429, 'ETZ_ERR_RATE_LIMITED');
        }
      }
    } else {
      // A contained workload's requests are refused by everyone but the allow-listed services.
      const from = caller === undefined ? undefined : ix.contained.get(caller);
      if (from && !(from.outbound?.allow ?? []).includes(this.#self.service) && !memberOf(from, this.#self)) {
        return this.#deny(ctx, from, 'containment', `containment zone ${from.id}: requests from ${caller} are refused`);
      }
      const c = ix.containment;
      if (c && caller === undefined && ctx.direction === 'inbound') {
        return this.#deny(ctx, c, 'containment', `containment zone ${c.id}: caller identity unknown, denied on doubt`);
      }
      const iso = ix.isolation;
      if (iso) {
        const peer = ctx.peer;
        let ok = false;
        if (ctx.direction === 'inbound' && peer === undefined) {
          return this.#deny(ctx, iso, 'isolation', `isolation zone ${iso.id}: mutual TLS is required`);
        }
        if (caller !== undefined) {
          const allow = iso.allowPrincipals ?? [];
          ok = allow.includes(caller) || (peer !== undefined && allow.includes(peer.spiffeId)) || iso.members.some((m) => m.service === caller);
          if (!ok && ctx.principal !== undefined) ok = allow.includes(`user:${ctx.principal}`);
        }
        if (!ok) return this.#deny(ctx, iso, 'isolation', `isolation zone ${iso.id}: ${caller ?? 'unidentified caller'} is not allowed to call ${this.#self.service}`);
        if (iso.audit !== false) this.#audit(ctx, iso, caller, callee, 'allowed');
      }
    }

    const perf = ix.performance;
    if (perf && perf.enforce && callee !== undefined && caller !== undefined) {
      const other = inbound ? caller : callee;
      if (perf.members.some((m) => m.service === other)) ctx.attrs.set(ZONE_PERFORMANCE_ATTR, { zone: perf.id, members: perf.members, skipInspection: perf.skipInspection === true });
    }
    return undefined;
  }

  #deny(ctx: RequestContext, z: CompiledZone | null, type: string, reason: string, status = 403, code: LocalReply['code'] = 'ETZ_ERR_ZONE_DENIED'): LocalReply | undefined {
    const enforce = z === null || z.enforce;
    this.#decisions.inc({ zone_type: type, action: enforce ? 'deny' : 'shadow_deny' });
    this.#env.logger.warn(
      { audit: 'zone.deny', requestId: ctx.id, zone: z?.id ?? null, enforced: enforce, direction: ctx.direction, source: ctx.peer?.spiffeId ?? null, sourceIp: ctx.remoteAddress, user: ctx.principal ?? null, method: ctx.method, host: ctx.host, path: ctx.path, reason },
      enforce ? 'request denied by a trust zone' : 'request would be denied by a shadow trust zone (wouldDeny)',
    );
    if (!enforce) return undefined;
    ctx.decision = 'deny';
    return { status, code, reason };
  }

  #audit(ctx: RequestContext, z: CompiledZone, caller: string | undefined, callee: string | undefined, outcome: string): void {
    this.#decisions.inc({ zone_type: z.type, action: outcome });
    this.#env.logger.info(
      { audit: 'zone.access', zone: z.id, outcome, requestId: ctx.id, direction: ctx.direction, caller: caller ?? null, callee: callee ?? null, source: ctx.peer?.spiffeId ?? null, sourceIp: ctx.remoteAddress, user: ctx.principal ?? null, method: ctx.method, host: ctx.host, path: ctx.path, query: ctx.query },
      'trust zone access',
    );
  }

  admitsConnection(conn: ConnectionInfo): boolean {
    const ix = this.#ix;
    if (conn.direction === 'outbound') {
      const c = ix.containment;
      if (!c || !c.enforce || c.outbound?.mode === 'scrutinise') return true;
      const allow = c.outbound?.allow ?? [];
      for (const d of conn.destinations) if (!allow.includes(d)) return false;
      return true;
    }
    const caller = conn.peer?.serviceAccount;
    if (caller !== undefined) {
      const from = ix.contained.get(caller);
      if (from && from.enforce && !(from.outbound?.allow ?? []).includes(this.#self.service) && !memberOf(from, this.#self)) return false;
    }
    const iso = ix.isolation;
    if (iso && iso.enforce && conn.direction === 'inbound') {
      if (!conn.peer) return false;
      const allow = iso.allowPrincipals ?? [];
      if (!(allow.includes(conn.peer.spiffeId) || (caller !== undefined && (allow.includes(caller) || iso.members.some((m) => m.service === caller))))) return false;
    }
    return true;
  }
}

export const zoneRulesFilter: FilterFactory<ZonesResource | undefined> = {
  name: 'zone-rules',
  resource: 'zones',
  schema: zonesResourceSchema,
  compile(config, env) {
    const zones = config?.zones ?? [];
    const blocked = new Map<string, string>();
    const principals = env.resources.principals as { flagged?: unknown[] } | unknown[] | undefined;
    const list = Array.isArray(principals) ? principals : (principals?.flagged ?? []);
    for (const f of list) {
      if (f && typeof f === 'object' && (f as { action?: unknown }).action === 'block') {
        const p = f as { principal: string; reason?: string; expiresAt?: number | string };
        const until = typeof p.expiresAt === 'string' ? Date.parse(p.expiresAt) : p.expiresAt;
        // A flag that expired before this version arrived is not enforced (the manager clears it too).
        if (until !== undefined && Number.isFinite(until) && until <= Date.now()) continue;
        blocked.set(p.principal, p.reason ?? 'flagged');
      }
    }
    if (zones.length === 0 && blocked.size === 0) return null;
    const s = env.sidecar.service;
    const self = { service: s.name, version: s.version, instance: s.instance };
    return new ZoneRulesFilter(index(zones, self, env.direction === 'inbound' ? new Map() : env.clusters), env, self, blocked);
  },
};
