import { createHash } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import type { SecureVersion } from 'node:tls';

/**
 * TLS settings for the mesh hop. Defaults follow the zero-trust guide: TLS 1.3 only, one AEAD
 * suite (TLS_AES_256_GCM_SHA384), peers always verified. Everything is configurable, but the
 * configurable knobs never include turning verification off.
 */

export type InboundMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

export interface TlsSettings {
  minVersion: SecureVersion;
  maxVersion?: SecureVersion;
  /** TLS 1.3 suites, colon-separated (OpenSSL names). */
  cipherSuites: string;
  /** TLS 1.2 cipher list, used only when minVersion allows TLS 1.2. */
  ciphers?: string;
  /** Lifetime of resumable sessions (tickets), seconds. */
  sessionTimeoutS: number;
  /** A TLS handshake must finish within this, or the connection is dropped. */
  handshakeTimeoutMs: number;
}

export const DEFAULT_TLS: Readonly<TlsSettings> = Object.freeze({
  minVersion: 'TLSv1.3',
  cipherSuites: 'TLS_AES_256_GCM_SHA384',
  sessionTimeoutS: 300,
  handshakeTimeoutMs: 10_000,
});

/** What a TLS endpoint presents and trusts. */
export interface TlsMaterial {
  spiffeId: string;
  /** Leaf followed by intermediates. */
  certChainPem: string;
  keyPem: string;
  /** Roots trusted for peers; may hold old and new roots during a rollover. */
  trustBundlePem: string;
  /** notAfter of the leaf, ms since the epoch. */
  notAfter: number;
  notBefore: number;
}

function base(material: TlsMaterial, s: TlsSettings): SecureContextOptions {
  return {
    cert: material.certChainPem,
    key: material.keyPem,
    ca: material.trustBundlePem,
    minVersion: s.minVersion,
    ...(s.maxVersion ? { maxVersion: s.maxVersion } : {}),
    // Node splits one list: TLS_* names are TLS 1.3 suites, the rest TLS 1.2 ciphers.
    ciphers: [s.cipherSuites, s.ciphers].filter(Boolean).join(':'),
    sessionTimeout: s.sessionTimeoutS,
  };
}

/**
 * tls.Server options for an inbound listener. A client certificate is always requested; the
 * verdict is taken after the handshake by the inbound guard (so that each refusal gets a precise
 * reason: expired, unknown CA, bad SPIFFE ID), which is why OpenSSL's own rejection is off here.
 * Callers must never use these options without the guard.
 */
export function createServerTlsOptions(material: TlsMaterial, mode: InboundMode, settings: TlsSettings = DEFAULT_TLS): TlsOptions {
  if (mode === 'DISABLE') throw new Error('DISABLE mode has no TLS options');
  return {
    ...base(material, settings),
    requestCert: true,
    rejectUnauthorized: false,
    handshakeTimeout: settings.handshakeTimeoutMs,
    ALPNProtocols: ['http/1.1'],
    // Resumed sessions must be bound to this listener's identity material.
    sessionIdContext: createHash('sha256').update(material.trustBundlePem).digest('hex').slice(0, 32),
  };
}

/** The client-side SecureContext for mesh origination (built once per material, shared by all connections). */
export function createClientSecureContext(material: TlsMaterial, settings: TlsSettings = DEFAULT_TLS): SecureContext {
  return createSecureContext(base(material, settings));
}

/** A short fingerprint of material, for keys that must change whenever the material does. */
export function materialKey(material: TlsMaterial): string {
  return createHash('sha256').update(material.certChainPem).update('\0').update(material.trustBundlePem).digest('hex').slice(0, 16);
}
