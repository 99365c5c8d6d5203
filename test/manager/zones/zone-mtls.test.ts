import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { initCa, saveCa } from '../../../src/identity/index.js';
import { createRegistry } from '../../../src/core/metrics.js';
import type { Sidecar } from '../../../src/sidecar/sidecar.js';
import { startSidecar, startUpstream, type Upstream } from '../../sidecar/helpers.js';
import { RiskEngine, resolveEngineConfig } from '../../../src/manager/risk/index.js';
import { compileZoneResources } from '../../../src/manager/zones/compile.js';

// Zones over real mTLS: three sidecars with certificates from etz's own CA. reviews is the
// server; productpage and ratings call it through their outbound listeners.

const T = Date.UTC(2026, 10, 21, 10);
let dir: string;
let app: Upstream;
let reviews: Sidecar;
let productpage: Sidecar;
let ratings: Sidecar;
let version = 1;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-zone-mtls-'));
  await saveCa(join(dir, 'ca'), await initCa({ trustDomain: 'etz.local' }));
  app = await startUpstream();
  const tls = { caDir: join(dir, 'ca') };
  reviews = await startSidecar(app.port, { service: { name: 'reviews' }, tls }, { registry: createRegistry() });
  const registry = { reviews: { endpoints: [{ address: '127.0.0.1', port: reviews.ports.inbound }], spiffeId: 'spiffe://etz.local/ns/default/sa/reviews' } };
  productpage = await startSidecar(1, { service: { name: 'productpage' }, tls, registry }, { registry: createRegistry() });
  ratings = await startSidecar(1, { service: { name: 'ratings' }, tls, registry }, { registry: createRegistry() });
});

after(async () => {
  await productpage?.close({ drainMs: 0 });
  await ratings?.close({ drainMs: 0 });
  await reviews?.close({ drainMs: 0 });
  await app?.close();
  await rm(dir, { recursive: true, force: true });
});

async function via(sidecar: Sidecar, path = '/reviews/1'): Promise<{ status: number; error?: string; reason?: string }> {
  const res = await request(`http://127.0.0.1:${sidecar.ports.outbound}${path}`, { headers: { host: 'reviews' }, reset: true });
  const text = await res.body.text();
  if (res.statusCode < 400) return { status: res.statusCode };
  const body = JSON.parse(text) as { error: string; reason: string };
  return { status: res.statusCode, error: body.error, reason: body.reason };
}

test('isolation: only the allowed principal reaches a sensitive service over mTLS', async () => {
  const cfg = resolveEngineConfig({ risk: { services: { reviews: { labels: ['sensitive'], allow: ['productpage'] } } } });
  const engine = new RiskEngine(cfg);
  engine.ingestJson({ ts: T, source: { service: 'productpage' }, destination: { service: 'reviews' }, method: 'GET', path: '/', status: 200, durationMs: 1 });
  const res = compileZoneResources(engine.zoneRecords(), engine.flaggedPrincipals(), cfg);
  for (const s of [reviews, productpage, ratings]) await s.applyResources({ zones: res.zones }, version);
  version++;
  const seen = app.seen.length;
  assert.equal((await via(productpage)).status, 200);
  const denied = await via(ratings);
  assert.equal(denied.status, 403);
  assert.equal(denied.error, 'ETZ_ERR_ZONE_DENIED');
  assert.match(denied.reason!, /isolation zone isolation-reviews-1: ratings is not allowed to call reviews/);
  assert.equal(app.seen.length, seen + 1, 'the refused call never reached the app');
});

test('containment: a contained caller is refused by the callee even before its own sidecar has the zone', async () => {
  const cfg = resolveEngineConfig({});
  const engine = new RiskEngine(cfg);
  engine.createZone({ type: 'containment', members: [{ service: 'ratings' }], reason: 'compromised' }, T);
  const res = compileZoneResources(engine.zoneRecords(), [], cfg);
  // Only reviews has the new version so far.
  await reviews.applyResources({ zones: res.zones }, version++);
  await ratings.applyResources({}, version++);
  const r = await via(ratings);
  assert.equal(r.status, 403);
  assert.match(r.reason!, /containment zone containment-ratings-1: requests from ratings are refused/);
  assert.equal((await via(productpage)).status, 200);
  // Once ratings has it too, the call is refused locally, before any connection to reviews.
  await ratings.applyResources({ zones: res.zones }, version++);
  const local = await via(ratings);
  assert.equal(local.status, 403);
  assert.match(local.reason!, /outbound from ratings to reviews is blocked/);
});
