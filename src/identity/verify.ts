import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { EtzError } from '../core/errors.js';
import type { PeerIdentity } from '../sidecar/filter.js';
import { splitPemCerts } from './keys.js';
import { parseSpiffeId, uriSans } from './spiffe.js';

/**
 * The workload identity a certificate proves: its one URI SAN, parsed as a SPIFFE ID. Accepts
 * Node's X509Certificate, a TLSSocket's getPeerCertificate() object, or a PEM string. Throws
 * ETZ_ERR_SPIFFE_ID_INVALID when there is no URI SAN, several, or one that is not a workload ID.
 * Chain and validity are the TLS stack's job; this only reads the identity.
 */
export function peerIdentityFromCert(cert: X509Certificate | PeerCertificate | string): PeerIdentity {
  const c = typeof cert === 'string' ? new X509Certificate(cert) : cert;
  const san = (c as X509Certificate).subjectAltName ?? (c as PeerCertificate).subjectaltname;
  const uris = uriSans(san);
  if (uris.length === 0) throw new EtzError('ETZ_ERR_SPIFFE_ID_INVALID', 'the certificate carries no URI SAN (no SPIFFE ID)');
  if (uris.length > 1) throw new EtzError('ETZ_ERR_SPIFFE_ID_INVALID', `the certificate carries ${uris.length} URI SANs; a workload certificate has exactly one`);
  return parseSpiffeId(uris[0]!);
}

export type ChainFailure = 'expired' | 'not_yet_valid' | 'untrusted' | 'not_a_leaf' | 'bad_identity';

/**
 * Verifies a PEM chain (leaf first) against a PEM trust bundle without a TLS connection, e.g.
 * for the manager checking a renewal or for `etz ca` tools. Returns the identity or throws
 * ETZ_ERR_CERT_INVALID with `details.reason`.
 */
export function verifyWorkloadCert(certChainPem: string, trustBundlePem: string, at: number = Date.now()): PeerIdentity {
  const chain = splitPemCerts(certChainPem).map((p) => new X509Certificate(p));
  const roots = splitPemCerts(trustBundlePem).map((p) => new X509Certificate(p));
  const fail = (reason: ChainFailure, msg: string): never => {
    throw new EtzError('ETZ_ERR_CERT_INVALID', msg, { details: { reason } });
  };
  if (chain.length === 0) fail('untrusted', 'no certificate in the chain');
  const leaf = chain[0]!;
  if (leaf.ca) fail('not_a_leaf', 'the first certificate is a CA certificate');
  for (const c of chain) {
    if (Date.parse(c.validTo) < at) fail('expired', `certificate ${c.subject.replace(/\n/g, ', ')} expired at ${c.validTo}`);
    if (Date.parse(c.validFrom) > at) fail('not_yet_valid', `certificate ${c.subject.replace(/\n/g, ', ')} is valid only from ${c.validFrom}`);
  }
  let cur = leaf;
  const pool = [...chain.slice(1)];
  for (let depth = 0; depth < 8; depth++) {
    const root = roots.find((r) => cur.checkIssued(r) && cur.verify(r.publicKey));
    if (root) {
      if (Date.parse(root.validTo) < at) fail('expired', `root ${root.subject.replace(/\n/g, ', ')} expired`);
      try {
        return peerIdentityFromCert(leaf);
      } catch (err) {
        return fail('bad_identity', (err as Error).message);
      }
    }
    const next = pool.find((p) => p.ca && cur.checkIssued(p) && cur.verify(p.publicKey));
    if (!next) break;
    cur = next;
  }
  return fail('untrusted', 'the certificate does not chain to the trust bundle');
}
