import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { initCa, issueWorkloadCert, type CaMaterial } from '../../src/identity/index.js';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import { attachInboundMtls, peerOfSocket } from '../../src/sidecar/tls/inbound.js';
import { WorkloadIdentity } from '../../src/sidecar/tls/workload-identity.js';
import { craftCert, echoServer, listen, materialFor, memoryLogger, tlsGet, waitFor } from './mtls-fixtures.js';

const SERVER_ID = 'spiffe://etz.local/ns/default/sa/reviews';
const CLIENT_ID = 'spiffe://etz.local/ns/default/sa/productpage';

let ca: CaMaterial;
let client: { cert: string; key: string };
let strict: { server: Server; port: number; metrics: Registry; lines: Array<Record<string, unknown>>; seen: Array<string | undefined> };
let dir: string;

async function failures(metrics: Registry, reason: string): Promise<number> {
  const m = (await metrics.getSingleMetric('etz_tls_handshake_failures_total')!.get()).values.find((v) => v.labels.reason === reason && v.labels.direction === 'inbound');
  return m?.value ?? 0;
}

before(async () => {
  ca = await initCa({ trustDomain: 'etz.local', intermediate: true });
  const c = await issueWorkloadCert(ca, CLIENT_ID);
  client = { cert: c.certChainPem, key: c.keyPem };
  const identity = new WorkloadIdentity(await materialFor(ca, SERVER_ID));
  const metrics = createRegistry();
  const { logger, lines } = memoryLogger();
  const seen: Array<string | undefined> = [];
  const server = echoServer((req, res) => {
    seen.push(peerOfSocket(req.socket)?.spiffeId);
    res.end(`hello ${peerOfSocket(req.socket)?.serviceAccount ?? 'anonymous'}`);
  });
  attachInboundMtls(server, { mode: 'STRICT', identity, metrics, logger });
  strict = { server, port: await listen(server), metrics, lines, seen };
  dir = await mkdtemp(join(tmpdir(), 'etz-mtls-'));
});

