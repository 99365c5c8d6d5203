/**
 * Lower-cased header names from the upstream's raw header bytes without allocating a string for
 * the common ones: undici hands response headers over as Buffers, and converting each name
 * (then lower-casing it) was the largest cost of relaying a response head.
 */

const COMMON = [
  'accept-ranges', 'access-control-allow-origin', 'age', 'alt-svc', 'cache-control', 'connection',
  'content-disposition', 'content-encoding', 'content-language', 'content-length', 'content-type',
  'date', 'etag', 'expires', 'keep-alive', 'last-modified', 'link', 'location', 'pragma',
  'proxy-authenticate', 'retry-after', 'server', 'set-cookie', 'strict-transport-security', 'te',
  'trailer', 'transfer-encoding', 'upgrade', 'vary', 'www-authenticate', 'x-content-type-options',
  'x-frame-options', 'x-request-id', 'x-etz-reason',
];

// Candidates by length: a lookup is an array index and a byte comparison or two.
const BY_LENGTH: string[][] = [];
for (const name of COMMON) (BY_LENGTH[name.length] ??= []).push(name);

function sameLower(buf: Buffer, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    let c = buf[i]!;
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== name.charCodeAt(i)) return false;
  }
  return true;
}

export function lowerHeaderName(raw: Buffer | string): string {
  if (typeof raw === 'string') return raw.toLowerCase();
  const candidates = BY_LENGTH[raw.length];
  if (candidates !== undefined) {
    for (let i = 0; i < candidates.length; i++) if (sameLower(raw, candidates[i]!)) return candidates[i]!;
  }
  return raw.toString('latin1').toLowerCase();
}
