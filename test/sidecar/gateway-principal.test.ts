import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import { JwtVerifier } from '../../src/sidecar/principal-jwt.js';
import { compilePrincipal, principalSchema, type PrincipalResource } from '../../src/sidecar/principal.js';
import type { LocalReply } from '../../src/sidecar/filter.js';
import { b64u, fakeCtx, fakeEnv, makeJwt } from './routing-fixtures.js';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const otherEc = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const now = Date.now();
const exp = Math.floor(now / 1000) + 3600;

const verifier = new JwtVerifier({
  keys: [
    { alg: 'RS256', kid: 'r1', pem: rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string },
    { alg: 'ES256', jwk: ec.publicKey.export({ format: 'jwk' }) as Record<string, unknown> },
    { alg: 'HS256', secret: 'correct horse battery staple' },
  ],
  issuer: 'https://idp.example',
  audiences: ['bookinfo'],
});
const good = { sub: 'jason', iss: 'https://idp.example', aud: 'bookinfo', exp };

test('RS256, ES256 and HS256 tokens verify against configured keys', () => {
  assert.deepEqual(verifier.verify(makeJwt('RS256', good, rsa.privateKey, 'r1'), now), { ok: true, principal: 'jason', exp: exp * 1000 });
  assert.equal(verifier.verify(makeJwt('ES256', { ...good, sub: 'alice', aud: ['x', 'bookinfo'] }, ec.privateKey), now).ok, true);
  assert.equal(verifier.verify(makeJwt('HS256', good, 'correct horse battery staple'), now).ok, true);
});

test('forged, expired, foreign and malformed tokens are refused with a reason', () => {
  const r = (t: string) => {
    const v = verifier.verify(t, now);
    return v.ok ? 'ok' : v.reason;
  };
  assert.equal(r(makeJwt('ES256', good, otherEc.privateKey)), 'bad signature');
  assert.equal(r(makeJwt('HS256', good, 'wrong secret')), 'bad signature');
  assert.equal(r(makeJwt('RS256', good, rsa.privateKey, 'unknown-kid')), 'no key for alg RS256 kid unknown-kid');
  assert.equal(r(makeJwt('RS256', { ...good, exp: Math.floor(now / 1000) - 3600 }, rsa.privateKey)), 'token expired');
  assert.equal(r(makeJwt('RS256', { ...good, nbf: Math.floor(now / 1000) + 3600 }, rsa.privateKey)), 'token not yet valid');
  assert.equal(r(makeJwt('RS256', { ...good, iss: 'https://evil.example' }, rsa.privateKey)), 'issuer not accepted');
  assert.equal(r(makeJwt('RS256', { ...good, aud: 'other' }, rsa.privateKey)), 'audience not accepted');
  assert.equal(r(makeJwt('RS256', { ...good, sub: undefined }, rsa.privateKey)), 'claim sub missing');
  // alg "none" and a tampered payload.
  assert.equal(r(`${b64u({ alg: 'none' })}.${b64u(good)}.`), 'malformed token');
  const t = makeJwt('RS256', good, rsa.privateKey);
  const parts = t.split('.');
  assert.equal(r(`${parts[0]}.${b64u({ ...good, sub: 'admin' })}.${parts[2]}`), 'bad signature');
  assert.equal(r('not-a-token'), 'malformed token');
  assert.equal(r('a.b.c.d'), 'malformed token');
});

test('key config errors name the field', () => {
  assert.throws(() => new JwtVerifier({ keys: [{ alg: 'RS256', pem: 'garbage' }] }), (e: unknown) => e instanceof ConfigError && e.field === '/jwt/keys/0/pem');
  assert.throws(
    () => new JwtVerifier({ keys: [{ alg: 'RS256', pem: ec.publicKey.export({ type: 'spki', format: 'pem' }) as string }] }),
    (e: unknown) => e instanceof ConfigError && /RSA key/.test(e.reason),
  );
  assert.throws(() => new JwtVerifier({ keys: [{ alg: 'HS256' }] }), (e: unknown) => e instanceof ConfigError && e.field === '/jwt/keys/0/secret');
});

function principalRes(cfg: unknown): PrincipalResource {
  return validateConfig('resources', principalSchema, cfg) as PrincipalResource;
}

test('principal filter: header by default, JWT at the gateway where the header is not trusted', () => {
  const plain = compilePrincipal(undefined, fakeEnv('inbound'))!;
  const c1 = fakeCtx({ headers: { 'X-Etz-Principal': 'jason' } });
  assert.equal(plain.onRequest(c1), undefined);
  assert.equal(c1.principal, 'jason');
  const bad = fakeCtx({ headers: { 'x-etz-principal': 'has space' } });
  plain.onRequest(bad);
  assert.equal(bad.principal, undefined);

  const cfg = principalRes({ jwt: { keys: [{ alg: 'HS256', secret: 's3cret' }] } });
  const gw = compilePrincipal(cfg, fakeEnv('gateway'))!;
  const token = makeJwt('HS256', { sub: 'alice', exp }, 's3cret');
  const c2 = fakeCtx({ headers: { authorization: `Bearer ${token}`, 'x-etz-principal': 'spoofed' } });
  assert.equal(gw.onRequest(c2), undefined);
  assert.equal(c2.principal, 'alice');
  assert.deepEqual(c2.upstreamHeaders, ['x-etz-principal', 'alice']);
  const c3 = fakeCtx({ headers: { 'x-etz-principal': 'spoofed' } });
  assert.equal(gw.onRequest(c3), undefined);
  assert.equal(c3.principal, undefined, 'a client cannot name itself at the gateway');
  const c4 = fakeCtx({ headers: { authorization: `Bearer ${makeJwt('HS256', { sub: 'alice' }, 'nope')}` } });
  const reply = gw.onRequest(c4) as LocalReply;
  assert.equal(reply.status, 401);
  assert.equal(reply.code, 'ETZ_ERR_JWT_INVALID');
  assert.equal(reply.reason, 'bad signature');

  const required = compilePrincipal(principalRes({ jwt: { keys: [{ alg: 'HS256', secret: 's3cret' }], required: true } }), fakeEnv('gateway'))!;
  assert.equal((required.onRequest(fakeCtx({})) as LocalReply).status, 401);
  // Inside the mesh the forwarded header is trusted by default.
  const inner = compilePrincipal(cfg, fakeEnv('inbound'))!;
  const c5 = fakeCtx({ headers: { 'x-etz-principal': 'alice' } });
  inner.onRequest(c5);
  assert.equal(c5.principal, 'alice');
});