after(async () => {
  strict.server.closeAllConnections();
  await new Promise((r) => strict.server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const trust = () => ({ ca: ca.trustBundlePem, checkServerIdentity: () => undefined });

test('STRICT: a mesh client certificate is accepted and its identity reaches the handler', async () => {
  const r = await tlsGet(strict.port, { ...trust(), cert: client.cert, key: client.key });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hello productpage');
  assert.equal(strict.seen.at(-1), CLIENT_ID);
});

test('STRICT refuses: no client certificate, other CA, expired, several URI SANs, foreign trust domain', async () => {
  const other = await initCa({ trustDomain: 'etz.local' });
  const foreign = await issueWorkloadCert(other, CLIENT_ID);
  const expired = await craftCert(ca, { uris: [CLIENT_ID], notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  const several = await craftCert(ca, { uris: [CLIENT_ID, 'spiffe://etz.local/ns/default/sa/admin'], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000) });
  const otherDomain = await craftCert(ca, { uris: ['spiffe://evil.example/ns/default/sa/x'], notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000) });
  const cases: Array<[string, Record<string, unknown>]> = [
    ['no_client_cert', {}],
    ['untrusted', { cert: foreign.certChainPem, key: foreign.keyPem }],
    ['expired', { cert: expired.certPem, key: expired.keyPem }],
    ['bad_identity', { cert: several.certPem, key: several.keyPem }],
    ['foreign_trust_domain', { cert: otherDomain.certPem, key: otherDomain.keyPem }],
  ];
  const handled = strict.seen.length;
  for (const [reason, opts] of cases) {
    const beforeCount = await failures(strict.metrics, reason);
    const linesBefore = strict.lines.filter((l) => l.reason === reason).length;
    await assert.rejects(tlsGet(strict.port, { ...trust(), ...opts }), `${reason} must be refused`);
    await waitFor(async () => (await failures(strict.metrics, reason)) === beforeCount + 1);
    await waitFor(() => strict.lines.filter((l) => l.reason === reason).length === linesBefore + 1);
  }
  assert.equal(strict.seen.length, handled, 'no refused connection reached the application');
  const line = strict.lines.find((l) => l.reason === 'expired')!;
  assert.equal(line.code, 'ETZ_ERR_TLS_REFUSED');
  assert.match(String(line.detail), /CERT_HAS_EXPIRED/);
});

test('STRICT refuses a TLS 1.2 client', async () => {
  const beforeCount = await failures(strict.metrics, 'protocol_version');
  await assert.rejects(tlsGet(strict.port, { ...trust(), cert: client.cert, key: client.key, maxVersion: 'TLSv1.2' }));
  await waitFor(async () => (await failures(strict.metrics, 'protocol_version')) === beforeCount + 1);
});

test('STRICT answers plaintext HTTP with 400 ETZ_ERR_MTLS_REQUIRED and forwards nothing', async () => {
  const handled = strict.seen.length;
  const text = await new Promise<string>((resolve, reject) => {
    const s = netConnect(strict.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    let d = '';
    s.on('data', (c) => (d += c));
    s.on('close', () => resolve(d));
    s.on('error', reject);
  });
  assert.match(text, /^HTTP\/1\.1 400 /);
  assert.match(text, /ETZ_ERR_MTLS_REQUIRED/);
  assert.equal(strict.seen.length, handled);
  assert.equal(await failures(strict.metrics, 'plaintext'), 1);
});

test('PERMISSIVE serves mTLS and plaintext on one port; DISABLE installs nothing', async (t) => {
  const identity = new WorkloadIdentity(await materialFor(ca, SERVER_ID));
  const server = echoServer((req, res) => res.end(`${req.socket.constructor.name}:${peerOfSocket(req.socket)?.spiffeId ?? '-'}`));
  attachInboundMtls(server, { mode: 'PERMISSIVE', identity });
  const port = await listen(server);
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const tlsRes = await tlsGet(port, { ...trust(), cert: client.cert, key: client.key });
  assert.equal(tlsRes.body, `TLSSocket:${CLIENT_ID}`);
  const plain = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await plain.text(), 'Socket:-');
  // A TLS peer without a valid certificate is still refused in PERMISSIVE.
  await assert.rejects(tlsGet(port, trust()));
  const h = attachInboundMtls(echoServer(), { mode: 'DISABLE', identity });
  assert.equal(h.tlsServer, null);
});

function run(cmd: string, args: string[], input?: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }));
    p.stdin?.end(input ?? '');
  });
}

test('interop: curl --cert --key --cacert and openssl s_client complete the handshake', async () => {
  await writeFile(join(dir, 'cert.pem'), client.cert);
  await writeFile(join(dir, 'key.pem'), client.key, { mode: 0o600 });
  await writeFile(join(dir, 'ca.pem'), ca.trustBundlePem);
  // The server's certificate has no DNS name (SPIFFE only), so curl checks the chain, not the host.
  const curl = await run('curl', ['-sS', '--cert', join(dir, 'cert.pem'), '--key', join(dir, 'key.pem'), '--cacert', join(dir, 'ca.pem'),
    '--tlsv1.3', '--resolve', `reviews:${strict.port}:127.0.0.1`, '-k', `https://reviews:${strict.port}/`]);
  assert.equal(curl.code, 0, curl.out);
  assert.equal(curl.out, 'hello productpage');
  const noCert = await run('curl', ['-sS', '--cacert', join(dir, 'ca.pem'), '-k', `https://127.0.0.1:${strict.port}/`]);
  assert.notEqual(noCert.code, 0);

  const sc = await run('openssl', ['s_client', '-connect', `127.0.0.1:${strict.port}`, '-cert', join(dir, 'cert.pem'), '-cert_chain', join(dir, 'cert.pem'), '-key', join(dir, 'key.pem'),
    '-CAfile', join(dir, 'ca.pem'), '-verify_return_error', '-brief', '-ign_eof'], 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
  assert.equal(sc.code, 0, sc.out);
  assert.match(sc.out, /Protocol version: TLSv1\.3/);
  assert.match(sc.out, /Ciphersuite: TLS_AES_256_GCM_SHA384/);
  assert.match(sc.out, /Verification: OK/);
  assert.match(sc.out, /hello productpage/);
});
