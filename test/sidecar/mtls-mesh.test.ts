import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { initCa, saveCa } from '../../src/identity/index.js';
import { createRegistry } from '../../src/core/metrics.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import { startSidecar, startUpstream, rawExchange, statusOf, delay, type Upstream } from './helpers.js';

const MAIN = resolve(fileURLToPath(import.meta.url), '../../../src/cli/main.js');
const PP = 'spiffe://etz.local/ns/default/sa/productpage';
const RV = 'spiffe://etz.local/ns/default/sa/reviews';

let dir: string;
let app: Upstream;
let seenIdentity: Array<string | undefined>;
let b: Sidecar;
let a: Sidecar;
const bRegistry = createRegistry();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-mesh-'));
  await saveCa(join(dir, 'ca'), await initCa({ trustDomain: 'etz.local' }));
  seenIdentity = [];
  app = await startUpstream((req, res) => {
    seenIdentity.push(req.headers['x-etz-peer-identity'] as string | undefined);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`app saw ${req.headers['x-etz-peer-identity'] ?? 'nobody'}`);
  });
  const tls = { caDir: join(dir, 'ca') };
  b = await startSidecar(app.port, { service: { name: 'reviews' }, tls }, { registry: bRegistry });
  a = await startSidecar(1, {
    service: { name: 'productpage' },
    tls,
    registry: {
      reviews: { endpoints: [{ address: '127.0.0.1', port: b.ports.inbound }], spiffeId: RV },
      impostor: { endpoints: [{ address: '127.0.0.1', port: b.ports.inbound }], spiffeId: 'spiffe://etz.local/ns/default/sa/ratings' },
    },
  });
});

after(async () => {
  await a?.close({ drainMs: 100 });
  await b?.close({ drainMs: 100 });
  await app?.close();
  await rm(dir, { recursive: true, force: true });
});

test('mesh path: client → sidecar A → mTLS → sidecar B → app, identity reaches the app, spoofed header stripped', async () => {
  const r = await request(`http://127.0.0.1:${a.ports.outbound}/reviews/1`, {
    headers: { host: 'reviews', 'x-etz-peer-identity': 'spiffe://etz.local/ns/default/sa/admin', 'X-Forwarded-Client-Cert': 'By=spiffe://x' },
  });
  assert.equal(r.statusCode, 200);
  assert.equal(await r.body.text(), `app saw ${PP}`);
  assert.deepEqual(seenIdentity.at(-1), PP);
  assert.equal(app.seen.at(-1)?.headers['x-forwarded-client-cert'], undefined);
});

test('a request arriving on B with a forged identity header (plaintext) is refused, never forwarded', async () => {
  const n = app.seen.length;
  const raw = await rawExchange(b.ports.inbound, `GET / HTTP/1.1\r\nhost: reviews\r\nx-etz-peer-identity: ${PP}\r\n\r\n`);
  assert.equal(statusOf(raw), 400);
  assert.match(raw, /ETZ_ERR_MTLS_REQUIRED/);
  assert.equal(app.seen.length, n);
  assert.match(await bRegistry.metrics(), /etz_tls_handshake_failures_total\{direction="inbound",reason="plaintext",mode="STRICT",port="default"\} 1/);
});

test('a destination whose sidecar proves another SPIFFE ID fails with 503 and a reason, nothing reaches the app', async () => {
  const n = app.seen.length;
  const r = await request(`http://127.0.0.1:${a.ports.outbound}/`, { headers: { host: 'impostor' } });
  const body = await r.body.text();
  assert.equal(r.statusCode, 503);
  assert.match(body, /ETZ_ERR_UPSTREAM_TLS/);
  assert.match(String(r.headers['x-etz-reason']), /presented 'spiffe:\/\/etz\.local\/ns\/default\/sa\/reviews', expected 'spiffe:\/\/etz\.local\/ns\/default\/sa\/ratings'/);
  assert.equal(app.seen.length, n);
});

test('keep-alive between the sidecars: many requests, few handshakes', async () => {
  const before = await handshakeCount();
  for (let i = 0; i < 40; i++) {
    const r = await request(`http://127.0.0.1:${a.ports.outbound}/x`, { headers: { host: 'reviews' } });
    await r.body.text();
    assert.equal(r.statusCode, 200);
  }
  assert.ok(before >= 1, 'the first test already made an mTLS connection');
  const added = (await handshakeCount()) - before;
  assert.ok(added <= 2, `40 requests needed ${added} new mTLS connections`);
});

