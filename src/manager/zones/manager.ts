import { EtzError } from '../../core/errors.js';
import type { EngineConfig, ZonePolicyConfig } from '../risk/config.js';
import type { EngineEvent, PublicZone, Reason, Subject, Zone, ZoneMember, ZoneType } from '../risk/types.js';
import { instanceShareGuard, meshShareGuard, narrowMembers, type Inventory } from './members.js';

/**
 * The Ephemeral Trust Zone lifecycle: risk-triggered zones with hysteresis (a trigger must hold
 * for `enterWindows` consecutive windows), cool-down (risk below the exit threshold for
 * `coolDownMs` dissolves), TTL, the blast-radius guard, shadow mode, label policies and operator
 * actions. Deterministic: time only comes in through the `now` arguments.
 */

export type { Inventory, InstanceRisk } from './members.js';

export interface ScoredSubject {
  key: string;
  subject: Subject;
  score: number;
  level: string;
  reasons: Reason[];
}

export interface CreateZoneRequest {
  type: ZoneType;
  members: ZoneMember[];
  reason: string;
  ttlMs?: number;
  pinned?: boolean;
}

export interface ZoneSnapshot {
  seq: number;
  zones: Zone[];
  suppressed: Array<[string, number]>;
}

type Emit = (e: EngineEvent) => void;

export class ZoneManager {
  private readonly cfg: EngineConfig;
  private readonly emit: Emit;
  private readonly inventory: Inventory;
  private readonly zones = new Map<string, Zone>();
  private readonly byTarget = new Map<string, string>();
  private readonly streak = new Map<string, number>();
  private readonly since = new Map<string, number>();
  private readonly held = new Set<string>();
  // Targets an operator released by hand: automation leaves them alone for a cool-down.
  private readonly suppressed = new Map<string, number>();
  private seq = 0;

  constructor(cfg: EngineConfig, emit: Emit, inventory: Inventory) {
    this.cfg = cfg;
    this.emit = emit;
    this.inventory = inventory;
  }

  list(): Zone[] {
    return [...this.zones.values()];
  }

  get(id: string): Zone | undefined {
    return this.zones.get(id);
  }

  /** Zones naming `service` (whole service or one of its instances). */
  zonesOf(service: string): Zone[] {
    return this.list().filter((z) => z.members.some((m) => m.service === service));
  }

  /** Label policies: sensitive services → isolation, latency-critical groups → performance. */
  applyPolicies(now: number): void {
    const services = this.cfg.risk.services;
    const iso = this.cfg.zones.isolation;
    if (iso.enabled) {
      for (const [name, s] of Object.entries(services)) {
        const label = (s.labels ?? []).find((l) => iso.labels.includes(l));
        if (!label) continue;
        const target = `isolation:${name}`;
        if (this.byTarget.has(target)) continue;
        this.open('isolation', target, [{ service: name }], `service ${name} is labelled ${label}`, now, null, 'policy', []);
      }
    }
    const perf = this.cfg.zones.performance;
    if (perf.enabled) {
      const members = Object.entries(services)
        .filter(([, s]) => (s.labels ?? []).some((l) => perf.labels.includes(l)))
        .map(([name]) => ({ service: name }))
        .sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
      if (members.length >= 2 && !this.byTarget.has('performance:labelled')) {
        this.open('performance', 'performance:labelled', members, `services labelled ${perf.labels.join('/')}`, now, null, 'policy', []);
      }
    }
  }

  /**
   * Measured performance groups (services that are fast, busy and talk mostly to each other):
   * a group overlapping an existing measured zone updates it, a new one creates a zone, and a
   * zone whose group has been gone for the cool-down is dissolved.
   */
  syncMeasuredPerformance(groups: string[][], now: number): void {
    const cool = this.cfg.zones.performance.coolDownMs;
    const measured = this.list().filter((z) => z.type === 'performance' && z.origin === 'policy' && z.triggers[0] === 'measured');
    const matched = new Set<Zone>();
    for (const g of groups) {
      const z = measured.find((x) => !matched.has(x) && x.members.some((m) => g.includes(m.service)));
      if (!z) {
        const zone = this.open('performance', `performance:measured:${g.join(',')}`, g.map((service) => ({ service })), `services ${g.join(', ')} are latency-critical and talk mostly to each other`, now, null, 'policy', ['measured']);
        matched.add(zone);
        continue;
      }
      matched.add(z);
      z.calmSince = null;
      const now2 = g.map((service) => ({ service }));
      if (now2.map((m) => m.service).join() !== z.members.map((m) => m.service).join()) {
        z.members = now2;
        this.emit({ ts: iso(now), event: 'zone.updated', zone: publicZone(z), reason: `measured group is now ${g.join(', ')}` });
      }
    }
    for (const z of measured) {
      if (matched.has(z) || z.pinned) continue;
      z.calmSince ??= now;
      if (now - z.calmSince >= cool) this.close(z, 'the measured latency-critical group is gone', now);
    }
  }

