import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlClient, type ApplyTarget } from '../../src/sidecar/control/client.js';
import { TelemetryBatcher } from '../../src/sidecar/control/telemetry-batcher.js';
import { createRegistry } from '../../src/core/metrics.js';
import { startTestManager, until } from '../manager/helpers.js';

/**
 * The sidecar side of applyResources: keeps one immutable config object and refuses a version
 * that carries a zone marked invalid, changing nothing (the contract Sidecar.applyResources has).
 */
class Target implements ApplyTarget {
  version = 0;
  resources: Record<string, unknown> = {};
  applied: number[] = [];
  async applyResources(resources: Record<string, unknown>, version: number): Promise<void> {
    const zones = (resources.zones as { zones: Array<{ members: Array<{ service: string }> }> } | undefined)?.zones ?? [];
    if (zones.some((z) => z.members.some((m) => m.service === 'invalid'))) throw new Error('/resources/zones/zones/0: invalid zone');
    this.resources = Object.freeze(structuredClone(resources));
    this.version = version;
    this.applied.push(version);
  }
}

function zoneIds(t: Target): string[] {
  return ((t.resources.zones as { zones: Array<{ id: string }> } | undefined)?.zones ?? []).map((z) => z.id);
}

async function tmp(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'etz-ctl-'));
}

