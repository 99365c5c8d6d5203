import { createHmac, createPublicKey, timingSafeEqual, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { ConfigError } from '../core/errors.js';

/**
 * JWT (RFC 7519) verification for end-user principals, with node:crypto only: RS256, ES256 and
 * HS256 against keys from config (PEM, JWK, or a shared secret). Keys are parsed once per config
 * version. The algorithm comes from the configured key, never trusted from the token header alone
 * (no `alg: none`, no RS/HS confusion). A verified token is cached until it expires (bounded LRU),
 * so an RSA verification is paid once per token, not once per request.
 */

export type JwtAlg = 'RS256' | 'ES256' | 'HS256';

export interface JwtKeyConfig {
  kid?: string;
  alg: JwtAlg;
  /** SPKI PEM public key (RS256/ES256). */
  pem?: string;
  /** Public JWK (RS256/ES256). */
  jwk?: Record<string, unknown>;
  /** Shared secret (HS256): utf-8 text, or base64 when prefixed with `base64:`. */
  secret?: string;
}

export interface JwtConfig {
  /** Header carrying the token; default authorization (with the Bearer scheme). */
  header?: string;
  keys: JwtKeyConfig[];
  issuer?: string | string[];
  audiences?: string[];
  /** Claim holding the principal; default sub. */
  claim?: string;
  /** Refuse requests without a token (default: they carry no principal). */
  required?: boolean;
  clockSkewSec?: number;
}

export const jwtSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['keys'],
  properties: {
    header: { type: 'string', minLength: 1 },
    keys: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['alg'],
        properties: {
          kid: { type: 'string' },
          alg: { enum: ['RS256', 'ES256', 'HS256'] },
          pem: { type: 'string' },
          jwk: { type: 'object' },
          secret: { type: 'string', minLength: 1 },
        },
      },
    },
    issuer: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    audiences: { type: 'array', items: { type: 'string' } },
    claim: { type: 'string', minLength: 1 },
    required: { type: 'boolean' },
    clockSkewSec: { type: 'integer', minimum: 0 },
  },
} as const;

interface VerifyKey {
  kid: string | undefined;
  alg: JwtAlg;
  key: KeyObject | Buffer;
}

export type JwtResult = { ok: true; principal: string; exp: number } | { ok: false; reason: string };