  /** Fold one window's scores into the lifecycle. `scoreOf` gives any subject's latest score. */
  onScores(items: ScoredSubject[], now: number, scoreOf: (key: string) => number): void {
    for (const item of items) {
      for (const type of ['containment', 'isolation'] as const) {
        const policy = this.cfg.zones[type];
        if (!policy.enabled) continue;
        const sk = `${type}|${item.key}`;
        if (item.score >= policy.enterScore) {
          const n = (this.streak.get(sk) ?? 0) + 1;
          this.streak.set(sk, n);
          if (n === 1) this.since.set(sk, now - this.cfg.risk.windowMs);
          // Isolation is no fallback for a containment the blast-radius guard held back: that
          // decision waits for an operator. Nor does it come first when the subject is already
          // on its way to containment (a zone the containment would supersede a window later).
          if (type === 'isolation' && (this.held.has(`containment|${item.key}`) || (this.cfg.zones.containment.enabled && (this.streak.get(`containment|${item.key}`) ?? 0) > 0))) continue;
          if (n >= policy.enterWindows) this.trigger(type, item, now);
        } else if (this.streak.delete(sk)) {
          this.held.delete(sk);
          this.since.delete(sk);
        }
      }
    }
    // Calm tracking for risk-triggered zones: the strongest trigger decides.
    for (const z of this.zones.values()) {
      if (z.origin !== 'risk') continue;
      const exit = this.policy(z.type).exitScore;
      let max = 0;
      for (const k of z.triggers) max = Math.max(max, scoreOf(k));
      if (max < exit) z.calmSince ??= now;
      else z.calmSince = null;
    }
  }

  /** Cool-down and TTL. */
  tick(now: number): void {
    for (const z of [...this.zones.values()]) {
      if (z.pinned) continue;
      if (z.origin === 'risk') {
        const p = this.policy(z.type);
        if (z.calmSince !== null && now - z.calmSince >= p.coolDownMs) {
          this.close(z, `risk stayed below ${p.exitScore} for ${Math.round(p.coolDownMs / 1000)} s`, now);
          continue;
        }
        if (z.expiresAt !== null && z.expiresAt <= now) {
          if (z.calmSince !== null) this.close(z, 'ttl expired', now);
          else {
            z.expiresAt = now + p.ttlMs;
            this.emit({ ts: iso(now), event: 'zone.updated', zone: publicZone(z), reason: 'ttl renewed: risk is still above the exit threshold' });
          }
        }
      } else if (z.expiresAt !== null && z.expiresAt <= now) {
        this.close(z, 'ttl expired', now);
      }
    }
    for (const [k, until] of this.suppressed) if (until <= now) this.suppressed.delete(k);
  }

  create(req: CreateZoneRequest, now: number): Zone {
    validateCreate(req);
    const first = req.members[0]!.service;
    const target = `${req.type}:${first}`;
    const existing = this.byTarget.get(target);
    if (existing) throw new EtzError('ETZ_ERR_ZONE_INVALID', `a ${req.type} zone for ${first} already exists: ${existing}`);
    const ttl = req.ttlMs ?? (req.type === 'performance' ? null : this.policy(req.type).ttlMs);
    const z = this.open(req.type, target, req.members.map(cleanMember), req.reason, now, ttl === null ? null : now + ttl, 'operator', []);
    if (req.pinned) z.pinned = true;
    return z;
  }

  dissolve(id: string, reason: string, now: number): Zone {
    const z = this.mustGet(id);
    if (z.origin === 'risk') {
      // Neither this zone nor a weaker one comes back automatically for a cool-down.
      for (const m of z.members) this.suppressed.set(m.service, now + this.policy(z.type).coolDownMs);
      for (const k of z.triggers) this.streak.delete(`${z.type}|${k}`);
    }
    this.close(z, reason, now);
    return z;
  }

  pin(id: string, pinned: boolean, reason: string, now: number): Zone {
    const z = this.mustGet(id);
    if (z.pinned !== pinned) {
      z.pinned = pinned;
      this.emit({ ts: iso(now), event: 'zone.updated', zone: publicZone(z), reason: `${pinned ? 'pinned' : 'unpinned'}: ${reason}` });
    }
    return z;
  }

  extend(id: string, ttlMs: number, reason: string, now: number): Zone {
    if (!(Number.isFinite(ttlMs) && ttlMs > 0)) throw new EtzError('ETZ_ERR_ZONE_INVALID', 'ttl must be a positive duration');
    const z = this.mustGet(id);
    z.expiresAt = Math.max(z.expiresAt ?? now, now) + ttlMs;
    this.emit({ ts: iso(now), event: 'zone.updated', zone: publicZone(z), reason: `extended by ${Math.round(ttlMs / 1000)} s: ${reason}` });
    return z;
  }

