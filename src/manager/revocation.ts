import { REVOCATION_EXPIRY_MARGIN_MS, normalizeSerial, type RevokedCert } from '../protocol/messages.js';
import type { ConfigHub } from './pubsub/hub.js';
import type { Store } from './store/store.js';

/**
 * The revocation list: certificates the operator evicted before they expire. An entry is a
 * certificate serial with its notAfter; once notAfter (plus a clock-skew margin) has passed, TLS
 * refuses the certificate anyway, so the entry is dropped and the list stays as small as the set
 * of revoked certificates still alive. Records are store writes (a revocation the API reports
 * survives a crash) and the whole list is published mesh-wide as the `revoked` resource.
 */

export const REVOCATIONS_COLL = 'revocations';
export const EXPIRY_MARGIN_MS = REVOCATION_EXPIRY_MARGIN_MS;
export type IssuedCert = RevokedCert;
export { normalizeSerial };

export interface RevocationRecord {
  instance: string;
  service: string;
  spiffeId: string;
  revokedAt: number;
  actor: string;
  reason: string;
  certs: IssuedCert[];
}

export class RevocationService {
  private serials = new Set<string>();
  private nextExpiry = Infinity;

  constructor(private readonly store: Store, private readonly hub: ConfigHub, private readonly now: () => number = Date.now) {
    this.reindex();
  }

  list(): RevocationRecord[] {
    return this.store.list<RevocationRecord>(REVOCATIONS_COLL).map(([, r]) => r);
  }

  get(instance: string): RevocationRecord | undefined {
    return this.store.get<RevocationRecord>(REVOCATIONS_COLL, instance);
  }

  /** True while one of the instance's revoked certificates is still alive. */
  isInstanceRevoked(instance: string): boolean {
    return this.get(instance) !== undefined;
  }

  isSerialRevoked(serial: string): boolean {
    return this.serials.size > 0 && this.serials.has(normalizeSerial(serial));
  }

  /**
   * Revoke every live certificate of an instance. A second revocation of the same instance adds
   * the certificates not yet listed and keeps the first record's time, actor and reason.
   */
  async revoke(r: Omit<RevocationRecord, 'revokedAt' | 'certs'> & { certs: readonly IssuedCert[] }): Promise<RevocationRecord> {
    const now = this.now();
    const prev = this.get(r.instance);
    const byserial = new Map<string, IssuedCert>();
    for (const c of [...(prev?.certs ?? []), ...r.certs]) {
      if (c.notAfter + EXPIRY_MARGIN_MS > now) byserial.set(normalizeSerial(c.serial), { serial: normalizeSerial(c.serial), notAfter: c.notAfter });
    }
    const rec: RevocationRecord = prev
      ? { ...prev, certs: [...byserial.values()] }
      : { instance: r.instance, service: r.service, spiffeId: r.spiffeId, revokedAt: now, actor: r.actor, reason: r.reason, certs: [...byserial.values()] };
    await this.store.put(REVOCATIONS_COLL, r.instance, rec);
    this.reindex();
    this.publish();
    return rec;
  }

  /** Drop entries whose certificate has expired; cheap when nothing is due (one comparison). */
  async expire(): Promise<number> {
    const now = this.now();
    if (now < this.nextExpiry) return 0;
    let dropped = 0;
    for (const rec of this.list()) {
      const live = rec.certs.filter((c) => c.notAfter + EXPIRY_MARGIN_MS > now);
      if (live.length === rec.certs.length && live.length > 0) continue;
      dropped += rec.certs.length - live.length;
      if (live.length === 0) await this.store.delete(REVOCATIONS_COLL, rec.instance);
      else await this.store.put(REVOCATIONS_COLL, rec.instance, { ...rec, certs: live });
    }
    this.reindex();
    if (dropped > 0) this.publish();
    return dropped;
  }

  /** The list as sidecars receive it: [{ serial, notAfter }], sorted so equal lists encode equal. */
  entries(): IssuedCert[] {
    const out: IssuedCert[] = [];
    for (const rec of this.list()) for (const c of rec.certs) out.push({ serial: c.serial, notAfter: c.notAfter });
    return out.sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
  }

  publish(): void {
    this.hub.set('mesh', 'revoked', this.entries(), 'revocation list changed');
  }

  private reindex(): void {
    const serials = new Set<string>();
    let next = Infinity;
    for (const rec of this.list()) {
      // Nothing alive to refuse: the record only blocks re-enrollment until the next sweep.
      if (rec.certs.length === 0) next = Math.min(next, rec.revokedAt);
      for (const c of rec.certs) {
        serials.add(normalizeSerial(c.serial));
        next = Math.min(next, c.notAfter + EXPIRY_MARGIN_MS);
      }
    }
    this.serials = serials;
    this.nextExpiry = next;
  }
}