async function handshakeCount(): Promise<number> {
  const values = (await bRegistry.getSingleMetric('etz_tls_handshakes_total')!.get()).values;
  return values.filter((v) => v.labels.direction === 'inbound').reduce((n, v) => n + v.value, 0);
}

test('config: an invalid tls section names the field; tls without an identity source is refused', async () => {
  await assert.rejects(startSidecar(1, { tls: { mode: 'SOMETIMES' } }), /\/tls\/mode/);
  await assert.rejects(startSidecar(1, { tls: { certFile: '/nonexistent' } }), /\/tls/);
  await assert.rejects(startSidecar(1, { tls: {} }), /\/tls: mTLS is STRICT but the sidecar has no identity.*tls\.mode: DISABLE explicitly/);
});

function etz(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((res) => execFile(process.execPath, [MAIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => res({ code: err ? 1 : 0, out: stdout + stderr })));
}

test('two etz sidecar processes with certificates from etz ca issue talk mTLS', async (t) => {
  const certs = join(dir, 'static');
  assert.equal((await etz(['ca', 'init', '--trust-domain', 'etz.local', '--out', certs])).code, 0);
  assert.equal((await etz(['ca', 'issue', '--spiffe', RV, '--ca', certs, '--out', join(certs, 'rv')])).code, 0);
  assert.equal((await etz(['ca', 'issue', '--spiffe', PP, '--ca', certs, '--out', join(certs, 'pp')])).code, 0);
  const tlsFor = (d: string) => `tls: { certFile: ${join(certs, d, 'cert.pem')}, keyFile: ${join(certs, d, 'key.pem')}, caFile: ${join(certs, d, 'ca.pem')} }\n`;
  const children: ChildProcess[] = [];
  t.after(() => children.forEach((c) => c.kill('SIGKILL')));
  const startChild = async (name: string, yaml: string): Promise<{ inbound: number; outbound: number }> => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, yaml);
    const child = spawn(process.execPath, [MAIN, 'sidecar', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c));
    for (let i = 0; i < 500; i++) {
      const m = /inbound :(\d+) outbound :(\d+)/.exec(stderr);
      if (m) return { inbound: Number(m[1]), outbound: Number(m[2]) };
      await delay(10);
    }
    throw new Error(`sidecar ${name} did not start: ${stderr}`);
  };
  const rv = await startChild('rv', `service: { name: reviews }\ninbound: { host: 127.0.0.1, port: 0, appPort: ${app.port} }\noutbound: { port: 0 }\nadmin: { enabled: false }\nlogging: { level: warn }\n${tlsFor('rv')}`);
  const pp = await startChild('pp', `service: { name: productpage }\ninbound: { host: 127.0.0.1, port: 0, appPort: 1 }\noutbound: { port: 0 }\nadmin: { enabled: false }\nlogging: { level: warn }\n${tlsFor('pp')}registry:\n  reviews: { endpoints: [{ address: 127.0.0.1, port: ${rv.inbound} }], spiffeId: "${RV}" }\n`);
  const r = await request(`http://127.0.0.1:${pp.outbound}/`, { headers: { host: 'reviews' } });
  assert.equal(r.statusCode, 200);
  assert.equal(await r.body.text(), `app saw ${PP}`);
  const plain = await rawExchange(rv.inbound, 'GET / HTTP/1.1\r\nhost: reviews\r\n\r\n');
  assert.equal(statusOf(plain), 400);
});

test('a revoked peer loses its idle mTLS connection at the policy change, before sending any request', async () => {
  const { connect } = await import('node:tls');
  const { issueWorkloadCert, loadCa } = await import('../../src/identity/index.js');
  const ca = await loadCa(join(dir, 'ca'));
  const pp = await issueWorkloadCert(ca, PP);
  const sock = await new Promise<import('node:tls').TLSSocket>((res, rej) => {
    const s = connect({ host: '127.0.0.1', port: b.ports.inbound, ca: ca.trustBundlePem, cert: pp.certChainPem, key: pp.keyPem, checkServerIdentity: () => undefined }, () => res(s));
    s.on('error', rej);
  });
  const closed = new Promise<void>((res) => sock.once('close', () => res()));
  await delay(50);
  assert.equal(sock.destroyed, false);
  const policy = { apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-pp' }, spec: { selector: { service: 'reviews' }, action: 'DENY', rules: [{ from: [{ principals: [PP] }] }] } };
  await b.applyResources({ policies: [policy] }, 1);
  await Promise.race([closed, delay(3000).then(() => assert.fail('the revoked peer kept its connection'))]);
  await b.applyResources({ policies: [] }, 2);
});
