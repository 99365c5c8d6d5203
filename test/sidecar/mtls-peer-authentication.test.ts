// Inbound mTLS modes pushed as the `peerAuthentication` resource and applied live on one real
// sidecar: real sockets, certificates from etz's CA. A version changes the mode new connections
// get; open connections keep the mode they were accepted under; a bad version is refused (what the
// control client NACKs) and the previous modes stay in force.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { ConfigError, EtzError } from '../../src/core/errors.js';
import { nullLogger } from '../../src/core/logger.js';
import { createRegistry } from '../../src/core/metrics.js';
import { initCa, issueWorkloadCert, type CaMaterial } from '../../src/identity/index.js';
import { ResourceService } from '../../src/manager/resources.js';
import { ConfigHub } from '../../src/manager/pubsub/hub.js';
import { WalStore } from '../../src/manager/store/wal-store.js';
import { emptyResources, parseManagerMessage, peerAuthenticationError } from '../../src/protocol/messages.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { WorkloadIdentity } from '../../src/sidecar/tls/workload-identity.js';
import { freePort } from '../../bench/common/child.js';
import { rawExchange, startUpstream, statusOf, type Upstream } from './helpers.js';
import { materialFor } from './mtls-fixtures.js';

const SERVER_ID = 'spiffe://etz.local/ns/default/sa/reviews';
const CLIENT_ID = 'spiffe://etz.local/ns/default/sa/productpage';

let ca: CaMaterial;
let app: Upstream;
let sidecar: Sidecar;
let agent: Agent;
let mainPort: number;
let extraPort: number;

before(async () => {
  ca = await initCa({ trustDomain: 'etz.local' });
  app = await startUpstream();
  const c = await issueWorkloadCert(ca, CLIENT_ID);
  agent = new Agent({ connect: { cert: c.certChainPem, key: c.keyPem, ca: ca.trustBundlePem, checkServerIdentity: () => undefined } });
  const identity = new WorkloadIdentity(await materialFor(ca, SERVER_ID));
  for (let attempt = 0; ; attempt++) {
    extraPort = await freePort();
    try {
      // The file says STRICT everywhere; only pushes loosen it.
      sidecar = await Sidecar.start({
        service: { name: 'reviews', version: 'v1' },
        inbound: { host: '127.0.0.1', port: 0, appPort: app.port, extraPorts: [extraPort] },
        outbound: { enabled: false },
        admin: { enabled: false },
        logging: { level: 'silent' },
        tls: { mode: 'STRICT' },
      }, { identity, logger: nullLogger, registry: createRegistry() });
      mainPort = sidecar.ports.inbound;
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 4) throw err;
    }
  }
});

after(async () => {
  await agent?.close();
  await sidecar?.close({ drainMs: 100 });
  await app?.close();
});

async function plainStatus(port: number, path: string): Promise<number> {
  return statusOf(await rawExchange(port, `GET ${path} HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n`));
}

async function mtlsStatus(port: number, path: string): Promise<number> {
  const r = await request(`https://127.0.0.1:${port}${path}`, { dispatcher: agent });
  await r.body.text();
  return r.statusCode;
}

/** One keep-alive plaintext connection; each call sends a request and reads its whole response. */
function keepAlive(port: number): { get(path: string): Promise<number>; close(): void } {
  const sock: Socket = connect(port, '127.0.0.1');
  sock.on('error', () => {});
  let buf = '';
  sock.on('data', (d: Buffer) => { buf += d.toString('latin1'); });
  return {
    async get(path) {
      if (sock.connecting) await once(sock, 'connect');
      buf = '';
      sock.write(`GET ${path} HTTP/1.1\r\nhost: reviews\r\n\r\n`);
      for (let i = 0; i < 500; i++) {
        const m = /^HTTP\/1\.1 (\d{3})[\s\S]*?\r\ncontent-length: (\d+)\r\n[\s\S]*?\r\n\r\n/i.exec(buf);
        if (m && buf.length >= buf.indexOf('\r\n\r\n') + 4 + Number(m[2])) return Number(m[1]);
        if (sock.destroyed) return statusOf(buf);
        await new Promise((r) => setTimeout(r, 10));
      }
      return statusOf(buf);
    },
    close: () => sock.destroy(),
  };
}

test('a pushed PERMISSIVE port takes plaintext on new connections without a restart; pushing STRICT back refuses them again while an open connection keeps its mode', async () => {
  assert.equal(await plainStatus(extraPort, '/before'), 400, 'the file says STRICT');
  const seen = app.seen.length;

  await sidecar.applyResources({ peerAuthentication: { portLevel: { [String(extraPort)]: 'PERMISSIVE' } } }, 1);
  assert.equal(sidecar.configVersion, 1);
  assert.equal(await plainStatus(extraPort, '/permissive-plain'), 200);
  assert.ok(app.seen.length > seen && app.seen.at(-1)!.headers['x-etz-peer-identity'] === undefined, 'served, without an identity');
  assert.equal(await plainStatus(mainPort, '/main-plain'), 400, 'only the named port changed');
  assert.equal(await mtlsStatus(extraPort, '/permissive-mtls'), 200, 'mTLS still works there');
  assert.equal(app.seen.at(-1)!.headers['x-etz-peer-identity'], CLIENT_ID);

  const open = keepAlive(extraPort);
  try {
    assert.equal(await open.get('/open-1'), 200);
    await sidecar.applyResources({ peerAuthentication: { portLevel: { [String(extraPort)]: 'STRICT' } } }, 2);
    assert.equal(await plainStatus(extraPort, '/strict-again'), 400, 'a new connection gets STRICT');
    assert.equal(app.seen.some((r) => r.url === '/strict-again'), false, 'and is never forwarded');
    assert.equal(await open.get('/open-2'), 200, 'the connection accepted under PERMISSIVE keeps it (as in Istio)');
  } finally {
    open.close();
  }
  assert.equal(await mtlsStatus(extraPort, '/strict-mtls'), 200);
});

