import { X509Certificate } from 'node:crypto';
import { EtzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Registry } from '../core/metrics.js';
import { formatSpiffeId, signCsr, splitPemCerts, type CaMaterial } from '../identity/index.js';
import type { CertMsg, EnrollRequest, EnrollResponse } from '../protocol/messages.js';
import type { BootstrapTokens } from './auth.js';
import { COLL, type Store } from './store/store.js';

/**
 * Enrollment: a bootstrap token plus a CSR buys a SPIFFE certificate. The record binds the
 * instance to the fingerprints of the certificates issued to it; the control stream accepts a
 * client certificate only when its fingerprint is on a record, so re-enrolling an instance (or
 * deleting its record) retires its old certificate for the control channel.
 */

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
}

export class EnrollmentService {
  private readonly byFp = new Map<string, string>();

  constructor(
    private readonly store: Store,
    private readonly ca: CaMaterial,
    private readonly tokens: BootstrapTokens,
    private readonly opts: { certTtlMs: number; metrics: Registry; logger: Logger },
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
    const issued = await this.sign(csr, rec.spiffeId);
    if (purpose === 'workload') {
      return { type: 'cert', purpose, cert: issued.certPem, chain: splitPemCerts(issued.certChainPem).slice(1), expiresAt: issued.notAfter.getTime(), trustBundle: splitPemCerts(issued.trustBundlePem) };
    }
    const fp = new X509Certificate(issued.certPem).fingerprint256;
    const next: EnrollmentRecord = { ...rec, fingerprints: [fp, ...rec.fingerprints.slice(0, 1)], renewedAt: Date.now(), certExpiresAt: issued.notAfter.getTime() };
    await this.store.put(COLL.enrollments, rec.instance, next);
    for (const f of rec.fingerprints) if (!next.fingerprints.includes(f)) this.byFp.delete(f);
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
