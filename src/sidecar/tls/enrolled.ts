import type { Logger } from '../../core/logger.js';
import type { Registry } from '../../core/metrics.js';
import { tlsMaterialFromPem } from './material.js';
import type { TlsSettings } from './options.js';
import { WorkloadIdentity } from './workload-identity.js';

/** What the control client exposes after enrollment (src/sidecar/control/credentials.ts). */
export interface CredentialSource {
  readonly credentials: { certPem: string; keyPem: string; trustBundlePem: string } | undefined;
  on(event: 'renewed', listener: (...args: unknown[]) => void): unknown;
  off(event: 'renewed', listener: (...args: unknown[]) => void): unknown;
}

/**
 * The workload identity of an enrolled sidecar: the control client owns renewal (it asks the
 * manager over the control stream); every 'renewed' puts the new certificate and trust bundle in
 * force for new handshakes. Pass the result as SidecarOptions.identity.
 */
export function enrolledIdentity(source: CredentialSource, opts: { metrics?: Registry; logger?: Logger; settings?: TlsSettings } = {}): WorkloadIdentity {
  const c = source.credentials;
  if (!c) throw new Error('the control client has no credentials yet: enroll first');
  const identity = new WorkloadIdentity(tlsMaterialFromPem(c.certPem, c.keyPem, c.trustBundlePem, 'enrolled credentials'), opts);
  const onRenewed = (): void => {
    const n = source.credentials;
    if (!n) return;
    try {
      identity.update(tlsMaterialFromPem(n.certPem, n.keyPem, n.trustBundlePem, 'renewed credentials'));
    } catch (err) {
      // Keep the certificate in force; the control client retries renewal.
      opts.logger?.warn({ code: 'ETZ_ERR_CERT_RENEWAL', err: (err as Error).message }, 'renewed credentials refused');
    }
  };
  source.on('renewed', onRenewed);
  identity.once('stop', () => source.off('renewed', onRenewed));
  return identity;
}
