import { randomBytes } from 'node:crypto';
import { EtzError } from '../core/errors.js';
import { COLL, type Store } from './store/store.js';
import type { FlaggedPrincipal, Zone } from './risk/types.js';
import type { CreateZoneRequest } from './zones/manager.js';

export type { Zone, ZoneMember, ZoneType } from './risk/types.js';
export type { CreateZoneRequest } from './zones/manager.js';

/**
 * What the zones API needs from whatever decides zones. The store-backed default below serves
 * operator-made zones; the ETZ manager engine implements the same interface when it is attached,
 * so the API and CLI do not change.
 */

export interface ZoneBackend {
  list(): Zone[];
  get(id: string): Zone | undefined;
  create(req: CreateZoneRequest, actor: string): Promise<Zone>;
  dissolve(id: string, reason: string, actor: string): Promise<Zone>;
  pin(id: string, pinned: boolean, actor: string): Promise<Zone>;
  /** Push the zone's expiry `ttlMs` further (engines that run TTLs themselves). */
  extend?(id: string, ttlMs: number, reason: string, actor: string): Promise<Zone>;
  /** Dissolve what has expired; returns the zones dissolved. */
  expire(now: number): Promise<Zone[]>;
  /** Called after every change, with the full list, to publish it. */
  onChange(listener: (zones: Zone[]) => void): void;
  /** End users currently flagged (published with the zones as the `principals` resource). */
  flagged?(): FlaggedPrincipal[];
}

export class StoreZoneBackend implements ZoneBackend {
  private readonly listeners: Array<(zones: Zone[]) => void> = [];
  constructor(private readonly store: Store) {}

  list(): Zone[] {
    return this.store.list<Zone>(COLL.zones).map(([, z]) => z);
  }

  get(id: string): Zone | undefined {
    return this.store.get<Zone>(COLL.zones, id);
  }

  async create(req: CreateZoneRequest, actor: string): Promise<Zone> {
    const now = Date.now();
    const zone: Zone = {
      id: `${req.type.slice(0, 3)}-${randomBytes(4).toString('hex')}`,
      type: req.type,
      members: req.members,
      reason: req.reason,
      createdAt: now,
      expiresAt: req.ttlMs ? now + req.ttlMs : null,
      pinned: req.pinned ?? false,
      shadow: false,
      origin: 'operator',
      triggers: [],
      calmSince: null,
    };
    void actor;
    await this.store.put(COLL.zones, zone.id, zone);
    this.changed();
    return zone;
  }

  async dissolve(id: string): Promise<Zone> {
    const z = this.mustGet(id);
    await this.store.delete(COLL.zones, id);
    this.changed();
    return z;
  }

  async pin(id: string, pinned: boolean): Promise<Zone> {
    const z = { ...this.mustGet(id), pinned };
    await this.store.put(COLL.zones, id, z);
    this.changed();
    return z;
  }

  async expire(now: number): Promise<Zone[]> {
    const gone = this.list().filter((z) => !z.pinned && z.expiresAt !== null && z.expiresAt <= now);
    if (gone.length === 0) return [];
    await this.store.batch(gone.map((z) => ({ op: 'del' as const, coll: COLL.zones, key: z.id })));
    this.changed();
    return gone;
  }

  onChange(listener: (zones: Zone[]) => void): void {
    this.listeners.push(listener);
  }

  private mustGet(id: string): Zone {
    const z = this.get(id);
    if (!z) throw new EtzError('ETZ_ERR_NOT_FOUND', `no zone '${id}'`);
    return z;
  }

  private changed(): void {
    const zones = this.list();
    for (const l of this.listeners) l(zones);
  }
}
