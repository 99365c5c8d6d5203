import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../../src/core/metrics.js';
import { GcraStore } from '../../src/sidecar/filters/rate-limit-store.js';
import { compileRateLimits, rateLimitsSchema, type RateLimitsResource } from '../../src/sidecar/filters/rate-limit.js';
import { validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import type { LocalReply } from '../../src/sidecar/filter.js';
import { fakeCtx, fakeEnv, manualClock } from './routing-fixtures.js';

test('GCRA allows a burst, then one request per interval', () => {
  const s = new GcraStore({ requests: 10, periodMs: 1000, burst: 3 });
  const t = 5_000;
  assert.equal(s.check('k', t).allowed, true);
  assert.equal(s.check('k', t).allowed, true);
  const third = s.check('k', t);
  assert.equal(third.allowed, true);
  assert.equal(third.remaining, 0);
  const denied = s.check('k', t);
  assert.equal(denied.allowed, false);
  assert.ok(denied.retryAfterMs > 99 && denied.retryAfterMs <= 100, `retry after ${denied.retryAfterMs}`);
  // Another key has its own bucket.
  assert.equal(s.check('other', t).allowed, true);
  // One interval later exactly one more conforms.
  assert.equal(s.check('k', t + 100).allowed, true);
  assert.equal(s.check('k', t + 100).allowed, false);
  // After a long pause the bucket is full again, never fuller.
  const later = t + 60_000;
  assert.equal(s.check('k', later).remaining, 2);
});

test('a check without commit consumes nothing', () => {
  const s = new GcraStore({ requests: 1, periodMs: 1000 });
  assert.equal(s.check('k', 0, false).allowed, true);
  assert.equal(s.check('k', 0, false).allowed, true);
  s.commit('k', 0);
  assert.equal(s.check('k', 0).allowed, false);
});

test('rotating keys cannot grow the key store past its bound', () => {
  const s = new GcraStore({ requests: 5, periodMs: 60_000, maxKeys: 100_000 });
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 300_000; i++) s.check(`attacker-${i}`, 1000 + i);
  assert.equal(s.size, 100_000);
  // Recently seen keys keep their state; the oldest were evicted.
  assert.equal(s.check('attacker-299999', 1000 + 299_999, false).remaining, 3);
  assert.equal(s.check('attacker-0', 1000 + 299_999, false).remaining, 4);
  global.gc?.();
  const grown = process.memoryUsage().heapUsed - before;
  // 100,000 short keys and numbers: tens of MB at most, never the 300,000 rotated.
  assert.ok(grown < 120 * 1024 * 1024, `heap grew ${grown} bytes`);
});

function limits(cfg: unknown): RateLimitsResource {
  return validateConfig('resources', rateLimitsSchema, cfg) as RateLimitsResource;
}

test('the strictest limit decides and the 429 carries Retry-After and RateLimit headers', () => {
  const clock = manualClock();
  const reg = createRegistry();
  const f = compileRateLimits(
    limits([
      { name: 'per-user', key: 'principal', requests: 2, per: 'minute' },
      { name: 'per-listener', key: 'listener', requests: 100, per: 'second' },
    ]),
    fakeEnv('inbound', {}, reg),
    { now: clock.now },
  )!;
  assert.ok(f);
  assert.equal(f.onRequest(fakeCtx({ principal: 'jason' })), undefined);
  assert.equal(f.onRequest(fakeCtx({ principal: 'jason' })), undefined);
  const ctx = fakeCtx({ principal: 'jason' });
  const r = f.onRequest(ctx) as LocalReply;
  assert.equal(r.status, 429);
  assert.equal(r.code, 'ETZ_ERR_RATE_LIMITED');
  assert.equal(ctx.decision, 'ratelimited');
  assert.match(r.reason, /per-user/);
  assert.equal(r.headers!['retry-after'], 30);
  assert.equal(r.headers!['ratelimit-limit'], 2);
  assert.equal(r.headers!['ratelimit-remaining'], 0);
  assert.ok(Number(r.headers!['ratelimit-reset']) >= 30);
  // Other users are not affected; a request without a principal skips the per-user limit.
  assert.equal(f.onRequest(fakeCtx({ principal: 'alice' })), undefined);
  assert.equal(f.onRequest(fakeCtx({})), undefined);
  clock.advance(30_000);
  assert.equal(f.onRequest(fakeCtx({ principal: 'jason' })), undefined);
});

test('a denied request consumes no tokens of the other limits', () => {
  const clock = manualClock();
  const f = compileRateLimits(
    limits([
      { name: 'tight', key: 'ip', requests: 1, per: 'hour' },
      { name: 'loose', key: 'listener', requests: 3, per: 'hour' },
    ]),
    fakeEnv('inbound'),
    { now: clock.now },
  )!;
  assert.equal(f.onRequest(fakeCtx({ remoteAddress: '10.0.0.1' })), undefined);
  for (let i = 0; i < 10; i++) assert.equal((f.onRequest(fakeCtx({ remoteAddress: '10.0.0.1' })) as LocalReply).status, 429);
  // The listener bucket still has 2 of 3 left for other clients.
  assert.equal(f.onRequest(fakeCtx({ remoteAddress: '10.0.0.2' })), undefined);
  assert.equal(f.onRequest(fakeCtx({ remoteAddress: '10.0.0.3' })), undefined);
  assert.equal((f.onRequest(fakeCtx({ remoteAddress: '10.0.0.4' })) as LocalReply).status, 429);
});

