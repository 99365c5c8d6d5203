import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCa, issueWorkloadCert, type CaMaterial } from '../../src/identity/index.js';
import { startSidecar, startUpstream } from './helpers.js';
import { craftCert, waitFor } from './mtls-fixtures.js';

const RV = 'spiffe://etz.local/ns/default/sa/reviews';
const PP = 'spiffe://etz.local/ns/default/sa/productpage';

async function writeSet(dir: string, ca: CaMaterial, cert: string, key: string): Promise<void> {
  // Atomic replace, the way an operator or a certificate controller should swap files.
  for (const [name, body] of [['key.pem', key], ['cert.pem', cert], ['ca.pem', ca.trustBundlePem]] as const) {
    await writeFile(join(dir, `${name}.tmp`), body, { mode: 0o600 });
    await rename(join(dir, `${name}.tmp`), join(dir, name));
  }
}

function servedSerial(port: number, ca: CaMaterial, client: { certChainPem: string; keyPem: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: ca.trustBundlePem, cert: client.certChainPem, key: client.keyPem, checkServerIdentity: () => undefined }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.destroy();
    });
    s.on('error', reject);
  });
}

test('static certificate files are hot-reloaded when replaced; an expired file is refused at start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-files-'));
  const app = await startUpstream((_req, res) => res.end('ok'));
  t.after(async () => {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });
  const ca = await initCa({ trustDomain: 'etz.local' });
  const first = await issueWorkloadCert(ca, RV);
  await writeSet(dir, ca, first.certChainPem, first.keyPem);
  const tls = { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), caFile: join(dir, 'ca.pem'), watchIntervalMs: 100 };
  const b = await startSidecar(app.port, { service: { name: 'reviews' }, tls });
  t.after(() => b.close({ drainMs: 50 }));
  const client = await issueWorkloadCert(ca, PP);
  assert.equal(await servedSerial(b.ports.inbound, ca, client), new X509Certificate(first.certPem).serialNumber);

  const second = await issueWorkloadCert(ca, RV);
  await writeSet(dir, ca, second.certChainPem, second.keyPem);
  const want = new X509Certificate(second.certPem).serialNumber;
  await waitFor(async () => (await servedSerial(b.ports.inbound, ca, client)) === want, 10_000);

  const expired = await craftCert(ca, { uris: [RV], notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  const old = join(dir, 'old');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(old);
  await writeSet(old, ca, expired.certPem, expired.keyPem);
  await assert.rejects(
    startSidecar(app.port, { service: { name: 'reviews' }, tls: { certFile: join(old, 'cert.pem'), keyFile: join(old, 'key.pem'), caFile: join(old, 'ca.pem') } }),
    /ETZ_ERR_TLS_MATERIAL|expired/,
  );
});
