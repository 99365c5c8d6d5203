import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import { HashRing, hash32 } from '../../src/sidecar/routing/hash-ring.js';
import { QueryCache, compileMatch } from '../../src/sidecar/routing/match.js';
import { RouteTable, Split, cookieValue } from '../../src/sidecar/routing/table.js';
import { compileRouting, routeDecision, routesSchema, type RoutesResource } from '../../src/sidecar/routing/filter.js';
import { fakeCtx, fakeEnv } from './routing-fixtures.js';

function m(cfg: Parameters<typeof compileMatch>[0], r: Parameters<typeof fakeCtx>[0]): boolean {
  const ctx = fakeCtx(r);
  return compileMatch(cfg, 'routes', '/m')(ctx, new QueryCache(ctx.query));
}

test('path exact, prefix (segment-aware) and regex (whole path)', () => {
  assert.equal(m({ path: { exact: '/reviews' } }, { url: '/reviews' }), true);
  assert.equal(m({ path: { exact: '/reviews' } }, { url: '/reviews/1' }), false);
  assert.equal(m({ path: { prefix: '/reviews' } }, { url: '/reviews/1?x=1' }), true);
  assert.equal(m({ path: { prefix: '/reviews' } }, { url: '/reviews' }), true);
  assert.equal(m({ path: { prefix: '/reviews' } }, { url: '/reviewsX' }), false);
  assert.equal(m({ path: '/' }, { url: '/anything' }), true);
  assert.equal(m({ path: { regex: '/reviews/[0-9]+' } }, { url: '/reviews/42' }), true);
  assert.equal(m({ path: { regex: '/reviews/[0-9]+' } }, { url: '/reviews/42/x' }), false);
});

test('method, header and query matches all have to hold', () => {
  const cfg = {
    methods: ['get', 'HEAD'],
    headers: { 'End-User': 'jason', 'x-canary': { present: true }, 'user-agent': { regex: '.*Mobile.*' } },
    query: { debug: { prefix: 't' } },
  };
  const ok = { method: 'GET', url: '/p?debug=true', headers: { 'end-user': 'jason', 'X-Canary': '1', 'User-Agent': 'x Mobile y' } };
  assert.equal(m(cfg, ok), true);
  assert.equal(m(cfg, { ...ok, method: 'POST' }), false);
  assert.equal(m(cfg, { ...ok, headers: { ...ok.headers, 'end-user': 'alice' } }), false);
  assert.equal(m(cfg, { ...ok, headers: { 'end-user': 'jason', 'User-Agent': 'Mobile' } }), false);
  assert.equal(m(cfg, { ...ok, url: '/p?debug=false' }), false);
  assert.equal(m(cfg, { ...ok, url: '/p' }), false);
  assert.equal(m({ headers: { 'x-canary': { present: false } } }, { headers: {} }), true);
});

test('route table: host index, wildcard rules, first match in written order', () => {
  const t = new RouteTable([
    { name: 'jason', hosts: ['reviews'], match: { headers: { 'end-user': 'jason' } }, route: [{ subset: { version: 'v2' } }] },
    { name: 'any-debug', match: { query: { debug: '1' } }, route: [{ subset: { version: 'debug' } }] },
    { name: 'reviews-default', hosts: ['reviews'], route: [{ subset: { version: 'v1' } }] },
    { name: 'ratings', hosts: ['ratings.default.svc.cluster.local'], route: [{ subset: { version: 'v1' } }] },
  ]);
  const name = (r: Parameters<typeof fakeCtx>[0]) => {
    const c = fakeCtx(r);
    return t.match(c, new QueryCache(c.query))?.name;
  };
  assert.equal(name({ host: 'reviews', headers: { 'end-user': 'jason' } }), 'jason');
  assert.equal(name({ host: 'reviews', url: '/?debug=1' }), 'any-debug');
  assert.equal(name({ host: 'reviews' }), 'reviews-default');
  // Host header in another spelling: the destination service finds the rules.
  assert.equal(name({ host: 'reviews.default.svc', destination: 'reviews' }), 'reviews-default');
  assert.equal(name({ host: 'ratings.default.svc.cluster.local' }), 'ratings');
  assert.equal(name({ host: 'details' }), undefined);
  assert.equal(name({ host: 'details', url: '/?debug=1' }), 'any-debug');
  assert.throws(() => new RouteTable([{ name: 'a' }, { name: 'a' }]), (e: unknown) => e instanceof ConfigError && e.field === '/rules/1/name');
});

test('weighted split follows the weights; with a key the choice is sticky', () => {
  const s = new Split([{ subset: { version: 'v1' }, weight: 90 }, { subset: { version: 'v2' }, weight: 10 }], 'routes', '/r');
  let v2 = 0;
  for (let i = 0; i < 20_000; i++) if (s.pick(undefined, Math.random).subset!.version === 'v2') v2++;
  assert.ok(v2 > 1600 && v2 < 2400, `v2 got ${v2} of 20000`);
  let keyed = 0;
  for (let i = 0; i < 5_000; i++) {
    const key = `user-${i}`;
    const first = s.pick(key, Math.random).subset!.version;
    for (let k = 0; k < 3; k++) assert.equal(s.pick(key, Math.random).subset!.version, first);
    if (first === 'v2') keyed++;
  }
  assert.ok(keyed > 350 && keyed < 650, `sticky v2 share ${keyed} of 5000`);
  assert.throws(() => new Split([{ weight: 1 }, {}], 'routes', '/r'), ConfigError);
  assert.throws(() => new Split([{ weight: 0 }, { weight: 0 }], 'routes', '/r'), ConfigError);
  const even = new Split([{ subset: { version: 'a' } }, { subset: { version: 'b' } }], 'routes', '/r');
  let a = 0;
  for (let i = 0; i < 4000; i++) if (even.pick(undefined, Math.random).subset!.version === 'a') a++;
  assert.ok(a > 1700 && a < 2300, `even split gave a ${a} of 4000`);
});

