import type { PeerCertificate } from 'node:tls';

/**
 * The manager's certificate carries a SPIFFE ID, not a host name: clients (sidecars, CLI) check
 * that the server proves the manager identity of the trust domain they were given, the way mesh
 * workloads check each other, so any address (IP, DNS, tunnel) works without re-issuing.
 */
export const MANAGER_ID_PATH = '/ns/etz-system/sa/etz-manager';

export function checkManagerIdentity(expectedSpiffeId?: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const uris = [...(cert.subjectaltname ?? '').matchAll(/URI:(spiffe:\/\/[^,\s]+)/g)].map((m) => m[1]!);
    const ok = expectedSpiffeId ? uris.includes(expectedSpiffeId) : uris.some((u) => u.endsWith(MANAGER_ID_PATH));
    if (ok) return undefined;
    return new Error(`the server is not the etz manager (certificate identities: ${uris.join(', ') || 'none'}; expected ${expectedSpiffeId ?? `spiffe://<trust domain>${MANAGER_ID_PATH}`})`);
  };
}
