import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ManagerClient } from '../../src/manager/api-client.js';
import { checkManagerIdentity } from '../../src/protocol/server-identity.js';
import { startTestManager } from './helpers.js';

function raw(url: string, ca: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), { method, ca, headers, checkServerIdentity: checkManagerIdentity() }, (res) => {
      const c: Buffer[] = [];
      res.on('data', (d: Buffer) => c.push(d));
      res.on('end', () => {
        const t = Buffer.concat(c).toString();
        resolve({ status: res.statusCode!, json: t ? JSON.parse(t) : undefined });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('operator API: admin token required, refusals audited; admin token file is 0600', async () => {
  const t = await startTestManager();
  try {
    assert.equal((await stat(join(t.dataDir, 'admin-token'))).mode & 0o777, 0o600);
    const none = await raw(t.manager.url, t.caPem, 'GET', '/v1/status');
    assert.equal(none.status, 401);
    assert.equal(none.json.error, 'ETZ_ERR_UNAUTHENTICATED');
    const wrong = await raw(t.manager.url, t.caPem, 'GET', '/v1/zones', { authorization: 'Bearer etza_nope' });
    assert.equal(wrong.status, 401);
    const health = await raw(t.manager.url, t.caPem, 'GET', '/healthz');
    assert.equal(health.status, 200);
    const audit = await t.admin.call<{ entries: Array<{ action: string; outcome: string; target?: string }> }>('GET', '/v1/audit?action=api.access');
    assert.equal(audit.entries.filter((e) => e.outcome === 'denied').length, 2);
    assert.ok(audit.entries.some((e) => e.target === 'GET /v1/zones'));
    // The token itself never appears in the audit log.
    const all = JSON.stringify(await t.admin.call('GET', '/v1/audit?limit=1000'));
    assert.ok(!all.includes(t.adminToken));
  } finally {
    await t.close();
  }
});

test('zones: create with TTL, pin, dissolve with reason; bad input names the field', async () => {
  const t = await startTestManager();
  try {
    const z = await t.admin.call<{ id: string; expiresAt: number; pinned: boolean }>('POST', '/v1/zones', { type: 'containment', members: [{ service: 'reviews', version: 'v2' }], reason: 'suspicious egress', ttl: '10m' });
    assert.ok(z.expiresAt > Date.now() + 9 * 60_000);
    const pinned = await t.admin.call<{ pinned: boolean }>('POST', `/v1/zones/${z.id}/pin`, {});
    assert.equal(pinned.pinned, true);
    const list = await t.admin.call<{ items: Array<{ id: string }> }>('GET', '/v1/zones');
    assert.deepEqual(list.items.map((x) => x.id), [z.id]);
    // The zone is published to the mesh topic.
    const pushed = t.manager.hub.get('mesh', 'zones') as { zones: Array<{ id: string; members: unknown[]; outbound?: unknown }> };
    assert.equal(pushed.zones[0]!.id, z.id);
    assert.ok(pushed.zones[0]!.outbound, 'compiled: containment carries its outbound rule');
    await assert.rejects(t.admin.call('POST', '/v1/zones', { type: 'quarantine', members: [{ service: 'a' }], reason: 'x' }), /\/type: must be one of/);
    await assert.rejects(t.admin.call('POST', '/v1/zones', { type: 'containment', members: [], reason: 'x' }), /\/members/);
    await assert.rejects(t.admin.call('POST', '/v1/zones', { type: 'containment', members: [{ service: 'a' }], reason: 'x', ttl: 'soon' }), /ttl/);
    await assert.rejects(t.admin.call(`POST`, `/v1/zones/${z.id}/dissolve`, {}), /\/reason: is required/);
    await t.admin.call('POST', `/v1/zones/${z.id}/dissolve`, { reason: 'false positive' });
    await assert.rejects(t.admin.call('POST', `/v1/zones/${z.id}/dissolve`, { reason: 'again' }), (e: Error & { code: string }) => e.code === 'ETZ_ERR_NOT_FOUND');
    const audit = await t.admin.call<{ entries: Array<{ action: string; reason?: string }> }>('GET', '/v1/audit?action=zone.');
    assert.deepEqual(audit.entries.map((e) => e.action), ['zone.dissolve', 'zone.pin', 'zone.create']);
    assert.equal(audit.entries[0]!.reason, 'false positive');
  } finally {
    await t.close();
  }
});

test('zones with a TTL expire on their own; pinned ones stay', async () => {
  const t = await startTestManager();
  try {
    const short = await t.admin.call<{ id: string }>('POST', '/v1/zones', { type: 'isolation', members: [{ service: 'a' }], reason: 'r', ttl: '300ms' });
    const pinned = await t.admin.call<{ id: string }>('POST', '/v1/zones', { type: 'isolation', members: [{ service: 'b' }], reason: 'r', ttl: '300ms', pinned: true });
    const end = Date.now() + 5000;
    while (t.manager.zones.get(short.id) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    assert.equal(t.manager.zones.get(short.id), undefined);
    assert.ok(t.manager.zones.get(pinned.id));
  } finally {
    await t.close();
  }
});

test('policies: lint refuses invalid documents with the field; apply, get, delete', async () => {
  const t = await startTestManager();
  try {
    const doc = { apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'reviews-viewer' }, spec: { selector: { service: 'reviews' }, action: 'ALLOW', rules: [{ from: [{ principals: ['spiffe://etz.local/ns/default/sa/productpage'] }] }] } };
    const dry = await t.admin.call<{ dryRun: boolean }>('PUT', '/v1/policies/reviews-viewer?dryRun=true', doc);
    assert.equal(dry.dryRun, true);
    assert.equal(t.manager.policies.list().length, 0);
    await t.admin.call('PUT', '/v1/policies/reviews-viewer', doc);
    assert.equal((await t.admin.call<{ metadata: { name: string } }>('GET', '/v1/policies/reviews-viewer')).metadata.name, 'reviews-viewer');
    assert.equal(t.manager.hub.get('mesh', 'policies').length, 1);
    await assert.rejects(t.admin.call('PUT', '/v1/policies/x', { ...doc, kind: 'Nope' }), /\/kind/);
    await assert.rejects(t.admin.call('PUT', '/v1/policies/other', doc), /path names 'other'/);
    const multi = await t.admin.call<{ applied: string[]; warnings: string[] }>('POST', '/v1/policies', { items: [{ ...doc, metadata: { name: 'empty' }, spec: { action: 'ALLOW' } }] });
    assert.deepEqual(multi.applied, ['empty']);
    assert.match(multi.warnings[0]!, /allows nothing/);
    await t.admin.call('DELETE', '/v1/policies/reviews-viewer');
    await assert.rejects(t.admin.call('GET', '/v1/policies/reviews-viewer'), /404/);
  } finally {
    await t.close();
  }
});

test('openapi document lists every route; unknown routes 404, wrong methods 405; oversized bodies 413', async () => {
  const t = await startTestManager({ api: { maxBodyBytes: 2048 } });
  try {
    const doc = await t.admin.call<{ openapi: string; paths: Record<string, Record<string, { summary: string }>> }>('GET', '/v1/openapi.json');
    assert.equal(doc.openapi, '3.1.0');
    for (const r of t.manager.router.list()) {
      const p = r.path.replace(/\{(\w+)\*\}/g, '{$1}');
      assert.ok(doc.paths[p]?.[r.method.toLowerCase()], `${r.method} ${p} documented`);
      assert.ok(doc.paths[p]![r.method.toLowerCase()]!.summary, `${r.method} ${p} has a summary`);
    }
    assert.equal((await raw(t.manager.url, t.caPem, 'GET', '/v1/nothing', { authorization: `Bearer ${t.adminToken}` })).status, 404);
    assert.equal((await raw(t.manager.url, t.caPem, 'PATCH', '/v1/zones', { authorization: `Bearer ${t.adminToken}` })).status, 405);
    const big = await raw(t.manager.url, t.caPem, 'POST', '/v1/zones', { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json' }, JSON.stringify({ reason: 'x'.repeat(5000) }));
    assert.equal(big.status, 413);
    const notJson = await raw(t.manager.url, t.caPem, 'POST', '/v1/zones', { authorization: `Bearer ${t.adminToken}` }, '{nope');
    assert.equal(notJson.status, 400);
  } finally {
    await t.close();
  }
});

test('a client that does not trust the manager CA, or reaches a server that is not the manager, fails', async () => {
  const t = await startTestManager();
  try {
    const other = await startTestManager();
    try {
      const c = new ManagerClient({ url: t.manager.url, ca: other.caPem, token: t.adminToken });
      await assert.rejects(c.call('GET', '/v1/status'), (e: Error & { code: string }) => e.code === 'ETZ_ERR_MANAGER_UNREACHABLE');
    } finally {
      await other.close();
    }
  } finally {
    await t.close();
  }
});

test('state survives a restart: zones, policies, tokens, audit', async () => {
  const t = await startTestManager();
  const z = await t.admin.call<{ id: string }>('POST', '/v1/zones', { type: 'containment', members: [{ service: 'a' }], reason: 'r' });
  await t.token({ service: 'a' }, 3);
  await t.close(true);
  const again = await startTestManager({}, { dataDir: t.dataDir });
  try {
    assert.equal(again.adminToken, t.adminToken, 'admin token is kept, not regenerated');
    assert.ok(again.manager.zones.get(z.id));
    assert.equal((await again.admin.call<{ items: Array<{ usesLeft: number }> }>('GET', '/v1/tokens')).items[0]!.usesLeft, 3);
    const audit = await again.admin.call<{ entries: Array<{ action: string }> }>('GET', '/v1/audit');
    assert.deepEqual(audit.entries.map((e) => e.action).filter((a) => a !== 'api.access'), ['manager.start', 'token.create', 'zone.create', 'manager.start']);
    assert.equal((again.manager.hub.get('mesh', 'zones') as { zones: Array<{ id: string }> }).zones[0]!.id, z.id, 'republished at start');
    const ca1 = await readFile(join(t.dataDir, 'ca', 'root-cert.pem'), 'utf8');
    assert.equal(ca1, again.caPem.slice(0, ca1.length), 'the CA is kept');
  } finally {
    await again.close();
  }
});
