import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import type { RequestRecord } from '../../src/sidecar/telemetry.js';
import { startSidecar } from './helpers.js';
import { call, registryOf, startBackend } from './traffic-fixtures.js';

/**
 * Table 1 of Medarametla et al., "Systematic Behavioral Analysis and Adaptive Traffic Routing for
 * Services within Microservice Architecture Service Mesh": a user who sends more than 5 requests
 * within a minute is routed to reviews v1; every other user keeps reaching v2 and v3. Here with
 * real reviews v1/v2/v3 servers behind a real sidecar's outbound listener (the productpage side).
 */

const routes = {
  rules: [
    {
      name: 'reviews',
      hosts: ['reviews'],
      route: [
        { subset: { version: 'v2' }, weight: 50 },
        { subset: { version: 'v3' }, weight: 50 },
      ],
      suspicious: { subset: { version: 'v1' } },
    },
  ],
};

test('Table 1: the malicious user is served only by v1 once detected, the others only by v2/v3', async () => {
  const backends = await Promise.all(['v1', 'v2', 'v3'].map((v) => startBackend(v, 'ok')));
  const records: RequestRecord[] = [];
  const sidecar = await startSidecar(
    1,
    { service: { name: 'productpage', version: 'v1' }, inbound: { enabled: false }, registry: registryOf('reviews', backends), resources: { routes }, telemetry: { enabled: true } },
    { logger: nullLogger, registry: createRegistry(), telemetry: { record: (r) => records.push(r) } },
  );
  try {
    const port = sidecar.ports.outbound;
    const servedBy: Record<string, string[]> = { jason: [], alice: [], bob: [], carol: [] };
    // Interleaved: jason scrapes 12 times, the others browse 4 times each (never more than 5 per minute).
    for (let round = 0; round < 12; round++) {
      for (const user of ['jason', 'alice', 'bob', 'carol']) {
        if (user !== 'jason' && round >= 4) continue;
        const r = await call(port, 'reviews', { path: '/reviews/0', headers: { 'x-etz-principal': user, 'x-request-id': `${user}-${round}` } });
        assert.equal(r.status, 200);
        servedBy[user]!.push(r.headers['x-backend'] as string);
      }
    }
    // The first 5 of jason's requests are within the threshold; from the 6th on, v1 only.
    assert.ok(servedBy.jason!.slice(0, 5).every((v) => v === 'v2' || v === 'v3'), servedBy.jason!.join());
    assert.deepEqual(servedBy.jason!.slice(5), Array(7).fill('v1'));
    for (const u of ['alice', 'bob', 'carol']) {
      assert.equal(servedBy[u]!.length, 4);
      assert.ok(servedBy[u]!.every((v) => v === 'v2' || v === 'v3'), `${u}: ${servedBy[u]!.join()}`);
    }
    // Both safe versions serve the normal users.
    const normal = new Set(['alice', 'bob', 'carol'].flatMap((u) => servedBy[u]!));
    assert.deepEqual([...normal].sort(), ['v2', 'v3']);

    // Telemetry reports the reroutes (decision "rerouted") with the version that served them.
    const rerouted = records.filter((r) => r.decision === 'rerouted');
    assert.equal(rerouted.length, 7);
    for (const r of rerouted) {
      assert.equal(r.principal, 'jason');
      assert.equal(r.destination.service, 'reviews');
      assert.equal(r.destination.version, 'v1');
    }
    assert.ok(records.filter((r) => r.principal !== 'jason').every((r) => r.decision === 'allow'));
  } finally {
    await sidecar.close({ drainMs: 100 });
    await Promise.all(backends.map((b) => b.close()));
  }
});

test('a flag from the zone manager reroutes at once, and clearing it restores v2/v3', async () => {
  const backends = await Promise.all(['v1', 'v2', 'v3'].map((v) => startBackend(v, 'ok')));
  const sidecar = await startSidecar(
    1,
    { inbound: { enabled: false }, registry: registryOf('reviews', backends), resources: { routes } },
    { logger: nullLogger, registry: createRegistry() },
  );
  try {
    const port = sidecar.ports.outbound;
    const ask = async () => (await call(port, 'reviews', { headers: { 'x-etz-principal': 'mallory' } })).headers['x-backend'];
    assert.notEqual(await ask(), 'v1');
    await sidecar.applyResources({ routes, principals: { flagged: [{ principal: 'mallory', reason: 'credential stuffing' }] } }, 2);
    for (let i = 0; i < 3; i++) assert.equal(await ask(), 'v1');
    await sidecar.applyResources({ routes, principals: [] }, 3);
    assert.notEqual(await ask(), 'v1');
    // A malformed principals push is refused and the previous version stays in force.
    await assert.rejects(sidecar.applyResources({ routes, principals: { flagged: [{ reason: 'no name' }] } }, 4), /principals/);
    assert.equal(sidecar.configVersion, 3);
  } finally {
    await sidecar.close({ drainMs: 100 });
    await Promise.all(backends.map((b) => b.close()));
  }
});
