import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { initCa, saveCa } from '../../src/identity/index.js';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import { startSidecar, startUpstream } from './helpers.js';

const RV = 'spiffe://etz.local/ns/default/sa/reviews';

async function counter(reg: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const values = (await reg.getSingleMetric(name)!.get()).values;
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

test('two sidecars with 2.5 s certificates under continuous load: rotations happen, zero failed requests', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-rot-'));
  await saveCa(join(dir, 'ca'), await initCa({ trustDomain: 'etz.local' }));
  const app = await startUpstream((_req, res) => res.end('ok'));
  const tls = { caDir: join(dir, 'ca'), certTtlMs: 2500 };
  const regB = createRegistry();
  const regA = createRegistry();
  const b = await startSidecar(app.port, { service: { name: 'reviews' }, tls }, { registry: regB });
  // Short upstream keep-alive on A, so new mTLS connections (on rotated certificates) keep
  // being made while requests are in flight on older ones.
  const a = await startSidecar(1, {
    service: { name: 'productpage' }, tls,
    upstream: { keepAliveMs: 200 },
    registry: { reviews: { endpoints: [{ address: '127.0.0.1', port: b.ports.inbound }], spiffeId: RV } },
  }, { registry: regA });
  const client = new Agent({ keepAliveTimeout: 1000, connections: 8 });
  t.after(async () => {
    await client.close();
    await a.close({ drainMs: 100 });
    await b.close({ drainMs: 100 });
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });

  let ok = 0;
  const failures: string[] = [];
  const end = Date.now() + 6000;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      try {
        const r = await request(`http://127.0.0.1:${a.ports.outbound}/`, { headers: { host: 'reviews' }, dispatcher: client });
        const body = await r.body.text();
        if (r.statusCode === 200 && body === 'ok') ok++;
        else failures.push(`${r.statusCode} ${body}`);
      } catch (err) {
        failures.push(String(err));
      }
      if (Math.random() < 0.1) await new Promise((r) => setTimeout(r, 250 + Math.random() * 100));
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failed requests`);
  assert.ok(ok > 200, `completed ${ok}`);
  assert.ok(await counter(regA, 'etz_cert_rotations_total', { outcome: 'ok' }) >= 2, 'sidecar A renewed at least twice');
  assert.ok(await counter(regB, 'etz_cert_rotations_total', { outcome: 'ok' }) >= 2, 'sidecar B renewed at least twice');
  assert.equal(await counter(regB, 'etz_tls_handshake_failures_total', {}), 0);
  assert.ok(await counter(regB, 'etz_tls_handshakes_total', {}) >= 3, 'new mTLS connections were made during the run');
});
