import { X509Certificate } from 'node:crypto';
import { EtzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Registry } from '../core/metrics.js';
import { formatSpiffeId, signCsr, splitPemCerts, type CaMaterial } from '../identity/index.js';
import type { CertMsg, EnrollRequest, EnrollResponse } from '../protocol/messages.js';
import type { BootstrapTokens } from './auth.js';
import { EXPIRY_MARGIN_MS, normalizeSerial, type IssuedCert } from './revocation.js';
import { COLL, type Store } from './store/store.js';

/**
 * Enrollment: a bootstrap token plus a CSR buys a SPIFFE certificate. The record binds the
 * instance to the fingerprints of the certificates issued to it; the control stream accepts a
 * client certificate only when its fingerprint is on a record, so re-enrolling an instance (or
 * deleting its record) retires its old certificate for the control channel. The record also keeps
 * the serial and notAfter of every certificate issued to the instance that is still alive
 * (control and workload), which is what a revocation lists.
 */

/** More live certificates than this for one instance is abuse of renewal, not rotation. */
export const MAX_LIVE_CERTS = 64;

export interface EnrollmentRecord {
  instance: string;
  service: string;
  namespace: string;
  version?: string;
  spiffeId: string;
  /** SHA-256 fingerprints (Node's colon form) of the current and the previous certificate. */
  fingerprints: string[];
  enrolledAt: number;
  renewedAt?: number;
  certExpiresAt: number;
  tokenId: string;
  /** Every certificate issued to this instance and not yet expired (absent in older records). */
  certs?: IssuedCert[];
}

function issuedCert(certPem: string): IssuedCert {
  const x = new X509Certificate(certPem);
  return { serial: normalizeSerial(x.serialNumber), notAfter: Date.parse(x.validTo) };
}

function liveCerts(certs: readonly IssuedCert[] | undefined, now: number): IssuedCert[] {
  return (certs ?? []).filter((c) => c.notAfter + EXPIRY_MARGIN_MS > now);
}

export class EnrollmentService {
  private readonly byFp = new Map<string, string>();

  constructor(
    private readonly store: Store,
    private readonly ca: CaMaterial,
    private readonly tokens: BootstrapTokens,
    private readonly opts: { certTtlMs: number; metrics: Registry; logger: Logger; isRevoked?: (instance: string) => boolean },
  ) {
    for (const [, r] of store.list<EnrollmentRecord>(COLL.enrollments)) for (const fp of r.fingerprints) this.byFp.set(fp, r.instance);
  }

  byFingerprint(fp: string): EnrollmentRecord | undefined {
    const inst = this.byFp.get(fp);
    const rec = inst === undefined ? undefined : this.store.get<EnrollmentRecord>(COLL.enrollments, inst);
    return rec && rec.fingerprints.includes(fp) ? rec : undefined;
  }

  list(): EnrollmentRecord[] {
    return this.store.list<EnrollmentRecord>(COLL.enrollments).map(([, r]) => r);
  }

  get(instance: string): EnrollmentRecord | undefined {
    return this.store.get<EnrollmentRecord>(COLL.enrollments, instance);
  }

