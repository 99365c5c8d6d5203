import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestManager, until } from '../manager/helpers.js';
import { startEnrolledSidecar, type ManagedSidecar } from './managed-fixtures.js';

test('a real sidecar with a manager section enrolls, runs with the issued identity, applies zone pushes and NACKs a bad one', async () => {
  const t = await startTestManager();
  const dir = await mkdtemp(join(tmpdir(), 'etz-managed-'));
  let managed: ManagedSidecar | undefined;
  try {
    managed = await startEnrolledSidecar(t, dir);
    const { sidecar, control } = managed;
    assert.equal(control.credentials!.spiffeId, 'spiffe://etz.local/ns/default/sa/reviews');
    await until(() => sidecar.configVersion > 0 && t.manager.hub.status()[0]?.state === 'acked', 10_000, 'first version applied and ACKed');

    // A zone for this service reaches the sidecar's filter chain.
    const z = await t.admin.call<{ id: string }>('POST', '/v1/zones', { type: 'containment', members: [{ service: 'reviews' }], reason: 'integration' });
    await until(() => JSON.stringify(sidecar.configDump()).includes(z.id), 10_000, 'zone in the sidecar config');
    await until(() => t.manager.hub.listRollouts()[0]!.inForce, 10_000, 'rollout in force');
    const good = sidecar.configVersion;

    // A push the sidecar cannot load is NACKed; the sidecar stays on its version.
    await t.admin.call('PUT', '/v1/resources/rateLimits', { items: [{ nonsense: true }] });
    await until(() => t.manager.hub.listRollouts()[0]!.counts.nacked === 1, 10_000, 'nack');
    assert.equal(sidecar.configVersion, good);
    const st = await t.admin.call<{ items: Array<{ state: string; lastError?: string }> }>('GET', '/v1/sidecars');
    assert.equal(st.items[0]!.state, 'nacked');
    assert.match(st.items[0]!.lastError!, /rateLimits/);
  } finally {
    await managed?.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});
