import { EtzError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { SidecarMessage } from '../../protocol/messages.js';
import { backoffDelay, type ControlClientOptions } from './client-options.js';
import { enroll, loadCredentials, newKeyAndCsr, saveCredentials, type Credentials } from './credentials.js';

/**
 * The control client's own certificate: loaded from disk, enrolled with the bootstrap token when
 * missing or expired, and renewed over the open stream, so renewal needs no token.
 */
export class CredentialLifecycle {
  private creds: Credentials | undefined;
  private renewing = false;
  private pendingKeyPem: string | undefined;

  constructor(
    private readonly o: ControlClientOptions,
    private readonly logger: Logger,
    private readonly on: { enrolled(spiffeId: string): void; renewed(expiresAt: number): void },
  ) {}

  get current(): Credentials | undefined {
    return this.creds;
  }

  /** Retries with backoff while the manager is unreachable; a refused enrollment is final. */
  async ensure(stopped: () => boolean): Promise<Credentials> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.now();
      } catch (err) {
        if (stopped() || (err as { code?: string }).code === 'ETZ_ERR_ENROLL_FAILED') throw err;
        this.logger.warn({ err: (err as Error).message }, 'cannot enroll yet; retrying');
        await new Promise((r) => setTimeout(r, backoffDelay(attempt, this.o)));
      }
    }
  }

  async now(): Promise<Credentials> {
    this.creds ??= await loadCredentials(this.o.dataDir);
    if (!this.creds || this.creds.expiresAt <= Date.now()) {
      if (!this.o.bootstrapToken) throw new EtzError('ETZ_ERR_ENROLL_FAILED', 'no valid certificate and no bootstrap token to enroll with');
      this.creds = await enroll({ url: this.o.url, caPem: this.o.caPem, token: this.o.bootstrapToken, node: this.o.node });
      await saveCredentials(this.o.dataDir, this.creds);
      this.logger.info({ spiffeId: this.creds.spiffeId }, 'enrolled with the manager');
      this.on.enrolled(this.creds.spiffeId);
    }
    return this.creds;
  }

  /** The manager no longer knows this certificate: the next attempt enrolls again if it can. */
  forget(): void {
    this.creds = { ...this.creds!, expiresAt: 0 };
  }

  maybeRenew(connected: boolean, send: (msg: SidecarMessage) => void): void {
    const c = this.creds;
    if (!c || this.renewing || !connected) return;
    const at = c.issuedAt + (c.expiresAt - c.issuedAt) * (this.o.renewAt ?? 2 / 3);
    if (Date.now() < at) return;
    this.renewing = true;
    void newKeyAndCsr().then(({ keyPem, csrPem }) => {
      this.pendingKeyPem = keyPem;
      send({ type: 'renew', csr: csrPem, purpose: 'control' });
    }, () => (this.renewing = false));
  }

  /** The manager refused something; a renewal in flight will not be answered. */
  renewalFailed(): void {
    this.renewing = false;
  }

  async onCert(certPem: string, expiresAt: number): Promise<void> {
    const keyPem = this.pendingKeyPem;
    this.renewing = false;
    if (!keyPem || !this.creds) return;
    this.pendingKeyPem = undefined;
    this.creds = { ...this.creds, keyPem, certPem, issuedAt: Date.now(), expiresAt };
    await saveCredentials(this.o.dataDir, this.creds);
    this.logger.info({ expiresAt: new Date(expiresAt).toISOString() }, 'certificate renewed');
    this.on.renewed(expiresAt);
  }
}
