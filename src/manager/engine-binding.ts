import type { Logger } from '../core/logger.js';
import { Counter, type Registry } from '../core/metrics.js';
import { EtzError } from '../core/errors.js';
import type { AuditLog } from './audit.js';
import { riskExplain, riskList, trafficReport } from './risk/api.js';
import type { EngineSnapshot, RiskEngine } from './risk/index.js';
import type { EngineEvent, FlaggedPrincipal, Zone } from './risk/types.js';
import type { CreateZoneRequest } from './zones/manager.js';
import type { RiskSink } from './telemetry-intake.js';
import type { Router } from './api/http.js';
import { COLL, type Store } from './store/store.js';
import type { ZoneBackend } from './zone-backend.js';

/**
 * The seam between the live manager and the deterministic risk engine / zone manager:
 * telemetry in (RiskSink), a timer driving advance(Date.now()), engine events out to the audit
 * log, the store and the `zones`/`principals` resources. Operator zone actions go through the
 * engine too, so automation and operators see one set of zones.
 *
 * Durability: the engine's snapshot (zones, flags, scores) is written to the store after every
 * operator action (before the API answers) and after every tick that changed a zone or flag; on
 * start it is restored, so a crash loses no zone.
 */
export class EngineBinding implements ZoneBackend, RiskSink {
  private readonly listeners: Array<(zones: Zone[]) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private dirty = false;
  private ticking = false;
  private commitQueued = false;
  private readonly rejected: Counter;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly engine: RiskEngine,
    private readonly o: { store: Store; audit: AuditLog; logger: Logger; metrics: Registry; advanceMs: number },
  ) {
    this.rejected = new Counter({ name: 'etz_manager_engine_rejected_total', help: 'Records the risk engine refused (invalid or late)', labelNames: ['reason'], registers: [o.metrics] });
    const snap = o.store.get<EngineSnapshot>(COLL.meta, 'engine');
    if (snap) engine.restore(snap);
    this.unsubscribe = engine.on((e) => this.onEvent(e));
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.advanceMs);
    this.timer.unref();
  }

  /** GET /v1/risk, /v1/risk/{subject}, /v1/traffic. */
  mount(router: Router): void {
    router.route('GET', '/v1/risk', 'admin', (r) => riskList(this.engine, r.query));
    router.route('GET', '/v1/risk/{subject*}', 'admin', (r) => riskExplain(this.engine, r.params.subject!));
    router.route('GET', '/v1/traffic', 'admin', (r) => trafficReport(this.engine, r.query));
  }

  // ---- RiskSink ----
  ingest(record: Record<string, unknown>): void {
    try {
      const r = this.engine.ingestJson(record);
      if (!r.ok) this.rejected.inc({ reason: r.reason ?? 'refused' });
    } catch {
      this.rejected.inc({ reason: 'invalid' });
    }
  }

  // ---- ZoneBackend ----
  list(): Zone[] {
    return this.engine.zoneRecords();
  }

  get(id: string): Zone | undefined {
    return this.list().find((z) => z.id === id);
  }

  flagged(): FlaggedPrincipal[] {
    return this.engine.flaggedPrincipals();
  }

  async create(req: CreateZoneRequest, actor: string): Promise<Zone> {
    const z = this.engine.createZone(req, Date.now());
    await this.commit(`zone ${z.id} created by ${actor}`);
    return this.get(z.id)!;
  }

  async dissolve(id: string, reason: string): Promise<Zone> {
    const z = this.get(id);
    if (!z) throw new EtzError('ETZ_ERR_NOT_FOUND', `no zone '${id}'`);
    this.engine.dissolveZone(id, reason, Date.now());
    await this.commit(`zone ${id} dissolved`);
    return z;
  }

  async pin(id: string, pinned: boolean, actor: string): Promise<Zone> {
    if (!this.get(id)) throw new EtzError('ETZ_ERR_NOT_FOUND', `no zone '${id}'`);
    this.engine.pinZone(id, `${pinned ? 'pinned' : 'unpinned'} by ${actor}`, Date.now(), pinned);
    await this.commit(`zone ${id} ${pinned ? 'pinned' : 'unpinned'}`);
    return this.get(id)!;
  }

  async extend(id: string, ttlMs: number, reason: string, actor: string): Promise<Zone> {
    if (!this.get(id)) throw new EtzError('ETZ_ERR_NOT_FOUND', `no zone '${id}'`);
    this.engine.extendZone(id, ttlMs, `${reason} (${actor})`, Date.now());
    await this.commit(`zone ${id} extended`);
    return this.get(id)!;
  }

  /** The engine runs TTLs itself in advance(). */
  async expire(): Promise<Zone[]> {
    return [];
  }

  onChange(listener: (zones: Zone[]) => void): void {
    this.listeners.push(listener);
  }

  async tick(now = Date.now()): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      this.engine.advance(now);
      if (this.dirty) await this.commit('risk engine');
    } catch (err) {
      this.o.logger.error({ err }, 'risk engine tick failed');
    } finally {
      this.ticking = false;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.unsubscribe();
  }

  private onEvent(e: EngineEvent): void {
    if (e.event === 'risk') return;
    this.dirty = true;
    this.commitSoon();
    const entry = e.event === 'alert'
      ? { action: 'alert', target: e.subject ? JSON.stringify(e.subject) : undefined, reason: e.message, details: { severity: e.severity } }
      : e.event === 'principal.flagged' || e.event === 'principal.cleared'
        ? { action: e.event, target: e.principal, reason: e.reason, ...(e.event === 'principal.flagged' ? { details: { action: e.action, ...(e.to ? { to: e.to } : {}) } } : {}) }
        : { action: e.event, target: e.zone.id, reason: 'reason' in e ? e.reason : 'zone' in e && 'reason' in e.zone ? e.zone.reason : undefined, details: { zone: e.zone } };
    void this.o.audit.record({ actor: 'risk-engine', outcome: 'ok', ...entry } as Parameters<AuditLog['record']>[0]).catch((err: Error) => this.o.logger.error({ err }, 'audit write failed'));
  }

  /**
   * Scores from the worker arrive after tick() has returned: push the zones they changed now,
   * not on the next tick. Events of one step are coalesced into one commit.
   */
  private commitSoon(): void {
    if (this.commitQueued || this.ticking || !this.timer) return;
    this.commitQueued = true;
    setImmediate(() => {
      this.commitQueued = false;
      if (!this.dirty || !this.timer) return;
      this.commit('risk engine').catch((err: unknown) => this.o.logger.error({ err }, 'engine state not saved'));
    });
  }

  private async commit(reason: string): Promise<void> {
    this.dirty = false;
    await this.o.store.put(COLL.meta, 'engine', this.engine.snapshot());
    const zones = this.list();
    for (const l of this.listeners) l(zones);
    this.o.logger.info({ reason, zones: zones.length }, 'zones changed');
  }
}