test('shadow limits count would-be denials without denying; metrics per limit', async () => {
  const reg = createRegistry();
  const f = compileRateLimits(limits([{ name: 'trial', key: 'source', requests: 1, per: 'hour', shadow: true }]), fakeEnv('inbound', {}, reg), {
    now: () => 0,
  })!;
  for (let i = 0; i < 5; i++) assert.equal(f.onRequest(fakeCtx({ peer: 'spiffe://etz.local/ns/default/sa/productpage' })), undefined);
  const text = await reg.metrics();
  assert.match(text, /etz_ratelimit_requests_total\{limit="trial",result="allowed",shadow="true",direction="inbound"\} 1/);
  assert.match(text, /etz_ratelimit_requests_total\{limit="trial",result="limited",shadow="true",direction="inbound"\} 4/);
  assert.match(text, /etz_ratelimit_keys\{limit="trial",direction="inbound"\} 1/);
  // A second scrape adds only what is new.
  f.onRequest(fakeCtx({ peer: 'spiffe://etz.local/ns/default/sa/productpage' }));
  assert.match(await reg.metrics(), /etz_ratelimit_requests_total\{limit="trial",result="limited",shadow="true",direction="inbound"\} 5/);
});

test('limits scoped by host, match and header key; directions', () => {
  const f = compileRateLimits(
    limits([
      { name: 'posts', key: 'header:x-api-key', requests: 1, per: 'hour', hosts: ['reviews'], match: { methods: ['POST'], path: { prefix: '/reviews' } } },
    ]),
    fakeEnv('inbound'),
    { now: () => 0 },
  )!;
  const post = () => fakeCtx({ method: 'POST', url: '/reviews/1', headers: { 'X-Api-Key': 'k1' } });
  assert.equal(f.onRequest(post()), undefined);
  assert.equal((f.onRequest(post()) as LocalReply).status, 429);
  assert.equal(f.onRequest(fakeCtx({ method: 'GET', url: '/reviews/1', headers: { 'X-Api-Key': 'k1' } })), undefined);
  assert.equal(f.onRequest(fakeCtx({ method: 'POST', url: '/ratings/1', headers: { 'X-Api-Key': 'k1' } })), undefined);
  assert.equal(f.onRequest(fakeCtx({ method: 'POST', url: '/reviews/1', host: 'details', headers: { 'X-Api-Key': 'k1' } })), undefined);
  assert.equal(f.onRequest(fakeCtx({ method: 'POST', url: '/reviews/1', headers: { 'X-Api-Key': 'k2' } })), undefined);
  // Default directions are inbound and gateway: the outbound chain has no rate-limit filter at all.
  assert.equal(compileRateLimits(limits([{ name: 'x', key: 'listener', requests: 1 }]), fakeEnv('outbound')), null);
  assert.equal(compileRateLimits([], fakeEnv('inbound')), null);
});

test('bucket state survives a new config version while the limit is unchanged', () => {
  const reg = createRegistry();
  const cfg = limits([{ name: 'u', key: 'principal', requests: 1, per: 'hour' }]);
  const v1 = compileRateLimits(cfg, fakeEnv('inbound', {}, reg), { now: () => 0 })!;
  assert.equal(v1.onRequest(fakeCtx({ principal: 'p' })), undefined);
  const v2 = compileRateLimits(cfg, fakeEnv('inbound', {}, reg), { now: () => 0 })!;
  assert.equal((v2.onRequest(fakeCtx({ principal: 'p' })) as LocalReply).status, 429);
  // Changing the limit starts it afresh.
  const v3 = compileRateLimits(limits([{ name: 'u', key: 'principal', requests: 2, per: 'hour' }]), fakeEnv('inbound', {}, reg), { now: () => 0 })!;
  assert.equal(v3.onRequest(fakeCtx({ principal: 'p' })), undefined);
});

test('invalid rate-limit config names the field', () => {
  assert.throws(() => limits([{ name: 'x', key: 'cookie', requests: 1 }]), (e: unknown) => e instanceof ConfigError && e.field === '/0/key');
  assert.throws(() => limits([{ name: 'x', key: 'ip', requests: 0 }]), (e: unknown) => e instanceof ConfigError && e.field === '/0/requests');
  assert.throws(
    () => compileRateLimits(limits([{ name: 'x', key: 'ip', requests: 1 }, { name: 'x', key: 'ip', requests: 2 }]), fakeEnv('inbound')),
    (e: unknown) => e instanceof ConfigError && e.field === '/1/name',
  );
  assert.throws(
    () => compileRateLimits(limits([{ name: 'x', key: 'ip', requests: 1, match: { path: { regex: '(' } } }]), fakeEnv('inbound')),
    (e: unknown) => e instanceof ConfigError && /regular expression/.test(e.reason),
  );
});
