import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSidecarConfig } from '../../src/config/sidecar-schema.js';
import { startManagedSidecar } from '../../src/sidecar/control/bootstrap.js';
import { createRegistry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import { startTestManager, until } from '../manager/helpers.js';

// Threat intel pushed by a real zone manager to an enrolled sidecar: applied, and a bad list
// NACKed with the previous version kept; the locally configured riskScoring survives pushes.
test('intel from the zone manager reaches the chain, a bad intel push is NACKed, local riskScoring stays', async () => {
  const t = await startTestManager();
  const dir = await mkdtemp(join(tmpdir(), 'etz-intel-'));
  let managed: Awaited<ReturnType<typeof startManagedSidecar>> | undefined;
  try {
    const token = await t.token({ service: 'reviews' });
    const file = join(dir, 'sidecar.json');
    await writeFile(file, JSON.stringify({
      service: { name: 'reviews', version: 'v1', instance: 'reviews-0' },
      inbound: { host: '127.0.0.1', port: 0, appPort: 9 },
      outbound: { port: 0 },
      admin: { port: 0, token: 'test-admin-token-0123456789' },
      logging: { level: 'silent' },
      resources: { riskScoring: { enabled: true } },
      manager: { url: t.manager.url, caFile: t.manager.caFile, bootstrapToken: token, dataDir: join(dir, 'data') },
    }));
    const config = await loadSidecarConfig(file);
    managed = await startManagedSidecar({ ...config, manager: config.manager! }, { logger: nullLogger, registry: createRegistry() });
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