function b64urlJson(part: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export class JwtVerifier {
  private readonly keys: VerifyKey[];
  private readonly issuers: Set<string> | undefined;
  private readonly audiences: Set<string> | undefined;
  private readonly claim: string;
  private readonly skewMs: number;
  private readonly cache = new LRUCache<string, { principal: string; exp: number }>({ max: 10_000 });

  constructor(cfg: JwtConfig, file = 'principal', field = '/jwt') {
    this.keys = cfg.keys.map((k, i) => compileKey(k, file, `${field}/keys/${i}`));
    this.issuers = cfg.issuer === undefined ? undefined : new Set(Array.isArray(cfg.issuer) ? cfg.issuer : [cfg.issuer]);
    this.audiences = cfg.audiences?.length ? new Set(cfg.audiences) : undefined;
    this.claim = cfg.claim ?? 'sub';
    this.skewMs = (cfg.clockSkewSec ?? 60) * 1000;
  }

  verify(token: string, now: number = Date.now()): JwtResult {
    const hit = this.cache.get(token);
    if (hit) {
      if (hit.exp > now - this.skewMs) return { ok: true, principal: hit.principal, exp: hit.exp };
      this.cache.delete(token);
      return { ok: false, reason: 'token expired' };
    }
    const r = this.verifyUncached(token, now);
    if (r.ok) this.cache.set(token, { principal: r.principal, exp: r.exp });
    return r;
  }

  private verifyUncached(token: string, now: number): JwtResult {
    const d1 = token.indexOf('.');
    const d2 = d1 < 0 ? -1 : token.indexOf('.', d1 + 1);
    if (d1 <= 0 || d2 <= d1 + 1 || d2 === token.length - 1 || token.indexOf('.', d2 + 1) >= 0) return { ok: false, reason: 'malformed token' };
    const header = b64urlJson(token.slice(0, d1));
    const payload = b64urlJson(token.slice(d1 + 1, d2));
    if (!header || !payload) return { ok: false, reason: 'malformed token' };
    const alg = header.alg;
    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    const candidates = this.keys.filter((k) => k.alg === alg && (kid === undefined || k.kid === undefined || k.kid === kid));
    if (candidates.length === 0) return { ok: false, reason: `no key for alg ${String(alg)}${kid ? ` kid ${kid}` : ''}` };
    const signed = Buffer.from(token.slice(0, d2), 'latin1');
    const sig = Buffer.from(token.slice(d2 + 1), 'base64url');
    if (!candidates.some((k) => checkSignature(k, signed, sig))) return { ok: false, reason: 'bad signature' };
    const exp = payload.exp;
    if (exp !== undefined && (typeof exp !== 'number' || exp * 1000 <= now - this.skewMs)) return { ok: false, reason: 'token expired' };
    const nbf = payload.nbf;
    if (nbf !== undefined && (typeof nbf !== 'number' || nbf * 1000 > now + this.skewMs)) return { ok: false, reason: 'token not yet valid' };
    if (this.issuers && (typeof payload.iss !== 'string' || !this.issuers.has(payload.iss))) return { ok: false, reason: 'issuer not accepted' };
    if (this.audiences) {
      const aud = payload.aud;
      const list = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
      if (!list.some((a) => typeof a === 'string' && this.audiences!.has(a))) return { ok: false, reason: 'audience not accepted' };
    }
    const principal = payload[this.claim];
    if (typeof principal !== 'string' || principal === '') return { ok: false, reason: `claim ${this.claim} missing` };
    return { ok: true, principal, exp: typeof exp === 'number' ? exp * 1000 : Number.POSITIVE_INFINITY };
  }
}

function compileKey(k: JwtKeyConfig, file: string, field: string): VerifyKey {
  if (k.alg === 'HS256') {
    if (!k.secret) throw new ConfigError(file, `${field}/secret`, 'HS256 needs a secret');
    const key = k.secret.startsWith('base64:') ? Buffer.from(k.secret.slice(7), 'base64') : Buffer.from(k.secret, 'utf8');
    return { kid: k.kid, alg: k.alg, key };
  }
  if (!k.pem === !k.jwk) throw new ConfigError(file, field, `${k.alg} needs exactly one of pem or jwk`);
  let key: KeyObject;
  try {
    key = k.pem ? createPublicKey(k.pem) : createPublicKey({ key: k.jwk as JsonWebKey, format: 'jwk' });
  } catch (err) {
    throw new ConfigError(file, `${field}/${k.pem ? 'pem' : 'jwk'}`, `not a public key: ${(err as Error).message}`);
  }
  const want = k.alg === 'RS256' ? 'rsa' : 'ec';
  if (key.asymmetricKeyType !== want) throw new ConfigError(file, field, `${k.alg} needs an ${want.toUpperCase()} key, got ${key.asymmetricKeyType}`);
  if (k.alg === 'ES256' && key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new ConfigError(file, field, 'ES256 needs a P-256 key');
  return { kid: k.kid, alg: k.alg, key };
}

function checkSignature(k: VerifyKey, data: Buffer, sig: Buffer): boolean {
  try {
    switch (k.alg) {
      case 'HS256': {
        const mac = createHmac('sha256', k.key as Buffer).update(data).digest();
        return mac.length === sig.length && timingSafeEqual(mac, sig);
      }
      case 'RS256':
        return verify('sha256', data, k.key as KeyObject, sig);
      case 'ES256':
        return sig.length === 64 && verify('sha256', data, { key: k.key as KeyObject, dsaEncoding: 'ieee-p1363' }, sig);
    }
  } catch {
    return false;
  }
}
