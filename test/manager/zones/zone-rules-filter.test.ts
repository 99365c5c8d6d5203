import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createRegistry } from '../../../src/core/metrics.js';
import type { Sidecar } from '../../../src/sidecar/sidecar.js';
import { startSidecar, startUpstream, type Upstream } from '../../sidecar/helpers.js';
import { compileZoneResources } from '../../../src/manager/zones/compile.js';
import { RiskEngine, defaultEngineConfig, resolveEngineConfig } from '../../../src/manager/risk/index.js';

// The zone-rules filter in a real sidecar chain: real listeners, real upstreams, zones compiled by
// the zone manager's compileZoneResources and pushed with applyResources as the control client does.

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

function call(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

const T = Date.UTC(2026, 10, 21, 10);

function contained(service: string, opts: { shadow?: boolean; mode?: 'block' | 'scrutinise' } = {}) {
  const cfg = resolveEngineConfig({ zones: { mode: opts.shadow ? 'shadow' : 'enforce', containment: { outbound: opts.mode ?? 'block', allow: ['etz-manager'], scrutiniseRatePerMinute: 2 } } });
  const engine = new RiskEngine(cfg);
  engine.createZone({ type: 'containment', members: [{ service }], reason: 'test' }, T);
  return compileZoneResources(engine.zoneRecords(), engine.flaggedPrincipals(), cfg);
}

describe('zone-rules filter in the sidecar chain', () => {
  let app: Upstream;
  let ratings: Upstream;
  let manager: Upstream;
  let sidecar: Sidecar;
  let logs: ReturnType<typeof captureLogger>;
  let version = 1;

  before(async () => {
    app = await startUpstream();
    ratings = await startUpstream();
    manager = await startUpstream();
    logs = captureLogger();
    sidecar = await startSidecar(
      app.port,
      { registry: { ratings: { endpoints: [{ address: '127.0.0.1', port: ratings.port }] }, 'etz-manager': { endpoints: [{ address: '127.0.0.1', port: manager.port }] } } },
      { logger: logs.logger, registry: createRegistry() },
    );
  });
  after(async () => {
    await sidecar.close({ drainMs: 0 });
    await Promise.all([app.close(), ratings.close(), manager.close()]);
  });

  test('containment blocks the member\'s outbound calls except the allow-list', async () => {
    const out = sidecar.ports.outbound;
    assert.equal((await call(out, '/ratings/1', { host: 'ratings' })).status, 200);
    const { zones } = contained('reviews');
    await sidecar.applyResources({ zones }, version++);
    const seen = ratings.seen.length;
    const r = await call(out, '/ratings/1', { host: 'ratings' });
    assert.equal(r.status, 403);
    const body = JSON.parse(r.body) as { error: string; reason: string };
    assert.equal(body.error, 'ETZ_ERR_ZONE_DENIED');
    assert.match(body.reason, /containment zone containment-reviews-1: outbound from reviews to ratings is blocked/);
    assert.equal(ratings.seen.length, seen, 'the denied request never reached ratings');
    assert.equal((await call(out, '/v1/telemetry', { host: 'etz-manager' })).status, 200);
    assert.ok(logs.lines.some((l) => l.audit === 'zone.deny' && l.zone === 'containment-reviews-1'));
  });

  test('a zone on another service: requests from its members are refused inbound, others pass', async () => {
    const { zones } = contained('productpage');
    await sidecar.applyResources({ zones }, version++);
    // Outbound from reviews (not a member) is unaffected.
    assert.equal((await call(sidecar.ports.outbound, '/ratings/1', { host: 'ratings' })).status, 200);
    // Plain inbound without a peer identity is not from a member: allowed.
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1', { host: 'reviews' })).status, 200);
  });

  test('shadow mode computes and logs but never denies', async () => {
    const { zones } = contained('reviews', { shadow: true });
    assert.equal(zones.zones[0]!.enforce, false);
    await sidecar.applyResources({ zones }, version++);
    assert.equal((await call(sidecar.ports.outbound, '/ratings/1', { host: 'ratings' })).status, 200);
    assert.ok(logs.lines.some((l) => l.audit === 'zone.deny' && l.enforced === false));
  });

  test('scrutinise mode lets calls through with a full audit record, under a strict rate limit', async () => {
    const { zones } = contained('reviews', { mode: 'scrutinise' });
    await sidecar.applyResources({ zones }, version++);
    const out = sidecar.ports.outbound;
    const a = await call(out, '/ratings/1?x=1', { host: 'ratings' });
    const b = await call(out, '/ratings/2', { host: 'ratings' });
    const c = await call(out, '/ratings/3', { host: 'ratings' });
    assert.deepEqual([a.status, b.status, c.status], [200, 200, 429]);
    const audits = logs.lines.filter((l) => l.audit === 'zone.access' && l.outcome === 'scrutinised');
    assert.ok(audits.some((l) => l.path === '/ratings/1' && l.query === 'x=1'));
  });

  test('isolation: inbound without mutual TLS is refused and every access is audited', async () => {
    const cfg = resolveEngineConfig({ risk: { services: { reviews: { labels: ['sensitive'], allow: ['productpage'] } } } });
    const engine = new RiskEngine(cfg);
    engine.ingestJson({ ts: T, source: { service: 'productpage' }, destination: { service: 'reviews' }, method: 'GET', path: '/', status: 200, durationMs: 1 });
    const res = compileZoneResources(engine.zoneRecords(), [], cfg);
    assert.equal(res.zones.zones[0]!.type, 'isolation');
    assert.deepEqual(res.zones.zones[0]!.allowPrincipals, ['productpage']);
    await sidecar.applyResources({ zones: res.zones }, version++);
    const r = await call(sidecar.ports.inbound, '/reviews/1', { host: 'reviews' });
    assert.equal(r.status, 403);
    assert.match(JSON.parse(r.body).reason, /mutual TLS is required/);
  });

  test('blocked end users are refused at the first hop', async () => {
    await sidecar.applyResources({ principals: { flagged: [{ principal: 'eve', action: 'block', reason: 'credential stuffing', expiresAt: Date.now() + 60_000 }] } }, version++);
    const r = await call(sidecar.ports.inbound, '/reviews/1', { host: 'reviews', 'x-etz-principal': 'eve' });
    assert.equal(r.status, 403);
    assert.match(JSON.parse(r.body).reason, /eve is blocked.*credential stuffing/);
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1', { host: 'reviews', 'x-etz-principal': 'jason' })).status, 200);
  });

  test('a bad zones push is refused and the previous version stays in force', async () => {
    const { zones } = contained('reviews');
    await sidecar.applyResources({ zones }, version++);
    const before = sidecar.configVersion;
    await assert.rejects(sidecar.applyResources({ zones: { zones: [{ id: 'x', type: 'quarantine', members: [] }] } }, version++), /\/resources\/zones/);
    assert.equal(sidecar.configVersion, before);
    assert.equal((await call(sidecar.ports.outbound, '/ratings/1', { host: 'ratings' })).status, 403);
  });

  test('a new containment closes an open outbound connection it now denies', async () => {
    await sidecar.applyResources({}, version++);
    const s: Socket = connect(sidecar.ports.outbound, '127.0.0.1');
    await once(s, 'connect');
    s.write('GET /ratings/1 HTTP/1.1\r\nHost: ratings\r\n\r\n');
    const [chunk] = (await once(s, 'data')) as [Buffer];
    assert.match(chunk.toString('latin1'), /^HTTP\/1\.1 200/);
    const closed = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 3000);
      s.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    await sidecar.applyResources({ zones: contained('reviews').zones }, version++);
    assert.equal(await closed, true);
  });

  test('the filter is off (not in the chain) without zones or blocked principals', () => {
    const res = compileZoneResources([], [], defaultEngineConfig());
    assert.deepEqual(res, { zones: { zones: [] }, principals: { flagged: [] } });
  });
});