  async enroll(token: string, req: EnrollRequest): Promise<{ response: EnrollResponse; record: EnrollmentRecord }> {
    // Checked before the token is spent: a revoked instance name stays out until its revoked
    // certificates have expired, whatever token it presents.
    if (this.opts.isRevoked?.(req.instance)) {
      throw new EtzError('ETZ_ERR_IDENTITY_REVOKED', `instance '${req.instance}' is revoked; it cannot enroll again until its revoked certificates expire (enroll under a new instance name)`);
    }
    const tok = await this.tokens.consume(token, req.service);
    const spiffeId = formatSpiffeId(this.ca.trustDomain, tok.scope.namespace ?? 'default', req.service);
    const issued = await this.sign(req.csr, spiffeId);
    const fp = new X509Certificate(issued.certPem).fingerprint256;
    const old = this.get(req.instance);
    const record: EnrollmentRecord = {
      instance: req.instance,
      service: req.service,
      namespace: tok.scope.namespace ?? 'default',
      ...(req.version ? { version: req.version } : {}),
      spiffeId,
      fingerprints: [fp],
      enrolledAt: Date.now(),
      certExpiresAt: issued.notAfter.getTime(),
      tokenId: tok.id,
      // Certificates of an earlier enrollment of the same name stay listed until they expire.
      certs: [...liveCerts(old?.certs, Date.now()), issuedCert(issued.certPem)],
    };
    await this.store.put(COLL.enrollments, req.instance, record);
    if (old) for (const f of old.fingerprints) this.byFp.delete(f);
    this.byFp.set(fp, req.instance);
    return {
      record,
      response: {
        spiffeId,
        cert: issued.certPem,
        chain: splitPemCerts(issued.certChainPem).slice(1),
        trustBundle: splitPemCerts(issued.trustBundlePem),
        expiresAt: issued.notAfter.getTime(),
      },
    };
  }

  /** Renewal over the control stream: same identity, new key; the previous cert stays valid until it expires. */
  async renew(rec: EnrollmentRecord, csr: string, purpose: 'control' | 'workload' = 'control'): Promise<CertMsg> {
    if (this.opts.isRevoked?.(rec.instance)) throw new EtzError('ETZ_ERR_IDENTITY_REVOKED', `instance '${rec.instance}' is revoked`);
    const now = Date.now();
    if (liveCerts(rec.certs, now).length >= MAX_LIVE_CERTS) {
      throw new EtzError('ETZ_ERR_INVALID_INPUT', `instance '${rec.instance}' already holds ${MAX_LIVE_CERTS} live certificates; renew again when some have expired`);
    }
    const issued = await this.sign(csr, rec.spiffeId);
    // Re-read: a concurrent renewal or a revocation may have changed the record while signing.
    const cur = this.get(rec.instance);
    if (!cur || this.opts.isRevoked?.(rec.instance)) throw new EtzError('ETZ_ERR_IDENTITY_REVOKED', `instance '${rec.instance}' is revoked`);
    const certs = [...liveCerts(cur.certs, now), issuedCert(issued.certPem)];
    if (purpose === 'workload') {
      await this.store.put(COLL.enrollments, rec.instance, { ...cur, certs });
      return { type: 'cert', purpose, cert: issued.certPem, chain: splitPemCerts(issued.certChainPem).slice(1), expiresAt: issued.notAfter.getTime(), trustBundle: splitPemCerts(issued.trustBundlePem) };
    }
    const fp = new X509Certificate(issued.certPem).fingerprint256;
    const next: EnrollmentRecord = { ...cur, fingerprints: [fp, ...cur.fingerprints.slice(0, 1)], renewedAt: now, certExpiresAt: issued.notAfter.getTime(), certs };
    await this.store.put(COLL.enrollments, rec.instance, next);
    for (const f of cur.fingerprints) if (!next.fingerprints.includes(f)) this.byFp.delete(f);
    this.byFp.set(fp, rec.instance);
    return { type: 'cert', purpose, cert: issued.certPem, chain: splitPemCerts(issued.certChainPem).slice(1), expiresAt: issued.notAfter.getTime(), trustBundle: splitPemCerts(issued.trustBundlePem) };
  }

  async remove(instance: string): Promise<boolean> {
    const rec = this.get(instance);
    if (!rec) return false;
    await this.store.delete(COLL.enrollments, instance);
    for (const f of rec.fingerprints) this.byFp.delete(f);
    return true;
  }

  private async sign(csr: string, spiffeId: string) {
    try {
      return await signCsr(this.ca, csr, { spiffeId, ttlMs: this.opts.certTtlMs, trustDomain: this.ca.trustDomain, metrics: this.opts.metrics, logger: this.opts.logger });
    } catch (err) {
      if (err instanceof EtzError) throw new EtzError('ETZ_ERR_INVALID_INPUT', err.message, { cause: err });
      throw err;
    }
  }
}
