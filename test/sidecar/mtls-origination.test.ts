import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { Pool } from 'undici';
import { initCa, issueWorkloadCert, rolloverCa, type CaMaterial } from '../../src/identity/index.js';
import { EtzError } from '../../src/core/errors.js';
import { createRegistry } from '../../src/core/metrics.js';
import { attachInboundMtls, peerOfSocket } from '../../src/sidecar/tls/inbound.js';
import { createMtlsConnector } from '../../src/sidecar/tls/outbound.js';
import { WorkloadIdentity } from '../../src/sidecar/tls/workload-identity.js';
import { tlsMaterialFromPem } from '../../src/sidecar/tls/material.js';
import { craftCert, echoServer, listen, materialFor, memoryLogger } from './mtls-fixtures.js';

const SERVER_ID = 'spiffe://etz.local/ns/default/sa/reviews';
const CLIENT_ID = 'spiffe://etz.local/ns/default/sa/productpage';

let ca: CaMaterial;
let clientIdentity: WorkloadIdentity;
const servers: Server[] = [];
const pools: Pool[] = [];

before(async () => {
  ca = await initCa({ trustDomain: 'etz.local' });
  clientIdentity = new WorkloadIdentity(await materialFor(ca, CLIENT_ID));
});

after(async () => {
  await Promise.all(pools.map((p) => p.destroy()));
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

async function upstream(identity: WorkloadIdentity): Promise<{ port: number; handshakes: TLSSocket[]; serials: string[]; server: Server }> {
  const handshakes: TLSSocket[] = [];
  const serials: string[] = [];
  const server = echoServer((req, res) => res.end(peerOfSocket(req.socket)?.spiffeId ?? '-'));
  server.on('connection', (s) => {
    handshakes.push(s as TLSSocket);
    serials.push((s as TLSSocket).getPeerCertificate().serialNumber);
  });
  attachInboundMtls(server, { mode: 'STRICT', identity });
  servers.push(server);
  return { port: await listen(server), handshakes, serials, server };
}

function pool(port: number, expected: string | undefined, opts: { metrics?: ReturnType<typeof createRegistry>; identity?: WorkloadIdentity; keepAliveMs?: number; connections?: number } = {}): Pool {
  const p = new Pool(`https://127.0.0.1:${port}`, {
    connections: opts.connections ?? 1,
    keepAliveTimeout: opts.keepAliveMs ?? 10_000,
    keepAliveMaxTimeout: opts.keepAliveMs ?? 10_000,
    connect: createMtlsConnector({ identity: opts.identity ?? clientIdentity, ...(opts.metrics ? { metrics: opts.metrics } : {}) }, expected, { timeout: 5000 }),
  });
  pools.push(p);
  return p;
}

async function get(p: Pool): Promise<string> {
  const r = await p.request({ path: '/', method: 'GET' });
  return r.body.text();
}

test('origination verifies the expected SPIFFE ID, reuses one connection and resumes TLS sessions', async () => {
  const up = await upstream(new WorkloadIdentity(await materialFor(ca, SERVER_ID)));
  const p = pool(up.port, SERVER_ID);
  for (let i = 0; i < 50; i++) assert.equal(await get(p), CLIENT_ID);
  assert.equal(up.handshakes.length, 1, 'fifty requests, one handshake');
  assert.equal(up.handshakes[0]!.isSessionReused(), false);
  // Drop the connection; the next one resumes the session from the ticket.
  up.server.closeAllConnections();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await get(p), CLIENT_ID);
  assert.equal(up.handshakes.length, 2);
  assert.equal(up.handshakes[1]!.isSessionReused(), true, 'second connection resumed');
});

test('a wrong SPIFFE ID, another CA or an expired upstream certificate fails with ETZ_ERR_UPSTREAM_TLS', async () => {
  const metrics = createRegistry();
  const { logger, lines } = memoryLogger();
  const right = await upstream(new WorkloadIdentity(await materialFor(ca, SERVER_ID)));
  const other = await initCa({ trustDomain: 'etz.local' });
  const foreign = await upstream(new WorkloadIdentity(await materialFor(other, SERVER_ID)));
  const exp = await craftCert(ca, { uris: [SERVER_ID], notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  // WorkloadIdentity takes expired material as given (a static file can be stale); the peer refuses it.
  const expired = await upstream(new WorkloadIdentity(tlsMaterialFromPem(exp.certPem, exp.keyPem, ca.trustBundlePem)));
  const cases: Array<[number, string, string]> = [
    [right.port, 'spiffe://etz.local/ns/default/sa/ratings', 'identity_mismatch'],
    [foreign.port, SERVER_ID, 'untrusted'],
    [expired.port, SERVER_ID, 'expired'],
  ];
  for (const [port, expected, reason] of cases) {
    const p = new Pool(`https://127.0.0.1:${port}`, { connections: 1, connect: createMtlsConnector({ identity: clientIdentity, metrics, logger }, expected, { timeout: 5000 }) });
    pools.push(p);
    await assert.rejects(get(p), (err: unknown) => {
      assert.ok(err instanceof EtzError, `got ${String(err)}`);
      assert.equal(err.code, 'ETZ_ERR_UPSTREAM_TLS');
      assert.equal(err.details?.reason, reason);
      return true;
    });
  }
  const text = await metrics.metrics();
  for (const [, , reason] of cases) assert.match(text, new RegExp(`etz_tls_handshake_failures_total\\{direction="outbound",reason="${reason}"\\} 1`));
  assert.equal(lines.filter((l) => l.code === 'ETZ_ERR_UPSTREAM_TLS').length, 3, 'one log line per refusal');
  assert.match(String(lines[0]!.detail), /presented 'spiffe:\/\/etz\.local\/ns\/default\/sa\/reviews', expected 'spiffe:\/\/etz\.local\/ns\/default\/sa\/ratings'/);
});

test('rotation under continuous load: short-lived certificates, zero failed requests', async () => {
  const metrics = createRegistry();
  const serverId = await WorkloadIdentity.fromLocalCa(ca, SERVER_ID, { ttlMs: 2500, metrics });
  const clientId = await WorkloadIdentity.fromLocalCa(ca, CLIENT_ID, { ttlMs: 2500, metrics });
  const up = await upstream(serverId);
  // Short client keep-alive so that fresh handshakes (with rotated certificates) keep happening
  // while other requests are in flight on older connections.
  const p = pool(up.port, SERVER_ID, { identity: clientId, keepAliveMs: 150, connections: 4 });
  const serverGen0 = serverId.generation;
  const clientGen0 = clientId.generation;
  let ok = 0;
  let failed = 0;
  const errors: string[] = [];
  const end = Date.now() + 6000;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      try {
        const body = await get(p);
        if (body === CLIENT_ID) ok++;
        else {
          failed++;
          errors.push(body);
        }
      } catch (err) {
        failed++;
        errors.push(String(err));
      }
      if (Math.random() < 0.2) await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  serverId.stop();
  clientId.stop();
  assert.equal(failed, 0, errors.slice(0, 3).join('; '));
  assert.ok(ok > 100, `requests completed: ${ok}`);
  assert.ok(serverId.generation - serverGen0 >= 2, `server rotated ${serverId.generation - serverGen0} times`);
  assert.ok(clientId.generation - clientGen0 >= 2, `client rotated ${clientId.generation - clientGen0} times`);
  const serials = new Set(up.serials);
  assert.ok(serials.size >= 2, `the server saw ${serials.size} distinct client certificates`);
  const expiry = (await metrics.getSingleMetric('etz_cert_expiry_timestamp_seconds')!.get()).values;
  const mine = expiry.find((v) => v.labels.identity === SERVER_ID)!;
  assert.equal(mine.value, Math.floor(serverId.current.notAfter / 1000));
  assert.match(await metrics.metrics(), /etz_cert_rotations_total\{identity="spiffe:\/\/etz\.local\/ns\/default\/sa\/reviews",outcome="ok"\} [1-9]/);
});

test('a failing renewal keeps the current certificate in force and is retried', async () => {
  let fail = true;
  const metrics = createRegistry();
  const good = await materialFor(ca, SERVER_ID, 60_000);
  const id = new WorkloadIdentity(good, {
    metrics,
    renew: async (req) => {
      if (fail) throw new Error('manager unreachable');
      const c = await (await import('../../src/identity/index.js')).signCsr(ca, req.csrPem, { spiffeId: req.spiffeId });
      return { certChainPem: c.certChainPem, trustBundlePem: c.trustBundlePem };
    },
  });
  await assert.rejects(id.rotateNow(), (err: unknown) => err instanceof EtzError && err.code === 'ETZ_ERR_CERT_RENEWAL');
  assert.equal(id.current, good);
  fail = false;
  await id.rotateNow();
  assert.notEqual(id.current.certChainPem, good.certChainPem);
  id.stop();
  assert.match(await metrics.metrics(), /outcome="error"\} 1/);
});

test('trust-bundle rollover: old and new roots are trusted side by side', async () => {
  const next = await rolloverCa(ca);
  // Server still on the old CA's certificate, client already on the new one; both trust both roots.
  const srvOld = await materialFor(ca, SERVER_ID);
  const server = new WorkloadIdentity(tlsMaterialFromPem(srvOld.certChainPem, srvOld.keyPem, next.trustBundlePem));
  const cNew = await issueWorkloadCert(next, CLIENT_ID);
  const client = new WorkloadIdentity(tlsMaterialFromPem(cNew.certChainPem, cNew.keyPem, next.trustBundlePem));
  const up = await upstream(server);
  assert.equal(await get(pool(up.port, SERVER_ID, { identity: client })), CLIENT_ID);
  // Without the rollover bundle the server refuses the new-CA client.
  server.setTrustBundle(ca.trustBundlePem);
  await assert.rejects(get(pool(up.port, SERVER_ID, { identity: client })));
  // And with it again, new connections work.
  server.setTrustBundle(next.trustBundlePem);
  assert.equal(await get(pool(up.port, SERVER_ID, { identity: client })), CLIENT_ID);
});

test('an enrolled identity follows the control client: each renewal is put in force for new handshakes', async () => {
  const { EventEmitter } = await import('node:events');
  const { enrolledIdentity } = await import('../../src/sidecar/tls/enrolled.js');
  const first = await issueWorkloadCert(ca, SERVER_ID);
  const source = Object.assign(new EventEmitter(), { credentials: { certPem: first.certChainPem, keyPem: first.keyPem, trustBundlePem: first.trustBundlePem } });
  const identity = enrolledIdentity(source);
  const up = await upstream(identity);
  const p1 = pool(up.port, SERVER_ID);
  assert.equal(await get(p1), CLIENT_ID);
  const second = await issueWorkloadCert(ca, SERVER_ID);
  source.credentials = { certPem: second.certChainPem, keyPem: second.keyPem, trustBundlePem: second.trustBundlePem };
  source.emit('renewed', second.notAfter.getTime());
  assert.equal(identity.current.certChainPem, second.certChainPem);
  // A new connection is served with the new certificate.
  const { connect } = await import('node:tls');
  const { X509Certificate } = await import('node:crypto');
  const client = await issueWorkloadCert(ca, CLIENT_ID);
  const served = await new Promise<string>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: up.port, ca: ca.trustBundlePem, cert: client.certChainPem, key: client.keyPem, checkServerIdentity: () => undefined }, () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.destroy();
    });
    s.on('error', reject);
  });
  assert.equal(served, new X509Certificate(second.certPem).serialNumber);
  identity.stop();
  assert.equal(source.listenerCount('renewed'), 0);
});
