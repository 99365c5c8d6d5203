import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { issueWorkloadCert, loadCa } from '../../src/identity/index.js';
import { ControlClient } from '../../src/sidecar/control/client.js';
import { enroll, saveCredentials } from '../../src/sidecar/control/credentials.js';
import { WS_SUBPROTOCOL, emptyResources } from '../../src/protocol/messages.js';
import { startTestManager, until } from '../manager/helpers.js';

// A stand-in manager speaking the wire protocol directly, with a certificate from the real mesh
// CA, so the test can send what a real manager never would: old and replayed versions.
test('the sidecar ignores old and replayed versions and ACKs only what it applied', async () => {
  const t = await startTestManager();
  const dir = await mkdtemp(join(tmpdir(), 'etz-replay-'));
  const server = createServer({ requestCert: true, rejectUnauthorized: true, ca: t.caPem, ...(await (async () => {
    const ca = await loadCa(join(t.dataDir, 'ca'));
    const c = await issueWorkloadCert(ca, 'spiffe://etz.local/ns/etz-system/sa/etz-manager');
    return { cert: c.certChainPem, key: c.keyPem };
  })()) });
  const wss = new WebSocketServer({ server, handleProtocols: () => WS_SUBPROTOCOL });
  const fromSidecar: Array<{ type: string; version?: number; nonce?: string }> = [];
  let peer: WebSocket | undefined;
  wss.on('connection', (ws) => {
    peer = ws;
    ws.on('message', (d) => fromSidecar.push(JSON.parse(d.toString())));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  const applied: number[] = [];
  const creds = await enroll({ url: t.manager.url, caPem: t.caPem, token: await t.token(), node: { service: 'reviews', instance: 'reviews-0' } });
  await saveCredentials(dir, creds);
  const c = await ControlClient.start({ url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target: { async applyResources(_r, v) { applied.push(v); } } });
  try {
    await until(() => fromSidecar.some((m) => m.type === 'hello'), 5000, 'hello');
    const res = { ...emptyResources(), routes: [{ r: 1 }] };
    const push = (m: object) => peer!.send(JSON.stringify(m));
    push({ type: 'snapshot', version: 100, nonce: 'a', resources: res });
    await until(() => fromSidecar.some((m) => m.type === 'ack' && m.nonce === 'a'), 5000, 'ack a');
    push({ type: 'snapshot', version: 50, nonce: 'old', resources: { ...res, routes: [{ r: 'old' }] } });
    push({ type: 'delta', version: 100, nonce: 'replay', baseVersion: 99, resources: { routes: [{ r: 'replayed' }] } });
    push({ type: 'delta', version: 101, nonce: 'b', baseVersion: 100, resources: { routes: [{ r: 2 }] } });
    await until(() => fromSidecar.some((m) => m.type === 'ack' && m.nonce === 'b'), 5000, 'ack b');
    assert.deepEqual(applied, [100, 101]);
    assert.equal(c.stats.stale, 2);
    assert.deepEqual(fromSidecar.filter((m) => m.type === 'ack').map((m) => m.nonce), ['a', 'b']);
    assert.equal(c.version, 101);
    // A delta built on a version the sidecar does not have makes it ask for a snapshot instead.
    push({ type: 'delta', version: 102, nonce: 'gap', baseVersion: 90, resources: { routes: [] } });
    await until(() => fromSidecar.filter((m) => m.type === 'hello').length === 2, 5000, 'resync hello');
    assert.equal(c.version, 101);
  } finally {
    await c.close();
    wss.close();
    server.closeAllConnections();
    server.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});
