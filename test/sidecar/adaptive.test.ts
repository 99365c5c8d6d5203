import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config/load.js';
import { createRegistry } from '../../src/core/metrics.js';
import { PrincipalDetector } from '../../src/sidecar/routing/adaptive.js';
import { compileRouting, parsePrincipals, principalsSchema, routeDecision, routesSchema, type RoutesResource } from '../../src/sidecar/routing/filter.js';
import { fakeCtx, fakeEnv, manualClock } from './routing-fixtures.js';

test('more than 5 requests within 60 s flags a principal; 5 do not', () => {
  const d = new PrincipalDetector();
  const c = manualClock();
  for (let i = 0; i < 5; i++) {
    assert.equal(d.observe('jason', `r${i}`, c.now()), false);
    c.advance(10_000);
  }
  // 5 requests in 40 s so far; the 6th at 50 s is the one too many.
  assert.equal(d.observe('jason', 'r5', c.now()), true);
  assert.equal(d.isFlagged('jason', c.now()), true);
  assert.equal(d.isFlagged('alice', c.now()), false);
});

test('a steady user below the rate is never flagged', () => {
  const d = new PrincipalDetector();
  const c = manualClock();
  for (let i = 0; i < 100; i++) {
    assert.equal(d.observe('alice', `r${i}`, c.now()), false, `request ${i}`);
    c.advance(12_100); // 5 per minute, just below "more than 5"
  }
});

test('fan-out calls sharing a request id count once', () => {
  const d = new PrincipalDetector();
  const c = manualClock();
  for (let i = 0; i < 5; i++) {
    // productpage calls details, reviews and ratings for one user request.
    for (let k = 0; k < 3; k++) assert.equal(d.observe('jason', `req-${i}`, c.now()), false);
    c.advance(1000);
  }
  assert.equal(d.observe('jason', 'req-5', c.now()), true);
});

test('a flag lasts its TTL and then clears', () => {
  const d = new PrincipalDetector({ threshold: 2, windowMs: 1000, ttlMs: 5000 });
  const c = manualClock();
  let flaggedEvents = 0;
  d.onFlag = () => flaggedEvents++;
  d.observe('u', 'a', c.now());
  d.observe('u', 'b', c.now());
  assert.equal(d.observe('u', 'c', c.now()), true);
  assert.equal(d.observe('u', 'd', c.now()), true);
  assert.equal(flaggedEvents, 1);
  c.advance(4999);
  assert.equal(d.isFlagged('u', c.now()), true);
  c.advance(2);
  assert.equal(d.isFlagged('u', c.now()), false);
  assert.deepEqual(d.flagged(c.now()), []);
});

test('zone-manager flags are merged and replaced per version; expired ones do not count', () => {
  const d = new PrincipalDetector();
  const now = Date.now();
  const flags = parsePrincipals(
    validateConfig('resources', principalsSchema, {
      flagged: ['mallory', { principal: 'eve', until: now + 60_000 }, { principal: 'old', expiresAt: new Date(now - 1000).toISOString() }],
    }),
  );
  d.setRemote(flags);
  assert.equal(d.isFlagged('mallory', now), true);
  assert.equal(d.isFlagged('eve', now), true);
  assert.equal(d.isFlagged('old', now), false);
  assert.deepEqual(d.flagged(now).map((f) => `${f.principal}:${f.source}`).sort(), ['eve:manager', 'mallory:manager']);
  d.setRemote([]);
  assert.equal(d.isFlagged('mallory', now), false);
});

test('tracked principals are bounded: a flood of names evicts the oldest', () => {
  const d = new PrincipalDetector({ maxPrincipals: 1000 });
  for (let i = 0; i < 50_000; i++) d.observe(`bot-${i}`, undefined, i);
  assert.equal(d.tracked, 1000);
});

function routes(cfg: unknown): RoutesResource {
  return validateConfig('resources', routesSchema, cfg) as RoutesResource;
}

const bookinfoRoutes = {
  rules: [
    {
      name: 'reviews',
      hosts: ['reviews'],
      route: [{ subset: { version: 'v2' }, weight: 50 }, { subset: { version: 'v3' }, weight: 50 }],
      suspicious: { subset: { version: 'v1' } },
    },
  ],
};