test('a bad push is refused naming the field (NACK) and the previous modes stay in force; an absent resource means the file\'s modes', async () => {
  await sidecar.applyResources({ peerAuthentication: { mode: 'PERMISSIVE' } }, 3);
  assert.equal(await plainStatus(mainPort, '/workload-permissive'), 200, 'the workload-wide mode is pushed too');
  assert.equal(await plainStatus(extraPort, '/workload-permissive-extra'), 200);

  for (const [bad, field] of [
    [{ portLevel: { [String(extraPort)]: 'LAX' } }, `/resources/peerAuthentication/portLevel/${extraPort}`],
    [{ portLevel: { 70000: 'DISABLE' } }, '/resources/peerAuthentication/portLevel/70000'],
    [{ mode: 'OFF' }, '/resources/peerAuthentication/mode'],
    [{ mtls: 'STRICT' }, '/resources/peerAuthentication'],
  ] as const) {
    await assert.rejects(sidecar.applyResources({ peerAuthentication: bad }, 4), (e: unknown) => e instanceof ConfigError && e.field.startsWith(field), JSON.stringify(bad));
  }
  assert.equal(sidecar.configVersion, 3, 'still on the version before');
  assert.equal(await plainStatus(mainPort, '/still-permissive'), 200, 'the previous modes stay in force');

  await sidecar.applyResources({}, 5);
  assert.equal(await plainStatus(mainPort, '/back-to-file'), 400);
  assert.equal(await plainStatus(extraPort, '/back-to-file-extra'), 400);
  assert.equal(app.seen.some((r) => r.url.startsWith('/back-to-file')), false);
});

test('a sidecar without an identity (tls.mode: DISABLE) refuses a push that needs mTLS, and takes one that does not', async () => {
  const plain = await Sidecar.start({
    service: { name: 'legacy', version: 'v1' },
    inbound: { host: '127.0.0.1', port: 0, appPort: app.port },
    outbound: { enabled: false },
    admin: { enabled: false },
    logging: { level: 'silent' },
    tls: { mode: 'DISABLE' },
  }, { logger: nullLogger, registry: createRegistry() });
  try {
    const port = plain.ports.inbound;
    await assert.rejects(plain.applyResources({ peerAuthentication: { mode: 'STRICT' } }, 1), (e: unknown) => e instanceof ConfigError && /no identity/.test(e.message));
    await assert.rejects(plain.applyResources({ peerAuthentication: { portLevel: { 9090: 'PERMISSIVE' } } }, 1), /no identity/);
    assert.equal(plain.configVersion, 0);
    assert.equal(await plainStatus(port, '/legacy'), 200, 'still serving plaintext');
    await plain.applyResources({ peerAuthentication: { mode: 'DISABLE' } }, 2);
    assert.equal(plain.configVersion, 2);
  } finally {
    await plain.close({ drainMs: 100 });
  }
});

test('protocol: a snapshot may leave `peerAuthentication` out (older manager); the shared check names the field', () => {
  const { peerAuthentication: _p, ...older } = emptyResources();
  assert.doesNotThrow(() => parseManagerMessage(JSON.stringify({ type: 'snapshot', version: 1, nonce: 'a', resources: older })));
  assert.doesNotThrow(() => parseManagerMessage(JSON.stringify({ type: 'snapshot', version: 2, nonce: 'b', resources: { ...older, peerAuthentication: { mode: 'STRICT' } } })));
  assert.equal(peerAuthenticationError({ mode: 'STRICT', portLevel: { 9090: 'PERMISSIVE' } }), undefined);
  assert.equal(peerAuthenticationError({}), undefined);
  assert.match(peerAuthenticationError({ portLevel: { '08080': 'STRICT' } })!, /^\/portLevel\/08080: is not a port/);
  assert.match(peerAuthenticationError([])!, /^\/: must be an object/);
});

test('manager: PUT of a bad peerAuthentication is refused with 400 and nothing is stored or pushed; a good one is stored and merged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-peerauthn-'));
  const hub = new ConfigHub({ debounceMs: 0 });
  const store = await WalStore.open({ dir });
  try {
    const svc = new ResourceService(store, hub);
    for (const bad of [{ mode: 'LAX' }, { portLevel: { 0: 'STRICT' } }, { portLevel: { 9090: 'OFF' } }, { extra: 1 }, ['STRICT']]) {
      await assert.rejects(svc.set('mesh', 'peerAuthentication', bad), (e: unknown) => e instanceof EtzError && e.status === 400 && /peerAuthentication/.test(e.message), JSON.stringify(bad));
    }
    assert.deepEqual(svc.get('mesh', 'peerAuthentication'), []);
    assert.deepEqual(hub.view({ service: 'reviews', instance: 'reviews-0' }).peerAuthentication, []);

    const good = { mode: 'STRICT', portLevel: { 9090: 'PERMISSIVE' } };
    await svc.set('mesh', 'peerAuthentication', good);
    assert.deepEqual(svc.get('mesh', 'peerAuthentication'), good);
    assert.deepEqual(hub.view({ service: 'reviews', instance: 'reviews-0' }).peerAuthentication, good);
    await svc.set('mesh', 'peerAuthentication', []);
    assert.deepEqual(hub.view({ service: 'reviews', instance: 'reviews-0' }).peerAuthentication, [], 'an empty list clears it');
  } finally {
    hub.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