  snapshot(): ZoneSnapshot {
    return { seq: this.seq, zones: this.list().map((z) => structuredClone(z)), suppressed: [...this.suppressed] };
  }

  restore(s: ZoneSnapshot): void {
    this.zones.clear();
    this.byTarget.clear();
    this.seq = s.seq;
    for (const z of s.zones) {
      this.zones.set(z.id, structuredClone(z));
      const t = this.targetOf(z);
      if (t) this.byTarget.set(t, z.id);
    }
    this.suppressed.clear();
    for (const [k, v] of s.suppressed) this.suppressed.set(k, v);
  }

  private policy(type: ZoneType): ZonePolicyConfig {
    if (type === 'performance') return { enabled: true, enterScore: 101, exitScore: 0, enterWindows: 1, coolDownMs: 0, ttlMs: 3_600_000 };
    return this.cfg.zones[type];
  }

  private trigger(type: 'containment' | 'isolation', item: ScoredSubject, now: number): void {
    const member = memberOf(item.subject);
    if (!member) return;
    const target = `${type}:${member.service}`;
    if ((this.suppressed.get(member.service) ?? 0) > now) return;
    if (type === 'isolation' && this.byTarget.has(`containment:${member.service}`)) return;
    // The narrowest members that explain the risk: a service's (or its edge's) risk concentrated
    // in a few of its instances while the siblings are normal is drawn around those instances.
    let members = [member];
    let triggers = [item.key];
    let reason = `${label(item.subject)} risk ${item.score} (${item.level})${item.reasons.length ? `: ${details(item.reasons)}` : ''}`;
    if (member.instance === undefined) {
      const n = narrowMembers(this.cfg, this.inventory, member.service, now);
      if (n) {
        members = n.hot.map((h) => memberOf(h.subject)!);
        triggers = [item.key, ...n.hot.map((h) => h.key)];
        const h = n.hot[0]!;
        reason = `${label(h.subject)} risk ${h.score} (${h.level})${h.reasons.length ? `: ${details(h.reasons)}` : ''}` +
          ` — the risk of ${label(item.subject)} (${item.score}) is concentrated there; sibling${n.siblings.length > 1 ? 's' : ''} ${n.siblings.map((x) => `${x.subject.instance} ${x.score}`).join(', ')} normal`;
      }
    }
    const existingId = this.byTarget.get(target);
    const policy = this.policy(type);
    if (existingId) {
      const z = this.zones.get(existingId)!;
      if (type === 'containment' && z.origin === 'risk') {
        const why = instanceShareGuard(this.cfg, this.inventory, members, z, now);
        if (why) return this.holdBack(type, item, why, now);
      }
      let changed = false;
      for (const k of triggers) if (!z.triggers.includes(k)) z.triggers.push(k);
      for (const m of members) if (addMember(z, m)) changed = true;
      if (z.expiresAt !== null) z.expiresAt = Math.max(z.expiresAt, now + policy.ttlMs);
      z.calmSince = null;
      if (changed) this.emit({ ts: iso(now), event: 'zone.updated', zone: publicZone(z), reason: `${members.map(memberLabel).join(', ')} joined: ${label(item.subject)} risk ${item.score}` });
      return;
    }
    if (type === 'containment') {
      const why = instanceShareGuard(this.cfg, this.inventory, members, undefined, now) ?? meshShareGuard(this.cfg, this.inventory, this.zones.values());
      if (why) return this.holdBack(type, item, why, now);
    }
    this.open(type, target, members, reason, now, now + policy.ttlMs, 'risk', triggers, this.since.get(`${type}|${item.key}`));
    if (type === 'containment') {
      const isoId = this.byTarget.get(`isolation:${member.service}`);
      const isoZone = isoId ? this.zones.get(isoId) : undefined;
      if (isoZone && isoZone.origin === 'risk') this.close(isoZone, 'superseded by a containment zone', now);
    }
  }

  private holdBack(type: 'containment', item: ScoredSubject, why: string, now: number): void {
    const sk = `${type}|${item.key}`;
    if (this.held.has(sk)) return;
    this.held.add(sk);
    this.emit({ ts: iso(now), event: 'alert', severity: 'critical', message: `containment of ${label(item.subject)} held back by the blast-radius guard (${why}); an operator must decide`, subject: item.subject });
  }

