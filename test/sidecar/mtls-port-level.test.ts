// Per-port inbound mTLS modes (tls.portLevel, Istio's portLevelMtls) on one real sidecar: the
// workload is STRICT, one extra inbound port is PERMISSIVE and one DISABLE. Real sockets, real
// certificates from etz's CA, the identity header only where mTLS was used.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, connect as netConnect } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { ConfigError } from '../../src/core/errors.js';
import { nullLogger } from '../../src/core/logger.js';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import { initCa, issueWorkloadCert, type CaMaterial } from '../../src/identity/index.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { compilePortModes, modeOfConnection } from '../../src/sidecar/tls/port-modes.js';
import { WorkloadIdentity } from '../../src/sidecar/tls/workload-identity.js';
import { freePort } from '../../bench/common/child.js';
import { rawExchange, startUpstream, statusOf, type Upstream } from './helpers.js';
import { materialFor, tlsGet } from './mtls-fixtures.js';

const MAIN = new URL('../../src/cli/main.js', import.meta.url).pathname;
const SERVER_ID = 'spiffe://etz.local/ns/default/sa/reviews';
const CLIENT_ID = 'spiffe://etz.local/ns/default/sa/productpage';
const FORGED = 'spiffe://etz.local/ns/default/sa/admin';

let ca: CaMaterial;
let app: Upstream;
let sidecar: Sidecar;
let registry: Registry;
let agent: Agent;
let client: { cert: string; key: string };
let strictPort: number;
let permissivePort: number;
let disablePort: number;
let dir: string;

async function startPortLevelSidecar(): Promise<void> {
  const identity = new WorkloadIdentity(await materialFor(ca, SERVER_ID));
  // Another process may take a just-freed port between probe and bind: try again with new ones.
  for (let attempt = 0; ; attempt++) {
    permissivePort = await freePort();
    disablePort = await freePort();
    if (permissivePort === disablePort) continue;
    registry = createRegistry();
    try {
      sidecar = await Sidecar.start({
        service: { name: 'reviews', version: 'v1' },
        inbound: { host: '127.0.0.1', port: 0, appPort: app.port, extraPorts: [permissivePort, disablePort] },
        outbound: { enabled: false },
        admin: { enabled: false },
        logging: { level: 'silent' },
        tls: { mode: 'STRICT', portLevel: { [String(permissivePort)]: 'PERMISSIVE', [String(disablePort)]: 'DISABLE' } },
        // What the docs advise: the plaintext ports reach only their own paths.
        resources: { policies: [{
          apiVersion: 'etz.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'plaintext-ports-narrow', namespace: 'default' },
          spec: {
            action: 'ALLOW',
            rules: [
              { to: [{ notPorts: [permissivePort, disablePort] }] },
              { to: [{ ports: [permissivePort, disablePort], paths: ['/permissive*', '/disable*'] }] },
            ],
          },
        }] },
      }, { identity, logger: nullLogger, registry });
      strictPort = sidecar.ports.inbound;
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 4) throw err;
    }
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-port-level-'));
  ca = await initCa({ trustDomain: 'etz.local' });
  app = await startUpstream();
  const c = await issueWorkloadCert(ca, CLIENT_ID);
  client = { cert: c.certChainPem, key: c.keyPem };
  // The server certificate carries only a SPIFFE URI: the chain is checked, not a host name.
  agent = new Agent({ connect: { cert: client.cert, key: client.key, ca: ca.trustBundlePem, checkServerIdentity: () => undefined } });
  await startPortLevelSidecar();
});

after(async () => {
  await agent?.close();
  await sidecar?.close({ drainMs: 100 });
  await app?.close();
  await rm(dir, { recursive: true, force: true });
});

async function refusals(labels: Record<string, string>): Promise<number> {
  const values = (await registry.getSingleMetric('etz_tls_handshake_failures_total')!.get()).values;
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((n, v) => n + v.value, 0);
}

async function plainGet(port: number, path: string): Promise<string> {
  return rawExchange(port, `GET ${path} HTTP/1.1\r\nhost: reviews\r\nx-etz-peer-identity: ${FORGED}\r\nconnection: close\r\n\r\n`);
}

async function mtlsGet(port: number, path: string): Promise<number> {
  const r = await request(`https://127.0.0.1:${port}${path}`, { dispatcher: agent });
  await r.body.text();
  return r.statusCode;
}

function lastSeen(path: string) {
  const s = app.seen.findLast((r) => r.url === path);
  assert.ok(s, `${path} reached the application`);
  return s;
}