test('hash ring: keys spread evenly and removing a member moves only its keys', () => {
  const members = ['a', 'b', 'c', 'd'].map((id) => ({ id: `10.0.0.${id}:9080`, value: id }));
  const ring = new HashRing(members);
  const counts: Record<string, number> = {};
  const before = new Map<string, string>();
  for (let i = 0; i < 20_000; i++) {
    const v = ring.get(`user-${i}`)!;
    before.set(`user-${i}`, v);
    counts[v] = (counts[v] ?? 0) + 1;
  }
  for (const id of ['a', 'b', 'c', 'd']) assert.ok(counts[id]! > 3500 && counts[id]! < 6500, `${id}: ${counts[id]}`);
  const smaller = new HashRing(members.filter((x) => x.value !== 'c'));
  for (const [k, v] of before) if (v !== 'c') assert.equal(smaller.get(k), v, `key ${k} moved`);
  assert.notEqual(hash32('a'), hash32('b'));
  assert.equal(new HashRing([]).get('x'), undefined);
});

test('cookie values are read without confusing similar names', () => {
  assert.equal(cookieValue('a=1; session=xyz; b=2', 'session'), 'xyz');
  assert.equal(cookieValue('mysession=no; session=yes', 'session'), 'yes');
  assert.equal(cookieValue('a=1', 'session'), undefined);
  assert.equal(cookieValue(undefined, 'session'), undefined);
});

function routes(cfg: unknown): RoutesResource {
  return validateConfig('resources', routesSchema, cfg) as RoutesResource;
}

test('routing filter sets the subset, the service override and the route decision for the router', () => {
  const f = compileRouting(
    routes({
      rules: [
        {
          name: 'reviews',
          hosts: ['reviews'],
          match: [{ path: { prefix: '/reviews' } }],
          route: [{ subset: { version: 'v2' }, weight: 50 }, { subset: { version: 'v3' }, weight: 50 }],
          affinity: { header: 'end-user' },
          timeoutMs: 1500,
          retries: { attempts: 3, perTryTimeoutMs: 200 },
        },
        { name: 'legacy', hosts: ['old-ratings'], route: [{ service: 'ratings', subset: { version: 'v1' } }] },
      ],
    }),
    fakeEnv('outbound'),
  )!;
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const ctx = fakeCtx({ host: 'reviews', url: '/reviews/0', headers: { 'end-user': 'jason' } });
    f.onRequest(ctx);
    seen.add(ctx.subset!.version!);
    const d = routeDecision(ctx)!;
    assert.equal(d.route, 'reviews');
    assert.equal(d.timeoutMs, 1500);
    assert.equal(d.retry!.attempts, 3);
    assert.equal(d.hashKey, 'jason');
    assert.equal(ctx.decision, 'allow');
  }
  assert.equal(seen.size, 1, 'one user sticks to one version');
  const legacy = fakeCtx({ host: 'old-ratings' });
  f.onRequest(legacy);
  assert.equal(legacy.destination!.service, 'ratings');
  assert.deepEqual(legacy.subset, { version: 'v1' });
  const none = fakeCtx({ host: 'details' });
  f.onRequest(none);
  assert.equal(none.subset, undefined);
  assert.equal(routeDecision(none), undefined);
  // Inbound chains route nothing: the local application is the only upstream.
  assert.equal(compileRouting(routes({ rules: [{ name: 'x' }] }), fakeEnv('inbound')), null);
  assert.equal(compileRouting(undefined, fakeEnv('outbound')), null);
});

test('cookie affinity generates a cookie once and then follows it', () => {
  const f = compileRouting(
    routes([{ name: 'r', route: [{ subset: { version: 'v2' }, weight: 1 }, { subset: { version: 'v3' }, weight: 1 }], affinity: { cookie: { name: 'etz-affinity', ttlSec: 3600 } } }]),
    fakeEnv('gateway'),
  )!;
  const first = fakeCtx({ direction: 'gateway' });
  f.onRequest(first);
  assert.equal(first.setCookies.length, 1);
  const cookie = first.setCookies[0]!.split(';')[0]!;
  assert.match(first.setCookies[0]!, /^etz-affinity=[\w-]+; Max-Age=3600; Path=\/; HttpOnly$/);
  for (let i = 0; i < 20; i++) {
    const again = fakeCtx({ direction: 'gateway', headers: { cookie } });
    f.onRequest(again);
    assert.equal(again.setCookies.length, 0);
    assert.deepEqual(again.subset, first.subset);
  }
});

test('routes config errors name the field', () => {
  assert.throws(() => routes({ rules: [{ name: 'x', route: [{ subset: { version: 1 } }] }] }), (e: unknown) => e instanceof ConfigError && e.field.startsWith('/rules/0/route/0/subset'));
  assert.throws(() => routes({ rules: [{ name: 'x', bogus: 1 }] }), (e: unknown) => e instanceof ConfigError && /bogus/.test(e.field));
  assert.throws(
    () => compileRouting(routes([{ name: 'x', retries: { retryOn: ['retriable-status-codes'] } }]), fakeEnv('outbound')),
    (e: unknown) => e instanceof ConfigError && e.field === '/routes/rules/0/retries/retriableStatusCodes',
  );
  assert.throws(
    () => compileRouting(routes([{ name: 'x', match: { headers: { a: { prefix: 'x', exact: 'y' } } } }]), fakeEnv('outbound')),
    (e: unknown) => e instanceof ConfigError && e.field === '/routes/rules/0/match/headers/a',
  );
});
