import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Sidecar } from '../../../src/sidecar/sidecar.js';
import { startSidecar, startUpstream, type Upstream } from '../../sidecar/helpers.js';
import { call as send } from '../../sidecar/traffic-fixtures.js';
import { compileZoneResources } from '../../../src/manager/zones/compile.js';
import { RiskEngine, resolveEngineConfig } from '../../../src/manager/risk/index.js';

// A containment zone around one instance of a service, enforced by real sidecars: the contained
// instance's own sidecar refuses its calls, its siblings' sidecars do not, and callers route around
// it to the siblings (also when the route's split picks the contained version), so the caller
// sees no error.

const call = (port: number, path: string, host: string) => send(port, host, { path });

const T = Date.UTC(2026, 10, 21, 10);

function containV2(shadow = false) {
  const cfg = resolveEngineConfig({ zones: { mode: shadow ? 'shadow' : 'enforce' } });
  const engine = new RiskEngine(cfg);
  engine.createZone({ type: 'containment', members: [{ service: 'reviews', version: 'v2', instance: 'reviews-v2' }], reason: 'test' }, T);
  return compileZoneResources(engine.zoneRecords(), [], cfg).zones;
}

const routes = (weights: [number, number, number]) => ({
  rules: [{
    name: 'reviews',
    hosts: ['reviews'],
    route: weights.map((weight, i) => ({ subset: { version: `v${i + 1}` }, weight })).filter((r) => r.weight > 0),
  }],
});

describe('containment of one instance in the sidecar chain', () => {
  const reviews = new Map<string, Upstream>();
  let ratings: Upstream;
  let app: Upstream;
  let caller: Sidecar;
  const own = new Map<string, Sidecar>();
  let version = 1;

  before(async () => {
    app = await startUpstream();
    ratings = await startUpstream();
    for (const v of ['v1', 'v2', 'v3']) reviews.set(v, await startUpstream());
    const endpoints = [...reviews].map(([v, u]) => ({ address: '127.0.0.1', port: u.port, version: v, instance: `reviews-${v}` }));
    // productpage's sidecar: calls reviews (three instances).
    caller = await startSidecar(app.port, { service: { name: 'productpage', version: 'v1', instance: 'productpage-v1' }, registry: { reviews: { endpoints } } });
    // reviews-v1's and reviews-v2's own sidecars: call ratings.
    for (const v of ['v1', 'v2']) {
      own.set(v, await startSidecar(app.port, { service: { name: 'reviews', version: v, instance: `reviews-${v}` }, registry: { ratings: { endpoints: [{ address: '127.0.0.1', port: ratings.port }] } } }));
    }
  });
  after(async () => {
    await Promise.all([caller, ...own.values()].map((s) => s.close({ drainMs: 0 })));
    await Promise.all([app, ratings, ...reviews.values()].map((u) => u.close()));
  });

  test('the contained instance\'s own calls are refused; a sibling\'s are not', async () => {
    const zones = containV2();
    for (const s of own.values()) await s.applyResources({ zones }, version++);
    const seen = ratings.seen.length;
    const denied = await call(own.get('v2')!.ports.outbound, '/ratings/0', 'ratings');
    assert.equal(denied.status, 403);
    assert.match(JSON.parse(denied.body).reason, /containment zone containment-reviews-v2-1: outbound from reviews to ratings is blocked/);
    assert.equal(ratings.seen.length, seen, 'the refused call never reached ratings');
    assert.equal((await call(own.get('v1')!.ports.outbound, '/ratings/0', 'ratings')).status, 200);
  });

  test('callers route around the contained instance, even when the split picks its version', async () => {
    const count = () => Object.fromEntries([...reviews].map(([v, u]) => [v, u.seen.length]));
    // Without a zone the split (v2 only) sends everything to v2: the route is what would reach it.
    await caller.applyResources({ routes: routes([0, 100, 0]) }, version++);
    let before = count();
    for (let i = 0; i < 6; i++) assert.equal((await call(caller.ports.outbound, '/reviews/0', 'reviews')).status, 200);
    assert.equal(count().v2 - before.v2, 6);

    await caller.applyResources({ routes: routes([0, 100, 0]), zones: containV2() }, version++);
    before = count();
    for (let i = 0; i < 12; i++) assert.equal((await call(caller.ports.outbound, '/reviews/0', 'reviews')).status, 200);
    let after = count();
    assert.equal(after.v2 - before.v2, 0, 'nothing reached the contained instance');
    assert.equal(after.v1 - before.v1 + after.v3 - before.v3, 12);

    // An even split: the siblings share it.
    await caller.applyResources({ routes: routes([34, 33, 33]), zones: containV2() }, version++);
    before = count();
    for (let i = 0; i < 30; i++) assert.equal((await call(caller.ports.outbound, '/reviews/0', 'reviews')).status, 200);
    after = count();
    assert.equal(after.v2 - before.v2, 0);
    assert.ok(after.v1 > before.v1 && after.v3 > before.v3, JSON.stringify({ before, after }));

    // Without routes (plain round robin) too.
    await caller.applyResources({ zones: containV2() }, version++);
    before = count();
    for (let i = 0; i < 9; i++) assert.equal((await call(caller.ports.outbound, '/reviews/0', 'reviews')).status, 200);
    assert.equal(count().v2 - before.v2, 0);
  });

  test('a shadow zone routes nowhere differently', async () => {
    await caller.applyResources({ routes: routes([0, 100, 0]), zones: containV2(true) }, version++);
    const before = reviews.get('v2')!.seen.length;
    for (let i = 0; i < 4; i++) assert.equal((await call(caller.ports.outbound, '/reviews/0', 'reviews')).status, 200);
    assert.equal(reviews.get('v2')!.seen.length - before, 4);
  });
});
