import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { attachEngine } from '../../src/manager/process.js';
import { Dashboard } from '../../src/manager/dashboard/index.js';
import { startTestManager } from './helpers.js';

// The dashboard's server against a real manager with its risk engine: authentication, the state
// snapshot, the live SSE stream, and zone actions going through the manager's API and its audit.

async function setup() {
  const t = await startTestManager();
  attachEngine(t.manager);
  const d = await Dashboard.start({ host: '127.0.0.1', port: 0, refreshMs: 100, dataDir: t.dataDir, router: t.manager.router, logger: t.manager.logger, flagged: () => t.manager.zones.flagged?.() ?? [] });
  const base = `http://127.0.0.1:${d.port}`;
  return { t, d, base, async close() { await d.close(); await t.close(); } };
}

async function signIn(base: string, token: string): Promise<string> {
  const r = await fetch(`${base}/?token=${encodeURIComponent(token)}`, { redirect: 'manual' });
  assert.equal(r.status, 303);
  const cookie = r.headers.get('set-cookie') ?? '';
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  assert.ok(!cookie.includes(token), 'the cookie is not the token');
  return cookie.split(';')[0]!;
}

test('dashboard: admin token required; sign-in gives a session cookie; state lists sidecars, zones and audit', async () => {
  const s = await setup();
  try {
    const anon = await fetch(`${s.base}/`);
    assert.equal(anon.status, 401);
    assert.match(await anon.text(), /admin token/);
    assert.equal((await fetch(`${s.base}/api/state`)).status, 401);
    assert.equal((await fetch(`${s.base}/?token=etza_wrong`, { redirect: 'manual' })).status, 401);
    assert.equal((await fetch(`${s.base}/api/state`, { headers: { cookie: 'etz_dashboard=forged' } })).status, 401);

    const cookie = await signIn(s.base, s.t.adminToken);
    const page = await fetch(`${s.base}/`, { headers: { cookie } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<svg id="g"/);
    // A bearer token works as well (scripts).
    assert.equal((await fetch(`${s.base}/api/state`, { headers: { authorization: `Bearer ${s.t.adminToken}` } })).status, 200);

    await s.t.admin.call('POST', '/v1/zones', { type: 'isolation', members: [{ service: 'ratings' }], reason: 'operator test' });
    const state = await (await fetch(`${s.base}/api/state`, { headers: { cookie } })).json() as { zones: Array<{ type: string; members: Array<{ service: string }>; rollout: { inForce: boolean } }>; audit: Array<{ action: string }>; nodes: unknown[] };
    assert.equal(state.zones.length, 1);
    assert.equal(state.zones[0]!.type, 'isolation');
    assert.deepEqual(state.zones[0]!.members, [{ service: 'ratings' }]);
    assert.ok(state.audit.some((a) => a.action === 'zone.create'));
  } finally {
    await s.close();
  }
});

test('dashboard: zone actions go through the API, are audited as the dashboard, and need the CSRF header', async () => {
  const s = await setup();
  try {
    const cookie = await signIn(s.base, s.t.adminToken);
    const z = await s.t.admin.call<{ id: string; expiresAt: number }>('POST', '/v1/zones', { type: 'containment', members: [{ service: 'reviews' }], reason: 'operator test', ttl: '10m' });
    const post = (path: string, body: unknown, csrf = true) => fetch(`${s.base}${path}`, { method: 'POST', headers: { cookie, 'content-type': 'application/json', ...(csrf ? { 'x-etz-dashboard': '1' } : {}) }, body: JSON.stringify(body) });

    assert.equal((await post(`/api/zones/${z.id}/pin`, {}, false)).status, 403);
    const pinned = await post(`/api/zones/${z.id}/pin`, {});
    assert.equal(pinned.status, 200);
    assert.equal(((await pinned.json()) as { pinned: boolean }).pinned, true);
    await post(`/api/zones/${z.id}/unpin`, {});

    const ext = await post(`/api/zones/${z.id}/extend`, { ttl: '30m', reason: 'investigating' });
    assert.equal(ext.status, 200);
    const extended = (await ext.json()) as { expiresAt: number };
    assert.ok(extended.expiresAt >= z.expiresAt + 29 * 60_000, `${extended.expiresAt} vs ${z.expiresAt}`);
    assert.equal((await post(`/api/zones/${z.id}/extend`, { ttl: 'forever', reason: 'x' })).status, 400);

    const dis = await post(`/api/zones/${z.id}/dissolve`, { reason: 'false positive' });
    assert.equal(dis.status, 200);
    assert.equal(s.t.manager.zones.list().length, 0);
    assert.equal((await post('/api/zones/nope/dissolve', { reason: 'x' })).status, 404);

    const audit = await s.t.admin.call<{ entries: Array<{ action: string; actor: string; target?: string; reason?: string }> }>('GET', '/v1/audit?limit=50');
    const mine = audit.entries.filter((e) => e.actor === 'dashboard:admin-token').map((e) => e.action).reverse();
    assert.deepEqual(mine, ['zone.pin', 'zone.unpin', 'zone.extend', 'zone.dissolve']);
    assert.equal(audit.entries.find((e) => e.action === 'zone.dissolve')!.reason, 'false positive');
  } finally {
    await s.close();
  }
});

test('dashboard: the SSE stream pushes state without reloading, and sees a new zone', async () => {
  const s = await setup();
  try {
    const cookie = await signIn(s.base, s.t.adminToken);
    const frames: string[] = [];
    const req = request(`${s.base}/api/events`, { headers: { cookie } });
    const got = new Promise<void>((resolve, reject) => {
      req.on('response', (res) => {
        assert.equal(res.headers['content-type'], 'text/event-stream');
        let buf = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          buf += d;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            frames.push(buf.slice(0, i));
            buf = buf.slice(i + 2);
            if (frames.some((f) => f.includes('"type":"performance"'))) resolve();
          }
        });
      });
      req.on('error', reject);
    });
    req.end();
    await new Promise((r) => setTimeout(r, 300));
    await s.t.admin.call('POST', '/v1/zones', { type: 'performance', members: [{ service: 'details' }, { service: 'productpage' }], reason: 'sse test' });
    await got;
    req.destroy();
    const states = frames.filter((f) => f.startsWith('event: state'));
    assert.ok(states.length >= 2, `${states.length} state frames`);
  } finally {
    await s.close();
  }
});