test('STRICT (workload-wide) port: plaintext refused and counted with mode and port, mTLS served with the identity', async () => {
  const before = app.seen.length;
  const raw = await plainGet(strictPort, '/strict-plain');
  assert.equal(statusOf(raw), 400, raw);
  assert.match(raw, /ETZ_ERR_MTLS_REQUIRED/);
  assert.equal(app.seen.length, before, 'plaintext on the STRICT port was never forwarded');
  assert.equal(await refusals({ direction: 'inbound', reason: 'plaintext', mode: 'STRICT', port: 'default' }), 1);

  assert.equal(await mtlsGet(strictPort, '/strict-mtls'), 200);
  assert.equal(lastSeen('/strict-mtls').headers['x-etz-peer-identity'], CLIENT_ID);
});

test('PERMISSIVE port: plaintext served without an identity (forged header stripped), mTLS served with it', async () => {
  const raw = await plainGet(permissivePort, '/permissive-plain');
  assert.equal(statusOf(raw), 200, raw);
  assert.equal(lastSeen('/permissive-plain').headers['x-etz-peer-identity'], undefined);

  assert.equal(await mtlsGet(permissivePort, '/permissive-mtls'), 200);
  assert.equal(lastSeen('/permissive-mtls').headers['x-etz-peer-identity'], CLIENT_ID);

  // A TLS peer must still prove itself on a PERMISSIVE port; the refusal names this port.
  await assert.rejects(tlsGet(permissivePort, { ca: ca.trustBundlePem, checkServerIdentity: () => undefined }));
  const port = String(permissivePort);
  for (let i = 0; i < 100 && (await refusals({ reason: 'no_client_cert', mode: 'PERMISSIVE', port })) === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await refusals({ reason: 'no_client_cert', mode: 'PERMISSIVE', port }), 1);
  assert.equal(await refusals({ reason: 'plaintext', port }), 0, 'plaintext is no refusal there');
});

test('DISABLE port: plaintext served without an identity; a TLS ClientHello is not answered as TLS', async () => {
  const raw = await plainGet(disablePort, '/disable-plain');
  assert.equal(statusOf(raw), 200, raw);
  assert.equal(lastSeen('/disable-plain').headers['x-etz-peer-identity'], undefined);

  const before = app.seen.length;
  const handshakes = async () => (await registry.getSingleMetric('etz_tls_handshakes_total')!.get()).values.reduce((n, v) => n + v.value, 0);
  const handshakesBefore = await handshakes();
  await assert.rejects(tlsGet(disablePort, { cert: client.cert, key: client.key, ca: ca.trustBundlePem, checkServerIdentity: () => undefined }));
  // What a TLS client gets back is a plaintext HTTP error from the parser, not a ServerHello.
  const hello = await clientHelloReply(disablePort);
  assert.notEqual(hello[0], 0x16, 'no TLS record came back');
  assert.match(hello.toString('latin1'), /^HTTP\/1\.1 400 /);
  assert.equal(app.seen.length, before, 'nothing reached the application');
  assert.equal(await handshakes(), handshakesBefore);
  assert.equal(await refusals({ port: String(disablePort) }), 0);
});

test('an authorization policy sees the extra port: the plaintext port reaches only its own paths', async () => {
  const before = app.seen.length;
  const raw = await plainGet(permissivePort, '/strict-api');
  assert.equal(statusOf(raw), 403, raw);
  assert.equal(app.seen.length, before);
  // The same path over mTLS on the STRICT port is allowed.
  assert.equal(await mtlsGet(strictPort, '/strict-api'), 200);
});

test('the port decides, not the connection order: the STRICT port still refuses plaintext after the others served it', async () => {
  const raw = await plainGet(strictPort, '/strict-again');
  assert.equal(statusOf(raw), 400);
  assert.equal(app.seen.some((r) => r.url === '/strict-again'), false);
});

/** The bytes a server sends back for a real ClientHello (taken from a TLS client's first write). */
async function clientHelloReply(port: number): Promise<Buffer> {
  const { connect: tlsConnect } = await import('node:tls');
  // Capture the ClientHello Node's TLS stack writes, by handing it a local socket pair.
  const hello = await new Promise<Buffer>((resolve, reject) => {
    const srv = createServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        srv.close();
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const t = tlsConnect({ host: '127.0.0.1', port: (srv.address() as { port: number }).port, rejectUnauthorized: false });
      t.on('error', () => {});
    });
    srv.on('error', reject);
  });
  assert.equal(hello[0], 0x16, 'a TLS handshake record');
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1', () => s.write(hello));
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
}

