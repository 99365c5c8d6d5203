import type { PeerCertificate, TLSSocket } from 'node:tls';
import { buildConnector } from 'undici';
import { EtzError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { nullLogger } from '../../core/logger.js';
import type { Registry } from '../../core/metrics.js';
import { identityMetrics } from '../../identity/metrics.js';
import { peerIdentityFromCert } from '../../identity/verify.js';
import type { WorkloadIdentity } from './workload-identity.js';
import { refusalLogger } from './log-limit.js';
import type { RevocationList } from './revocation.js';

/**
 * mTLS origination: the outbound side of a mesh hop. Each upstream pool gets a connector that
 * reads the workload's current client context at connect time, so a rotated certificate applies
 * to new connections while pooled ones keep running; a connector is rebuilt (dropping cached
 * sessions, which belong to the old certificate) only when the material changes. The peer must
 * chain to the trust bundle (OpenSSL, rejectUnauthorized) and carry the expected SPIFFE ID
 * (checkServerIdentity); any failure is an ETZ_ERR_UPSTREAM_TLS error and never a plaintext retry.
 */

export interface MtlsOriginationOptions {
  identity: WorkloadIdentity;
  /** Trust domains accepted when the registry names no SPIFFE ID for a destination; default: own. */
  trustDomains?: readonly string[];
  metrics?: Registry;
  logger?: Logger;
  /** Certificates the manager revoked: an upstream presenting one is refused. */
  revocation?: RevocationList;
}

export type UpstreamTlsReason = 'identity_mismatch' | 'foreign_trust_domain' | 'bad_identity' | 'expired' | 'not_yet_valid' | 'untrusted' | 'protocol_version' | 'handshake_error' | 'revoked';

const CHAIN_CODES: Record<string, UpstreamTlsReason> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted',
  CERT_SIGNATURE_FAILURE: 'untrusted',
  CERT_UNTRUSTED: 'untrusted',
  CERT_REJECTED: 'untrusted',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'protocol_version',
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'protocol_version',
  ERR_SSL_WRONG_VERSION_NUMBER: 'protocol_version',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'untrusted',
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE: 'handshake_error',
};

/** The reason of an upstream TLS failure, or undefined when `err` is not one. */
export function upstreamTlsReason(err: unknown): UpstreamTlsReason | undefined {
  if (err instanceof EtzError && err.code === 'ETZ_ERR_UPSTREAM_TLS') return err.details?.reason as UpstreamTlsReason;
  const code = (err as { code?: string } | null)?.code;
  return code ? CHAIN_CODES[code] : undefined;
}

function tlsError(reason: UpstreamTlsReason, message: string, cause?: unknown): EtzError {
  return new EtzError('ETZ_ERR_UPSTREAM_TLS', message, { details: { reason }, ...(cause ? { cause } : {}) });
}

/** checkServerIdentity for a peer that must be `expected` (or, with no expectation, any ID in `domains`). */
export function spiffeServerCheck(expected: string | undefined, domains: ReadonlySet<string>, revocation?: RevocationList) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    // Runs inside the handshake, so a revoked upstream never receives a request byte.
    if (revocation?.has(cert.serialNumber)) return tlsError('revoked', `upstream certificate ${cert.serialNumber} is revoked`);
    let id;
    try {
      id = peerIdentityFromCert(cert);
    } catch (err) {
      return tlsError('bad_identity', `upstream certificate: ${(err as Error).message}`);
    }
    if (expected !== undefined) {
      if (id.spiffeId !== expected) return tlsError('identity_mismatch', `upstream presented '${id.spiffeId}', expected '${expected}'`);
    } else if (!domains.has(id.trustDomain)) {
      return tlsError('foreign_trust_domain', `upstream identity '${id.spiffeId}' is outside the trusted trust domains`);
    }
    return undefined;
  };
}

export interface ConnectBase {
  timeout: number;
  noDelay?: boolean;
  keepAlive?: boolean;
}

/**
 * An undici connector for one upstream whose sidecar must prove `expectedSpiffeId`. Failures
 * reach the caller as EtzError ETZ_ERR_UPSTREAM_TLS with details.reason, are counted in
 * etz_tls_handshake_failures_total{direction="outbound"} and logged once each.
 */
export function createMtlsConnector(opts: MtlsOriginationOptions, expectedSpiffeId: string | undefined, base: ConnectBase): buildConnector.connector {
  const { identity } = opts;
  const logger = opts.logger ?? nullLogger;
  const failures = opts.metrics ? identityMetrics(opts.metrics).handshakeFailures : undefined;
  const domains = new Set(opts.trustDomains ?? [identity.spiffeId.slice('spiffe://'.length).split('/')[0]!]);
  const revocation = opts.revocation;
  const check = spiffeServerCheck(expectedSpiffeId, domains, revocation);
  const log = refusalLogger(logger, 'upstream mTLS refused');
  let built: { key: string; generation: number; connect: buildConnector.connector } | null = null;
  return (options, callback) => {
    // A new revocation list drops cached sessions too: a resumed session skips the peer check.
    const generation = revocation?.generation ?? 0;
    if (built === null || built.key !== identity.key || built.generation !== generation) {
      built = {
        key: identity.key,
        generation,
        connect: buildConnector({
          timeout: base.timeout,
          noDelay: base.noDelay ?? true,
          keepAlive: base.keepAlive ?? true,
          secureContext: identity.clientContext,
          rejectUnauthorized: true,
          checkServerIdentity: check,
          ALPNProtocols: ['http/1.1'],
          maxCachedSessions: 16,
        }),
      };
    }
    built.connect({ ...options, protocol: 'https:' }, (err, socket) => {
      if (err) {
        const reason = upstreamTlsReason(err);
        if (reason !== undefined) {
          const wrapped = err instanceof EtzError ? err : tlsError(reason, `upstream TLS: ${err.message}`, err);
          failures?.inc({ direction: 'outbound', reason });
          log(reason, { code: 'ETZ_ERR_UPSTREAM_TLS', upstream: `${options.hostname}:${options.port}`, expected: expectedSpiffeId, detail: wrapped.message });
          callback(wrapped, null);
          return;
        }
        callback(err, null);
        return;
      }
      if (revocation !== undefined) {
        const serial = (socket as TLSSocket).getPeerCertificate?.().serialNumber;
        // Also checked here: checkServerIdentity does not run on a resumed session.
        if (revocation.has(serial)) {
          socket!.destroy();
          failures?.inc({ direction: 'outbound', reason: 'revoked' });
          const e = tlsError('revoked', `upstream certificate ${serial} is revoked`);
          log('revoked', { code: 'ETZ_ERR_UPSTREAM_TLS', upstream: `${options.hostname}:${options.port}`, expected: expectedSpiffeId, detail: e.message });
          callback(e, null);
          return;
        }
        revocation.track(socket!, serial);
      }
      callback(null, socket!);
    });
  };
}