  private open(type: ZoneType, target: string, members: ZoneMember[], reason: string, now: number, expiresAt: number | null, origin: Zone['origin'], triggers: string[], detectedAt?: number): Zone {
    const z: Zone = {
      id: `${type}-${members[0]!.instance ?? members[0]!.service}-${++this.seq}`,
      type,
      members,
      reason,
      createdAt: now,
      expiresAt,
      pinned: false,
      shadow: this.cfg.zones.mode === 'shadow',
      origin,
      triggers,
      calmSince: null,
    };
    if (detectedAt !== undefined) z.detectedAt = detectedAt;
    this.zones.set(z.id, z);
    this.byTarget.set(target, z.id);
    this.emit({ ts: iso(now), event: 'zone.created', zone: publicZone(z) });
    return z;
  }

  private close(z: Zone, reason: string, now: number): void {
    this.zones.delete(z.id);
    for (const [t, id] of this.byTarget) if (id === z.id) this.byTarget.delete(t);
    for (const k of z.triggers) this.streak.delete(`${z.type}|${k}`);
    this.emit({ ts: iso(now), event: 'zone.dissolved', zone: { id: z.id, type: z.type }, reason });
  }

  private targetOf(z: Zone): string | null {
    if (z.type === 'performance' && z.origin === 'policy') return z.triggers[0] === 'measured' ? null : 'performance:labelled';
    return `${z.type}:${z.members[0]!.service}`;
  }

  private mustGet(id: string): Zone {
    const z = this.zones.get(id);
    if (!z) throw new EtzError('ETZ_ERR_ZONE_NOT_FOUND', `no zone with id '${id}'`);
    return z;
  }
}

/** The workload a subject's zone is drawn around (an edge's caller); null when there is none. */
export function memberOf(s: Subject): ZoneMember | null {
  switch (s.kind) {
    case 'service':
      return { service: s.service };
    case 'instance':
      return s.version === undefined ? { service: s.service, instance: s.instance } : { service: s.service, version: s.version, instance: s.instance };
    case 'edge':
      return s.source === 'ingress' ? null : { service: s.source };
    default:
      return null;
  }
}

function addMember(z: Zone, m: ZoneMember): boolean {
  if (z.members.some((x) => x.service === m.service && x.instance === undefined)) return false;
  if (m.instance === undefined) {
    z.members = z.members.filter((x) => x.service !== m.service);
    z.members.push(m);
    return true;
  }
  if (z.members.some((x) => x.service === m.service && x.instance === m.instance)) return false;
  z.members.push(m);
  return true;
}

function cleanMember(m: ZoneMember): ZoneMember {
  const out: ZoneMember = { service: m.service };
  if (m.version !== undefined) out.version = m.version;
  if (m.instance !== undefined) out.instance = m.instance;
  return out;
}

function validateCreate(req: CreateZoneRequest): void {
  if (!req || !['containment', 'isolation', 'performance'].includes(req.type)) throw new EtzError('ETZ_ERR_ZONE_INVALID', 'type must be containment, isolation or performance');
  if (!Array.isArray(req.members) || req.members.length === 0) throw new EtzError('ETZ_ERR_ZONE_INVALID', 'members must name at least one service');
  for (const m of req.members) {
    if (!m || typeof m.service !== 'string' || !m.service) throw new EtzError('ETZ_ERR_ZONE_INVALID', 'every member needs a service');
  }
  if (typeof req.reason !== 'string' || !req.reason.trim()) throw new EtzError('ETZ_ERR_ZONE_INVALID', 'a reason is required');
  if (req.ttlMs !== undefined && !(Number.isFinite(req.ttlMs) && req.ttlMs > 0)) throw new EtzError('ETZ_ERR_ZONE_INVALID', 'ttl must be a positive duration');
}

function details(reasons: Reason[]): string {
  return reasons.filter((r) => (r.points ?? 0) > 0).slice(0, 3).map((r) => r.detail).join('; ');
}

function memberLabel(m: ZoneMember): string {
  return m.instance ?? (m.version !== undefined ? `${m.service}@${m.version}` : m.service);
}

export function label(s: Subject): string {
  switch (s.kind) {
    case 'service':
      return `service ${s.service}`;
    case 'instance':
      return `instance ${s.instance} of ${s.service}`;
    case 'edge':
      return `edge ${s.source} → ${s.destination}`;
    case 'principal':
      return `principal ${s.principal}`;
  }
}

export function publicZone(z: Zone): PublicZone {
  return {
    id: z.id,
    type: z.type,
    members: z.members.map((m) => ({ ...m })),
    reason: z.reason,
    origin: z.origin,
    shadow: z.shadow,
    pinned: z.pinned,
    createdAt: iso(z.createdAt),
    expiresAt: z.expiresAt === null ? null : iso(z.expiresAt),
    ...(z.detectedAt !== undefined ? { detectedAt: iso(z.detectedAt) } : {}),
  };
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