test('enroll with a bootstrap token, receive the snapshot, apply a zone change and ACK it; rollout in force', async () => {
  const t = await startTestManager();
  const dir = await tmp();
  const target = new Target();
  const metrics = createRegistry();
  const c = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target, bootstrapToken: await t.token({ service: 'reviews' }), metrics });
  try {
    await c.waitForVersion((v) => v > 0);
    assert.equal((await stat(join(dir, 'key.pem'))).mode & 0o777, 0o600);
    assert.ok(Array.isArray(target.resources.trustBundle));
    const z = await t.admin.call<{ id: string }>('POST', '/v1/zones', { type: 'containment', members: [{ service: 'reviews' }], reason: 'test' });
    await until(() => zoneIds(target).includes(z.id), 5000, 'zone applied');
    await until(() => t.manager.hub.listRollouts()[0]!.inForce, 5000, 'rollout in force');
    const ro = t.manager.hub.listRollouts()[0]!;
    assert.equal(ro.targets['reviews-0']!.state, 'acked');
    const sc = await t.admin.call<{ items: Array<{ state: string; configVersion: number }> }>('GET', '/v1/sidecars');
    assert.equal(sc.items[0]!.state, 'acked');
    assert.equal(sc.items[0]!.configVersion, c.version);
    // The snapshot on disk is what is in force.
    // Written in the background after the ACK: wait for it before reading.
    await until(async () => JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8')).version === c.version, 5000, 'snapshot persisted');
    const snap = JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8'));
    assert.ok(snap.resources.zones);
    const text = await metrics.metrics();
    assert.match(text, /etz_control_plane_connected 1/);
    assert.match(text, /etz_control_plane_snapshot_age_seconds \d/);
  } finally {
    await c.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a NACKed version leaves the sidecar on its previous version; the rollout shows it nacked with the error', async () => {
  const t = await startTestManager();
  const dir = await tmp();
  const target = new Target();
  const c = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target, bootstrapToken: await t.token() });
  try {
    await c.waitForVersion((v) => v > 0);
    const good = c.version;
    const before = structuredClone(target.resources);
    const nacked = new Promise<string>((r) => c.once('nacked', (_v, e) => r(e)));
    await t.admin.call('POST', '/v1/zones', { type: 'containment', members: [{ service: 'invalid' }], reason: 'bad' });
    assert.match(await nacked, /invalid zone/);
    assert.equal(c.version, good);
    assert.equal(target.version, good);
    assert.deepEqual(target.resources, before);
    await until(() => t.manager.hub.listRollouts()[0]!.counts.nacked === 1, 5000, 'nack recorded');
    const ro = await t.admin.call<{ targets: Record<string, { state: string; error: string }> }>('GET', `/v1/rollouts/${t.manager.hub.listRollouts()[0]!.version}`);
    assert.equal(ro.targets['reviews-0']!.state, 'nacked');
    assert.match(ro.targets['reviews-0']!.error, /invalid zone/);
    // Dissolving the bad zone gives a version the sidecar accepts again.
    const z = t.manager.zones.list()[0]!;
    await t.admin.call('POST', `/v1/zones/${z.id}/dissolve`, { reason: 'fix' });
    await c.waitForVersion((v) => v > good);
  } finally {
    await c.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('fail static: with the manager down, a restarted sidecar enforces its last good snapshot, then resumes', async () => {
  const t = await startTestManager();
  const dir = await tmp();
  const target = new Target();
  const token = await t.token();
  const c = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target, bootstrapToken: token, backoffBaseMs: 20, backoffMaxMs: 200 });
  const z = await t.admin.call<{ id: string }>('POST', '/v1/zones', { type: 'containment', members: [{ service: 'reviews' }], reason: 'keep me' });
  await until(() => zoneIds(target).includes(z.id), 5000, 'zone applied');
  const version = c.version;
  await until(async () => JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8')).version === version, 5000, 'snapshot persisted');
  await c.close();
  const port = t.manager.port;
  await t.close(true);

  // Manager down: a fresh sidecar process (new target) starts from disk.
  const target2 = new Target();
  const metrics = createRegistry();
  const c2 = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target: target2, backoffBaseMs: 20, backoffMaxMs: 200, metrics });
  try {
    assert.equal(target2.version, version);
    assert.deepEqual(zoneIds(target2), [z.id]);
    assert.equal(c2.connected, false);
    assert.match(await metrics.metrics(), /etz_control_plane_connected 0/);
    // The manager comes back on the same port: the client reconnects with its certificate
    // (no token this time) and gets the manager's state, which still holds the zone.
    const back = await startTestManager({ listen: { host: '127.0.0.1', port } }, { dataDir: t.dataDir });
    try {
      await until(() => c2.connected, 10_000, 'reconnected');
      await c2.waitForVersion((v) => v > version);
      assert.deepEqual(zoneIds(target2), [z.id]);
    } finally {
      await c2.close();
      await back.close();
    }
  } finally {
    await c2.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('reconnect after the stream drops resumes from the last ACKed version without a new snapshot', async () => {
  const t = await startTestManager();
  const dir = await tmp();
  const target = new Target();
  const c = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target, bootstrapToken: await t.token(), backoffBaseMs: 10, backoffMaxMs: 50 });
  try {
    await c.waitForVersion((v) => v > 0);
    await until(() => t.manager.hub.status()[0]?.state === 'acked', 5000, 'acked');
    const applied = target.applied.length;
    const snapshots = t.manager.hub.stats.snapshots;
    const reconnects = c.stats.reconnects;
    // The network drops the connection under the client.
    (c as unknown as { ws: { terminate(): void } }).ws.terminate();
    await until(() => c.stats.reconnects > reconnects && c.connected && t.manager.hub.status()[0]?.state === 'acked', 10_000, 'resumed');
    assert.equal(target.applied.length, applied, 'nothing re-applied');
    assert.equal(t.manager.hub.stats.snapshots, snapshots, 'no new snapshot sent');
    // And changes made after the resume still arrive as deltas.
    await t.admin.call('POST', '/v1/zones', { type: 'isolation', members: [{ service: 'reviews' }], reason: 'after resume' });
    await until(() => target.applied.length === applied + 1, 5000, 'delta applied');
    assert.equal(t.manager.hub.stats.snapshots, snapshots);
  } finally {
    await c.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('telemetry batcher: batches by size and time, drops oldest when full and reports the drops', () => {
  const sent: Array<{ n: number; first: unknown; dropped: number }> = [];
  let up = false;
  const b = new TelemetryBatcher({ capacity: 5, maxBatch: 3, flushMs: 60_000, send: (recs, dropped) => (up ? (sent.push({ n: recs.length, first: recs[0], dropped }), true) : false) });
  try {
    for (let i = 0; i < 8; i++) b.record({ i } as never);
    assert.equal(b.size, 5);
    assert.equal(b.stats.dropped, 3);
    up = true;
    b.flush();
    assert.deepEqual(sent.map((s) => s.n), [3, 2]);
    assert.deepEqual(sent[0]!.first, { i: 3 }, 'the oldest were dropped');
    assert.equal(sent[0]!.dropped, 3);
    assert.equal(sent[1]!.dropped, 0);
    assert.equal(b.size, 0);
  } finally {
    b.close();
  }
});

test('telemetry reaches the manager through the client, attributed to the sidecar', async () => {
  const t = await startTestManager();
  const dir = await tmp();
  const got: unknown[] = [];
  t.manager.setRiskSink({ ingest: (r) => got.push(r) });
  const c = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target: new Target(), bootstrapToken: await t.token(), telemetry: { flushMs: 50, maxBatch: 100 } });
  try {
    await until(() => c.connected, 5000, 'connected');
    for (let i = 0; i < 10; i++) {
      c.telemetry.record({ ts: new Date().toISOString(), source: { service: 'productpage' }, destination: { service: 'reviews' }, method: 'GET', path: `/r/${i}`, status: 200, durationMs: 1 });
    }
    await until(() => got.length === 10, 5000, 'records ingested');
  } finally {
    await c.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('certificate renewal over the stream: new key and certificate saved', async () => {
  const t = await startTestManager({ certTtl: '4s' });
  const dir = await tmp();
  const c = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target: new Target(), bootstrapToken: await t.token(), renewAt: 0.25, heartbeatMs: 100 });
  try {
    const oldCert = await (async () => {
      await until(() => c.connected, 5000, 'connected');
      return c.credentials!.certPem;
    })();
    await new Promise((r) => c.once('renewed', r));
    assert.notEqual(c.credentials!.certPem, oldCert);
    assert.equal(await readFile(join(dir, 'cert-chain.pem'), 'utf8'), c.credentials!.certPem);
    const audit = await t.admin.call<{ entries: unknown[] }>('GET', '/v1/audit?action=cert.renew');
    assert.ok(audit.entries.length >= 1);
  } finally {
    await c.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});