test('routing filter: a flagged principal is rerouted at once and reported as rerouted', () => {
  const c = manualClock();
  const f = compileRouting(routes(bookinfoRoutes), fakeEnv('outbound'), { now: c.now })!;
  const versions: string[] = [];
  for (let i = 0; i < 8; i++) {
    const ctx = fakeCtx({ host: 'reviews', principal: 'scraper', id: `id-${i}` });
    f.onRequest(ctx);
    versions.push(ctx.subset!.version!);
    if (i >= 5) {
      assert.equal(ctx.decision, 'rerouted');
      assert.equal(routeDecision(ctx)!.rerouted, true);
    } else assert.equal(ctx.decision, 'allow');
    c.advance(1000);
  }
  assert.ok(versions.slice(0, 5).every((v) => v === 'v2' || v === 'v3'));
  assert.deepEqual(versions.slice(5), ['v1', 'v1', 'v1']);
});

test('the detector keeps its verdicts across config versions and takes manager flags', async () => {
  const reg = createRegistry();
  const c = manualClock();
  const v1 = compileRouting(routes(bookinfoRoutes), fakeEnv('outbound', {}, reg), { now: c.now })!;
  for (let i = 0; i < 6; i++) v1.onRequest(fakeCtx({ host: 'reviews', principal: 'scraper', id: `a${i}` }));
  const v2 = compileRouting(routes(bookinfoRoutes), fakeEnv('outbound', { principals: ['mallory'] }, reg), { now: c.now })!;
  const s = fakeCtx({ host: 'reviews', principal: 'scraper', id: 'b' });
  v2.onRequest(s);
  assert.deepEqual(s.subset, { version: 'v1' });
  const m = fakeCtx({ host: 'reviews', principal: 'mallory', id: 'c' });
  v2.onRequest(m);
  assert.deepEqual(m.subset, { version: 'v1' });
  assert.equal(m.decision, 'rerouted');
  const text = await reg.metrics();
  assert.match(text, /etz_principals_flagged_total 1/);
  assert.match(text, /etz_route_rerouted_total\{direction="outbound"\} 3/);
});

test('manager flags as the zone manager compiles them: route with a named version, ratelimit, block', async () => {
  const { compileRateLimits } = await import('../../src/sidecar/filters/rate-limit.js');
  const principals = validateConfig('resources', principalsSchema, {
    flagged: [
      { principal: 'scraper', action: 'route', reason: 'rate', expiresAt: Date.now() + 60_000, to: { service: 'reviews', version: 'v1' } },
      { principal: 'stuffer', action: 'ratelimit', reason: '401 burst', expiresAt: Date.now() + 60_000 },
      { principal: 'thief', action: 'block', reason: 'exfiltration', expiresAt: Date.now() + 60_000 },
    ],
  });
  // No route rules at all: the manager's named version still applies to that service only.
  const f = compileRouting(undefined, fakeEnv('outbound', { principals }))!;
  assert.ok(f, 'a directed flag puts the routing filter in the chain');
  const s = fakeCtx({ host: 'reviews', destination: 'reviews', principal: 'scraper' });
  f.onRequest(s);
  assert.deepEqual(s.subset, { version: 'v1' });
  assert.equal(s.decision, 'rerouted');
  const other = fakeCtx({ host: 'ratings', destination: 'ratings', principal: 'scraper' });
  f.onRequest(other);
  assert.equal(other.subset, undefined);
  for (const p of ['stuffer', 'thief', 'alice']) {
    const c = fakeCtx({ host: 'reviews', destination: 'reviews', principal: p });
    f.onRequest(c);
    assert.equal(c.subset, undefined, `${p} is not rerouted`);
  }
  // "ratelimit": a strict limit (10 a minute) for that principal only, on any listener.
  const rl = compileRateLimits(undefined, fakeEnv('inbound', { principals }), { now: () => 0 })!;
  assert.ok(rl);
  let limited = 0;
  for (let i = 0; i < 15; i++) if (rl.onRequest(fakeCtx({ principal: 'stuffer' })) !== undefined) limited++;
  assert.equal(limited, 5);
  for (let i = 0; i < 15; i++) assert.equal(rl.onRequest(fakeCtx({ principal: 'alice' })), undefined);
  assert.equal(compileRateLimits(undefined, fakeEnv('inbound', {})), null);
});
