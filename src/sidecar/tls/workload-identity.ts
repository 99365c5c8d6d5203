import { EventEmitter } from 'node:events';
import type { SecureContext } from 'node:tls';
import { EtzError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { nullLogger } from '../../core/logger.js';
import type { Registry } from '../../core/metrics.js';
import { generateKeyAndCsr, signCsr, type SignCsrOptions } from '../../identity/issue.js';
import type { CaMaterial } from '../../identity/ca.js';
import type { KeyType } from '../../identity/keys.js';
import { identityMetrics } from '../../identity/metrics.js';
import { createClientSecureContext, DEFAULT_TLS, materialKey, type TlsMaterial, type TlsSettings } from './options.js';
import { tlsMaterialFromPem } from './material.js';

/**
 * Asks the CA for a certificate for `csrPem`. The zone manager's control client passes one that
 * goes over the control channel; static setups use localCaRenewer.
 */
export type RenewFn = (req: { spiffeId: string; csrPem: string }) => Promise<{ certChainPem: string; trustBundlePem: string }>;

export interface WorkloadIdentityOptions {
  /** Renewal source; without it the material is static (files) and never renewed. */
  renew?: RenewFn;
  /** Renew when this fraction of the lifetime has passed (0 < f < 1); default 0.5. */
  renewFraction?: number;
  keyType?: KeyType;
  settings?: TlsSettings;
  metrics?: Registry;
  logger?: Logger;
}

/** A RenewFn backed by a CA in this process (static setups, tests, `etz ca` directories). */
export function localCaRenewer(ca: CaMaterial, opts: Pick<SignCsrOptions, 'ttlMs'> = {}): RenewFn {
  return async ({ spiffeId, csrPem }) => {
    const issued = await signCsr(ca, csrPem, { spiffeId, ...opts });
    return { certChainPem: issued.certChainPem, trustBundlePem: issued.trustBundlePem };
  };
}

// setTimeout holds at most 2^31-1 ms; longer waits are re-armed when they fire.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The workload's current certificate, key and trust bundle, renewed before expiry. Listeners and
 * upstream transports read `current` / `clientContext` / `key` and subscribe to 'rotate'; a
 * rotation swaps what new handshakes use and never touches open connections. The private key is
 * generated here and never leaves the process.
 *
 * Events: 'rotate' (material: TlsMaterial), 'stop'; 'error' is never emitted — renewal failures are
 * logged, counted and retried while the current certificate stays in force.
 */
export class WorkloadIdentity extends EventEmitter {
  readonly spiffeId: string;
  readonly #renew: RenewFn | undefined;
  readonly #fraction: number;
  readonly #keyType: KeyType;
  readonly settings: TlsSettings;
  readonly #logger: Logger;
  readonly #metrics: ReturnType<typeof identityMetrics> | undefined;
  #material!: TlsMaterial;
  #clientContext!: SecureContext;
  #key = '';
  #generation = 0;
  #installedAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #renewing: Promise<void> | null = null;
  #stopped = false;
  #failures = 0;

  constructor(material: TlsMaterial, opts: WorkloadIdentityOptions = {}) {
    super();
    const f = opts.renewFraction ?? 0.5;
    if (!(f > 0 && f < 1)) throw new EtzError('ETZ_ERR_CONFIG_INVALID', `renewal fraction must be between 0 and 1 (exclusive), got ${f}`);
    this.spiffeId = material.spiffeId;
    this.#renew = opts.renew;
    this.#fraction = f;
    this.#keyType = opts.keyType ?? 'ec-p256';
    this.settings = opts.settings ?? DEFAULT_TLS;
    this.#logger = opts.logger ?? nullLogger;
    this.#metrics = opts.metrics ? identityMetrics(opts.metrics) : undefined;
    this.#install(material);
  }

  /** Issues a first certificate through `renew` and returns the started identity. */
  static async enroll(spiffeId: string, renew: RenewFn, opts: Omit<WorkloadIdentityOptions, 'renew'> = {}): Promise<WorkloadIdentity> {
    const material = await requestMaterial(spiffeId, renew, opts.keyType ?? 'ec-p256');
    const id = new WorkloadIdentity(material, { ...opts, renew });
    id.start();
    return id;
  }

  /** Static setup with a CA in this process: enroll now, renew from the same CA. */
  static fromLocalCa(ca: CaMaterial, spiffeId: string, opts: Omit<WorkloadIdentityOptions, 'renew'> & { ttlMs?: number } = {}): Promise<WorkloadIdentity> {
    const { ttlMs, ...rest } = opts;
    return WorkloadIdentity.enroll(spiffeId, localCaRenewer(ca, ttlMs ? { ttlMs } : {}), rest);
  }

  get current(): TlsMaterial {
    return this.#material;
  }

  /** Built once per material; every outbound connection shares it. */
  get clientContext(): SecureContext {
    return this.#clientContext;
  }

  /** Changes with every new certificate or trust bundle. */
  get key(): string {
    return this.#key;
  }

  get generation(): number {
    return this.#generation;
  }

  /** When the next renewal is due (ms since the epoch), or null when the material is static. */
  get renewAt(): number | null {
    if (!this.#renew) return null;
    const from = Math.max(this.#material.notBefore, this.#installedAt);
    return from + this.#fraction * (this.#material.notAfter - from);
  }

  start(): this {
    this.#stopped = false;
    this.#schedule();
    return this;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.emit('stop');
  }

  /** Renew now (also used by the control client when the manager asks for it). */
  rotateNow(): Promise<void> {
    if (!this.#renew) return Promise.reject(new EtzError('ETZ_ERR_CERT_RENEWAL', 'this identity has no renewal source (static files)'));
    this.#renewing ??= this.#doRenew().finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  /**
   * Put new material in force (e.g. pushed by the manager, or files re-read). Trust-bundle
   * rollover is this call with a bundle holding the old and the new root.
   */
  update(material: TlsMaterial): void {
    if (material.spiffeId !== this.spiffeId) {
      throw new EtzError('ETZ_ERR_TLS_MATERIAL', `new certificate is for '${material.spiffeId}', this workload is '${this.spiffeId}'`);
    }
    this.#install(material);
    this.emit('rotate', material);
    if (!this.#stopped && this.#timer) this.#schedule();
  }

  /** Replace only the trust bundle (root rollover), keeping the certificate. */
  setTrustBundle(trustBundlePem: string): void {
    const m = this.#material;
    this.update(tlsMaterialFromPem(m.certChainPem, m.keyPem, trustBundlePem, 'trust bundle update'));
  }

  #install(material: TlsMaterial): void {
    this.#clientContext = createClientSecureContext(material, this.settings);
    this.#material = material;
    this.#key = materialKey(material);
    this.#generation++;
    this.#installedAt = Date.now();
    this.#metrics?.certExpiry.set({ identity: material.spiffeId }, Math.floor(material.notAfter / 1000));
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const at = this.renewAt;
    if (at === null || this.#stopped) return;
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now()));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (Date.now() + 5 < at) this.#schedule();
      else void this.rotateNow().catch(() => undefined);
    }, wait);
    this.#timer.unref();
  }

  async #doRenew(): Promise<void> {
    try {
      const material = await requestMaterial(this.spiffeId, this.#renew!, this.#keyType);
      if (this.#stopped) return;
      this.#failures = 0;
      this.#metrics?.rotations.inc({ identity: this.spiffeId, outcome: 'ok' });
      this.#logger.info({ identity: this.spiffeId, notAfter: new Date(material.notAfter).toISOString() }, 'workload certificate renewed');
      this.update(material);
      if (!this.#timer) this.#schedule();
    } catch (err) {
      this.#failures++;
      this.#metrics?.rotations.inc({ identity: this.spiffeId, outcome: 'error' });
      const left = this.#material.notAfter - Date.now();
      // Back off, but keep trying well before the current certificate runs out.
      const retry = Math.max(200, Math.min(30_000 * this.#failures, left / 4));
      this.#logger.warn({ code: 'ETZ_ERR_CERT_RENEWAL', identity: this.spiffeId, err: (err as Error).message, retryMs: Math.round(retry) }, 'certificate renewal failed; current certificate stays in force');
      if (!this.#stopped) {
        if (this.#timer) clearTimeout(this.#timer);
        this.#timer = setTimeout(() => {
          this.#timer = null;
          void this.rotateNow().catch(() => undefined);
        }, retry);
        this.#timer.unref();
      }
      throw err instanceof EtzError ? err : new EtzError('ETZ_ERR_CERT_RENEWAL', `renewal failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

async function requestMaterial(spiffeId: string, renew: RenewFn, keyType: KeyType): Promise<TlsMaterial> {
  const { keyPem, csrPem } = await generateKeyAndCsr(spiffeId, keyType);
  const { certChainPem, trustBundlePem } = await renew({ spiffeId, csrPem });
  const m = tlsMaterialFromPem(certChainPem, keyPem, trustBundlePem, 'renewed certificate');
  if (m.spiffeId !== spiffeId) throw new EtzError('ETZ_ERR_CERT_RENEWAL', `the CA issued '${m.spiffeId}' instead of '${spiffeId}'`);
  return m;
}