test('compilePortModes: overrides by port; keys and modes validated with the field named', () => {
  const m = compilePortModes('STRICT', { 9090: 'PERMISSIVE', 8081: 'DISABLE', 15006: 'STRICT' } as never, 'x.yaml');
  assert.equal(m.byPort.get(9090), 'PERMISSIVE');
  assert.equal(m.byPort.get(8081), 'DISABLE');
  assert.equal(m.byPort.has(15006), false, 'an override equal to the workload mode is dropped');
  assert.equal(m.needsTls, true);
  assert.equal(compilePortModes('DISABLE', { 9090: 'DISABLE' } as never, 'x').needsTls, false);
  assert.equal(compilePortModes('DISABLE', { 9090: 'STRICT' } as never, 'x').needsTls, true);
  for (const [key, mode, reason] of [['0', 'STRICT', /not a port/], ['65536', 'STRICT', /not a port/], ['08080', 'STRICT', /not a port/], ['http', 'STRICT', /not a port/], ['9090', 'LAX', /must be one of "STRICT", "PERMISSIVE", "DISABLE"/]] as const) {
    assert.throws(() => compilePortModes('STRICT', { [key]: mode } as never, 'x.yaml'), (e: unknown) =>
      e instanceof ConfigError && e.file === 'x.yaml' && e.field === `/tls/portLevel/${key}` && reason.test(e.message));
  }
});

test('modeOfConnection: a connection that was not redirected is judged by the local port it reached', async () => {
  const modes = compilePortModes('STRICT', { [String(permissivePort)]: 'PERMISSIVE' } as never, 'x');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const accepted = new Promise<import('node:net').Socket>((r) => srv.once('connection', r));
  const c = netConnect(port, '127.0.0.1');
  const s = await accepted;
  const cm = modeOfConnection(modes, s);
  assert.equal(cm.port, port);
  assert.equal(cm.mode, 'STRICT');
  assert.equal(cm.originalDst, null, 'looked up (there are overrides) and found not redirected');
  c.destroy();
  s.destroy();
  await new Promise((r) => srv.close(r));
});

test('a workload DISABLE with an mTLS port and no identity is refused at start, naming /tls', async () => {
  await assert.rejects(Sidecar.start({
    service: { name: 'reviews' },
    inbound: { host: '127.0.0.1', port: 0, appPort: app.port },
    outbound: { enabled: false },
    admin: { enabled: false },
    tls: { mode: 'DISABLE', portLevel: { 9443: 'STRICT' } },
  }, { logger: nullLogger, registry: createRegistry(), source: 'reviews.yaml' }), (e: unknown) =>
    e instanceof ConfigError && e.file === 'reviews.yaml' && e.field === '/tls' && /on for some ports \(tls\.portLevel\)/.test(e.message));
});

function etz(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 30_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
  });
}

test('etz sidecar: port 0, an unknown mode or a bad extra port exit 2 naming file, field and reason', async () => {
  const base = 'service: { name: reviews }\ninbound: { host: 127.0.0.1, port: 0, appPort: 8080 }\noutbound: { port: 0 }\nadmin: { port: 0 }\n';
  const cases: Array<[string, string, RegExp, string[]]> = [
    ['port0.yaml', `${base}tls: { mode: DISABLE, portLevel: { "0": PERMISSIVE } }\n`, /\/tls\/portLevel\/0: is not a port: port-level modes are keyed by a port number 1-65535/, []],
    ['port0-check.yaml', `${base}tls: { mode: DISABLE, portLevel: { "0": PERMISSIVE } }\n`, /\/tls\/portLevel\/0: is not a port/, ['--check']],
    ['mode.yaml', `${base}tls: { mode: DISABLE, portLevel: { "9090": LAX } }\n`, /\/tls\/portLevel\/9090: must be one of "STRICT", "PERMISSIVE", "DISABLE"/, []],
    ['extra.yaml', `service: { name: reviews }\ninbound: { port: 0, extraPorts: [0] }\ntls: { mode: DISABLE }\n`, /\/inbound\/extraPorts\/0: must be >= 1/, ['--check']],
  ];
  for (const [name, text, reason, extra] of cases) {
    const file = join(dir, name);
    await writeFile(file, text);
    const r = await etz(['sidecar', '--config', file, ...extra]);
    assert.equal(r.code, 2, `${name}: ${r.stderr}`);
    const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    assert.match(r.stderr, new RegExp(`^etz: invalid config: ${escaped}: ${reason.source}`, 'm'), name);
  }
});
