import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestManager, until } from '../manager/helpers.js';
import { startEnrolledSidecar, type ManagedSidecar } from './managed-fixtures.js';

// Threat intel pushed by a real zone manager to an enrolled sidecar: applied, and a bad list
// NACKed with the previous version kept; the locally configured riskScoring survives pushes.
test('intel from the zone manager reaches the chain, a bad intel push is NACKed, local riskScoring stays', async () => {
  const t = await startTestManager();
  const dir = await mkdtemp(join(tmpdir(), 'etz-intel-'));
  let managed: ManagedSidecar | undefined;
  try {
    managed = await startEnrolledSidecar(t, dir, { resources: { riskScoring: { enabled: true } } });
    const { sidecar } = managed;
    const chains = () => sidecar.configDump().chains as Record<string, string[]>;
    await until(() => sidecar.configVersion > 0, 10_000, 'first version applied');
    assert.ok(chains().outbound!.includes('risk-scoring'), 'the local riskScoring section survives the manager version');
    assert.ok(!chains().inbound!.includes('threat-intel'));

    await t.admin.call('PUT', '/v1/resources/intel', { items: [{ type: 'cidr', value: '203.0.113.0/24', severity: 'critical', source: 'ops' }] });
    await until(() => chains().inbound!.includes('threat-intel'), 10_000, 'intel in the chain');
    const good = sidecar.configVersion;
    assert.ok(chains().outbound!.includes('risk-scoring'));

    await t.admin.call('PUT', '/v1/resources/intel', { items: [{ type: 'cidr', value: '203.0.113.0/33', severity: 'critical' }] });
    await until(async () => {
      const st = await t.admin.call<{ items: Array<{ state: string }> }>('GET', '/v1/sidecars');
      return st.items[0]?.state === 'nacked';
    }, 10_000, 'nack');
    const st = await t.admin.call<{ items: Array<{ state: string; lastError?: string }> }>('GET', '/v1/sidecars');
    assert.match(st.items[0]!.lastError!, /intel\/0\/value/);
    assert.equal(sidecar.configVersion, good);
    assert.ok(chains().inbound!.includes('threat-intel'), 'the previous intel stays in force');
  } finally {
    await managed?.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});
