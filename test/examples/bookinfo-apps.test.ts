import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BOOKINFO, appKey, setCompromised, startApp, stopApp, type BookinfoApp } from '../../examples/bookinfo/apps.js';
import { TrafficGenerator } from '../../examples/bookinfo/traffic.js';
import { timingFor, managerConfig } from '../../examples/bookinfo/mesh.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { nullLogger } from '../../src/core/logger.js';
import { validateConfig } from '../../src/config/load.js';
import { managerConfigSchema } from '../../src/manager/config.js';

// The Bookinfo apps behind one real (plaintext) etz sidecar whose outbound listener routes by
// Host to every app: the call graph, the star colours per reviews version, the compromised
// reviews-v2, and the traffic generator's accounting.

// fetch() may not set Host; the sidecar routes by it.
function get(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject).end();
  });
}

async function withApps(fn: (apps: Map<string, BookinfoApp>, sidecar: Sidecar) => Promise<void>): Promise<void> {
  const apps = new Map<string, BookinfoApp>();
  for (const s of BOOKINFO) apps.set(appKey(s), await startApp(s));
  const registry: Record<string, { endpoints: Array<{ address: string; port: number; version: string }> }> = {};
  for (const a of apps.values()) (registry[a.spec.service] ??= { endpoints: [] }).endpoints.push({ address: '127.0.0.1', port: a.port, version: a.spec.version });
  const sidecar = await Sidecar.start({
    service: { name: 'bookinfo', version: 'v1', instance: 'bookinfo-0' },
    inbound: { host: '127.0.0.1', port: 0, appPort: apps.get('productpage-v1')!.port },
    outbound: { port: 0 },
    admin: { enabled: false },
    // The apps' own contract is under test here; mTLS between sidecars is covered by the demo.
    tls: { mode: 'DISABLE' },
    registry,
  }, { logger: nullLogger });
  for (const a of apps.values()) a.outboundPort = sidecar.ports.outbound;
  try {
    await fn(apps, sidecar);
  } finally {
    await sidecar.close({ drainMs: 100 });
    await Promise.all([...apps.values()].map(stopApp));
  }
}

test('productpage shows details and reviews through the sidecar; reviews v1 has no stars, v2 black, v3 red', async () => {
  await withApps(async (_apps, sidecar) => {
    const seen = new Map<string, string | null>();
    for (let i = 0; i < 40 && seen.size < 3; i++) {
      const r = await get(sidecar.ports.outbound, 'productpage', '/productpage');
      assert.equal(r.status, 200);
      const body = JSON.parse(r.body) as { details: boolean; reviews: string; stars: string | null };
      assert.equal(body.details, true);
      seen.set(body.reviews, body.stars);
    }
    assert.deepEqual(Object.fromEntries([...seen].sort()), { v1: null, v2: 'black', v3: 'red' });
  });
});

test('a compromised reviews-v2 uploads 64 KiB bodies to services it never calls, and stops when switched back', async () => {
  // A stand-in "details" that counts what arrives, behind the same kind of sidecar routing.
  let uploads = 0;
  let bytes = 0;
  const sink = createServer((req, res) => {
    if (req.url === '/admin/export') uploads++;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.end('{}'));
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const sinkPort = (sink.address() as AddressInfo).port;
  const app = await startApp({ service: 'reviews', version: 'v2' });
  const sidecar = await Sidecar.start({
    service: { name: 'reviews', version: 'v2', instance: 'reviews-v2' },
    inbound: { host: '127.0.0.1', port: 0, appPort: app.port },
    outbound: { port: 0 },
    admin: { enabled: false },
    // The apps' own contract is under test here; mTLS between sidecars is covered by the demo.
    tls: { mode: 'DISABLE' },
    registry: Object.fromEntries(['details', 'productpage', 'reviews', 'ratings'].map((s) => [s, { endpoints: [{ address: '127.0.0.1', port: sinkPort }] }])),
  }, { logger: nullLogger });
  app.outboundPort = sidecar.ports.outbound;
  try {
    setCompromised(app, true);
    const end = Date.now() + 10_000;
    while (uploads < 8 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    setCompromised(app, false);
    assert.ok(uploads >= 8, `uploads ${uploads}`);
    assert.ok(bytes >= uploads * 60_000, `bytes ${bytes}`);
    assert.ok(app.leaked >= 1);
    await new Promise((r) => setTimeout(r, 200));
    const after = uploads;
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(uploads - after <= 1, 'no more uploads once switched back');
  } finally {
    setCompromised(app, false);
    await sidecar.close({ drainMs: 100 });
    await stopApp(app);
    await new Promise((r) => sink.close(() => r(undefined)));
  }
});

test('the traffic generator keeps normal users under the detector threshold and counts the attacker apart', async () => {
  await withApps(async (_apps, sidecar) => {
    // The sidecar's outbound listener stands in for the gateway here (routing by Host).
    const tg = new TrafficGenerator({ url: `http://127.0.0.1:${sidecar.ports.outbound}`, windowMs: 1500, users: 3 });
    tg.startNormal();
    tg.startAttack(30);
    await new Promise((r) => setTimeout(r, 1600));
    tg.stop();
    const n = tg.normalTotals();
    // Three users at three requests per window: at most ~4 each in 1.6 s, never above 5.
    for (const u of ['alice', 'bob', 'carol']) assert.ok((tg.stats.get(u)?.requests ?? 0) <= 5, `${u}: ${tg.stats.get(u)?.requests}`);
    assert.ok(n.requests >= 3, `normal requests ${n.requests}`);
    const m = tg.stats.get('mallory')!;
    assert.ok(m.requests > 15, `mallory ${m.requests}`);
    assert.equal(m.ok + m.failed + m.denied + m.rateLimited <= m.requests, true);
  });
});

test('pages still loading when the traffic generator stops are not counted as failures; refusals are', async (t) => {
  // One user is held open until stop(); the others get 503, which a user would see.
  const held: Array<() => void> = [];
  const server = createServer((req, res) => {
    if (req.headers['x-etz-principal'] === 'alice') held.push(() => res.destroy());
    else res.writeHead(503).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const tg = new TrafficGenerator({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, windowMs: 600, users: 2 });
  tg.startNormal();
  await new Promise((r) => setTimeout(r, 700));
  assert.ok(held.length > 0, 'alice has a page loading');
  tg.stop();
  await new Promise((r) => setTimeout(r, 100));
  for (const h of held) h();
  const alice = tg.stats.get('alice')!;
  assert.deepEqual([alice.requests, alice.failed], [0, 0], 'cut short by the stop: not a request, not a failure');
  const bob = tg.stats.get('bob')!;
  assert.ok(bob.requests > 0 && bob.failed === bob.requests, `bob's 503s count as failures: ${JSON.stringify(bob)}`);
});

test('the demo manager config is valid for the manager and compresses time with --speed', () => {
  for (const speed of [1, 5, 15]) {
    const t = timingFor(speed);
    const cfg = validateConfig('demo', managerConfigSchema, managerConfig('/tmp/x', t, 0)) as { risk: { windowMs: number }; zones: { containment: { coolDownMs: number } } };
    assert.equal(cfg.risk.windowMs, t.windowMs);
    assert.equal(cfg.zones.containment.coolDownMs, t.coolDownMs);
  }
  assert.ok(timingFor(15).coolDownMs < timingFor(1).coolDownMs);
  assert.equal(timingFor(1).principalWindowMs, 60_000);
});
