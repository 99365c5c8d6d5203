import { EtzError } from '../core/errors.js';
import type { PeerIdentity } from '../sidecar/filter.js';

/**
 * SPIFFE IDs as etz uses them: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 * The general SPIFFE rules (lower-case trust domain, no port/userinfo/query/fragment, no empty or
 * dot segments, at most 2048 bytes) are checked first, then etz's workload shape, because every
 * later filter (authorization, zones, telemetry) keys on namespace and service account.
 */

const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
const MAX_ID_BYTES = 2048;

export type SpiffeIdentity = PeerIdentity;

function invalid(id: string, reason: string): EtzError {
  return new EtzError('ETZ_ERR_SPIFFE_ID_INVALID', `invalid SPIFFE ID '${truncate(id)}': ${reason}`);
}

function truncate(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** Validates a trust domain name; throws ETZ_ERR_SPIFFE_ID_INVALID. */
export function assertTrustDomain(td: string): string {
  if (typeof td !== 'string' || td.length === 0 || td.length > 255 || !TRUST_DOMAIN_RE.test(td)) {
    throw new EtzError('ETZ_ERR_SPIFFE_ID_INVALID', `invalid trust domain '${truncate(String(td))}': use lower-case letters, digits, '.', '-', '_'`);
  }
  return td;
}

/** Parses and validates a workload SPIFFE ID; throws ETZ_ERR_SPIFFE_ID_INVALID with the reason. */
export function parseSpiffeId(uri: string): SpiffeIdentity {
  if (typeof uri !== 'string') throw invalid(String(uri), 'not a string');
  if (Buffer.byteLength(uri) > MAX_ID_BYTES) throw invalid(uri, `longer than ${MAX_ID_BYTES} bytes`);
  if (!uri.startsWith('spiffe://')) throw invalid(uri, "scheme must be 'spiffe://' (lower case)");
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash === -1 ? rest : rest.slice(0, slash);
  if (td.length === 0) throw invalid(uri, 'empty trust domain');
  if (!TRUST_DOMAIN_RE.test(td)) throw invalid(uri, "trust domain may hold only lower-case letters, digits, '.', '-', '_' (no port, user info or upper case)");
  if (slash === -1) throw invalid(uri, 'a workload ID needs a path /ns/<namespace>/sa/<service-account>');
  const segs = rest.slice(slash + 1).split('/');
  for (const s of segs) {
    if (s.length === 0) throw invalid(uri, 'empty path segment');
    if (s === '.' || s === '..') throw invalid(uri, "'.' and '..' segments are not allowed");
    if (!SEGMENT_RE.test(s)) throw invalid(uri, "path segments may hold only letters, digits, '.', '-', '_' (no query, fragment or percent-encoding)");
  }
  if (segs.length !== 4 || segs[0] !== 'ns' || segs[2] !== 'sa') {
    throw invalid(uri, 'path must be /ns/<namespace>/sa/<service-account>');
  }
  return { spiffeId: uri, trustDomain: td, namespace: segs[1]!, serviceAccount: segs[3]! };
}

/** Builds a workload SPIFFE ID from its parts (validated). */
export function formatSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return parseSpiffeId(`spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`).spiffeId;
}

export function isSpiffeId(uri: string): boolean {
  try {
    parseSpiffeId(uri);
    return true;
  } catch {
    return false;
  }
}

/**
 * The URI entries of a subjectAltName string as Node renders it (`URI:a, DNS:b`). Node quotes
 * values holding separators, so a quoted entry is kept whole (and later fails SPIFFE parsing).
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const out: string[] = [];
  let i = 0;
  const s = subjectAltName;
  while (i < s.length) {
    let j = i;
    let inQuote = false;
    while (j < s.length) {
      const c = s[j];
      if (c === '"') inQuote = !inQuote;
      else if (c === '\\' && inQuote) j++;
      else if (c === ',' && !inQuote) break;
      j++;
    }
    const entry = s.slice(i, j).trim();
    if (entry.startsWith('URI:')) out.push(entry.slice(4));
    i = j + 1;
  }
  return out;
}
