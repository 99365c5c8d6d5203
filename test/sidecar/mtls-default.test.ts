import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { ConfigError } from '../../src/core/errors.js';
import { nullLogger } from '../../src/core/logger.js';
import { createRegistry } from '../../src/core/metrics.js';
import { initCa, issueWorkloadCert, type CaMaterial } from '../../src/identity/index.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { tlsMaterialFromPem } from '../../src/sidecar/tls/material.js';
import { WorkloadIdentity } from '../../src/sidecar/tls/workload-identity.js';
import { rawExchange, startUpstream, statusOf, type Upstream } from './helpers.js';

// STRICT mTLS is the default: no `tls` section means mTLS, plaintext only when asked for by name.

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
const RV = 'spiffe://etz.local/ns/default/sa/reviews';
let dir: string;
let app: Upstream;
let ca: CaMaterial;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-mtls-default-'));
  app = await startUpstream();
  ca = await initCa({ trustDomain: 'etz.local' });
});

after(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

function bare(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    service: { name: 'reviews' },
    inbound: { host: '127.0.0.1', port: 0, appPort: app.port },
    outbound: { port: 0 },
    admin: { enabled: false },
    logging: { level: 'silent' },
    ...extra,
  };
}

test('no tls section and no identity: start is refused at /tls, naming the source and how to fix it', async () => {
  await assert.rejects(Sidecar.start(bare(), { logger: nullLogger, registry: createRegistry(), source: 'reviews.yaml' }), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.file, 'reviews.yaml');
    assert.equal(e.field, '/tls');
    assert.match(e.message, /STRICT by default/);
    assert.match(e.message, /certFile/);
    assert.match(e.message, /caDir/);
    assert.match(e.message, /manager/);
    assert.match(e.message, /tls\.mode: DISABLE/);
    return true;
  });
  // PERMISSIVE still accepts mTLS, so it needs an identity as much as STRICT does.
  await assert.rejects(Sidecar.start(bare({ tls: { mode: 'PERMISSIVE' } }), { logger: nullLogger, registry: createRegistry() }), (e: unknown) =>
    e instanceof ConfigError && e.field === '/tls' && /PERMISSIVE but/.test(e.message));
  // Half of the static material is no identity either, whatever the mode.
  await assert.rejects(Sidecar.start(bare({ tls: { mode: 'DISABLE', certFile: 'cert.pem' } }), { logger: nullLogger, registry: createRegistry() }), (e: unknown) =>
    e instanceof ConfigError && e.field === '/tls' && /keyFile and caFile missing/.test(e.message));
});

function etz(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

test('etz sidecar without an identity exits 2 naming the file and /tls, at start and with --check', async () => {
  const file = join(dir, 'no-identity.yaml');
  await writeFile(file, `service: { name: reviews }\ninbound: { host: 127.0.0.1, port: 0, appPort: ${app.port} }\noutbound: { port: 0 }\nadmin: { port: 0 }\n`);
  const expected = new RegExp(`^etz: invalid config: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: /tls: mTLS is STRICT by default but the sidecar has no identity.*\\[ETZ_ERR_CONFIG_INVALID\\]$`, 'm');
  for (const args of [['sidecar', '--config', file], ['sidecar', '--config', file, '--check']]) {
    const r = await etz(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, expected);
  }
  await writeFile(file, `service: { name: reviews }\ntls: { mode: DISABLE }\n`);
  const ok = await etz(['sidecar', '--config', file, '--check']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).tls.mode, 'DISABLE');
});

test('etz gateway --check: no identity source into the mesh is refused at /tls; the example config passes', async () => {
  const file = join(dir, 'gateway.yaml');
  await writeFile(file, 'service: { name: ingress-gateway }\ngateway: { host: 127.0.0.1, port: 0 }\n');
  const r = await etz(['gateway', '--config', file, '--check']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /gateway\.yaml: \/tls: mTLS is STRICT by default but the sidecar has no identity/);
  const example = fileURLToPath(new URL('../../../config/gateway.yaml', import.meta.url));
  const ok = await etz(['gateway', '--config', example, '--check']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).tls.mode, 'STRICT');
});

test('tls.mode: DISABLE said explicitly: plaintext works both ways and one warning says so', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = pino({ level: 'warn' }, sink);
  const s = await Sidecar.start(bare({ tls: { mode: 'DISABLE' }, registry: { ratings: { endpoints: [{ address: '127.0.0.1', port: app.port }] } } }), { logger, registry: createRegistry() });
  try {
    const inbound = await request(`http://127.0.0.1:${s.ports.inbound}/in`);
    assert.equal(inbound.statusCode, 200);
    assert.equal((await inbound.body.json() as { url: string }).url, '/in');
    const outbound = await request(`http://127.0.0.1:${s.ports.outbound}/out`, { headers: { host: 'ratings' } });
    assert.equal(outbound.statusCode, 200, 'outbound originates plaintext to a plain upstream');
    await outbound.body.text();
  } finally {
    await s.close({ drainMs: 100 });
  }
  const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40 && /not authenticated/.test(l.msg));
  assert.equal(warnings.length, 1, lines.join('\n'));
  assert.match(warnings[0]!.msg, /DISABLE/);
});

test('an identity in code and no tls section: inbound is STRICT (plaintext refused, mTLS served)', async () => {
  const issued = await issueWorkloadCert(ca, RV);
  const identity = new WorkloadIdentity(tlsMaterialFromPem(issued.certChainPem, issued.keyPem, issued.trustBundlePem));
  const s = await Sidecar.start(bare(), { identity, logger: nullLogger, registry: createRegistry() });
  const client = await issueWorkloadCert(ca, 'spiffe://etz.local/ns/default/sa/productpage');
  const agent = new Agent({ connect: { cert: client.certChainPem, key: client.keyPem, ca: issued.trustBundlePem, servername: 'reviews', checkServerIdentity: () => undefined } });
  try {
    const raw = await rawExchange(s.ports.inbound, 'GET / HTTP/1.1\r\nhost: reviews\r\n\r\n');
    assert.equal(statusOf(raw), 400, raw);
    assert.match(raw, /ETZ_ERR_MTLS_REQUIRED/);
    const seenBefore = app.seen.length;
    const r = await request(`https://127.0.0.1:${s.ports.inbound}/secure`, { dispatcher: agent });
    assert.equal(r.statusCode, 200);
    await r.body.text();
    assert.equal(app.seen.length, seenBefore + 1);
    assert.equal(app.seen.at(-1)!.headers['x-etz-peer-identity'], 'spiffe://etz.local/ns/default/sa/productpage');
  } finally {
    await agent.close();
    await s.close({ drainMs: 100 });
    identity.stop();
  }
});
