import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { enroll, type Credentials } from '../../src/sidecar/control/credentials.js';
import { issueWorkloadCert, loadCa } from '../../src/identity/index.js';
import { checkManagerIdentity } from '../../src/protocol/server-identity.js';
import { CLOSE, WS_SUBPROTOCOL, parseManagerMessage, type ManagerMessage } from '../../src/protocol/messages.js';
import { startTestManager, until } from './helpers.js';

type T = Awaited<ReturnType<typeof startTestManager>>;

function open(t: T, creds?: { certPem: string; keyPem: string }, protocol = WS_SUBPROTOCOL) {
  const url = new URL('/v1/stream', t.manager.url);
  url.protocol = 'wss:';
  const ws = new WebSocket(url, protocol, {
    ca: t.caPem,
    ...(creds ? { cert: creds.certPem, key: creds.keyPem } : {}),
    checkServerIdentity: checkManagerIdentity() as never,
  });
  const got: ManagerMessage[] = [];
  ws.on('error', () => {});
  ws.on('message', (d) => got.push(parseManagerMessage(d as Buffer)));
  return { ws, got };
}

async function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  return { code, reason: reason.toString() };
}

async function enrolled(t: T, service: string, instance: string): Promise<Credentials> {
  return enroll({ url: t.manager.url, caPem: t.caPem, token: await t.token({ service }), node: { service, instance } });
}

async function metric(t: T, name: string, label: string): Promise<number> {
  const m = (await t.manager.metrics.getSingleMetric(name)?.get())?.values.find((v) => v.labels.reason === label);
  return m?.value ?? 0;
}

test('enrollment: one-time token, scoped token, SPIFFE certificate issued by the mesh CA', async () => {
  const t = await startTestManager();
  try {
    const tok = await t.token({ service: 'reviews' });
    const c = await enroll({ url: t.manager.url, caPem: t.caPem, token: tok, node: { service: 'reviews', instance: 'reviews-v1-0', version: 'v1' } });
    assert.equal(c.spiffeId, 'spiffe://etz.local/ns/default/sa/reviews');
    assert.ok(c.expiresAt > Date.now());
    // Replay of a one-time token is refused.
    await assert.rejects(enroll({ url: t.manager.url, caPem: t.caPem, token: tok, node: { service: 'reviews', instance: 'reviews-v1-1' } }), /already used/);
    // A token scoped to another service is refused.
    await assert.rejects(enroll({ url: t.manager.url, caPem: t.caPem, token: await t.token({ service: 'ratings' }), node: { service: 'reviews', instance: 'x' } }), /may enroll only service 'ratings'/);
    await assert.rejects(enroll({ url: t.manager.url, caPem: t.caPem, token: 'etzb_000000000000.abcdefghijklmnopqrstuvwx', node: { service: 'reviews', instance: 'x' } }), /unknown bootstrap token/);
    const audit = await t.admin.call<{ entries: Array<{ outcome: string }> }>('GET', '/v1/audit?action=sidecar.enroll');
    assert.deepEqual(audit.entries.map((e) => e.outcome), ['denied', 'denied', 'denied', 'ok']);
    const sc = await t.admin.call<{ items: Array<{ instance: string; version: string; connected: boolean }> }>('GET', '/v1/sidecars');
    assert.deepEqual(sc.items.map((s) => [s.instance, s.version, s.connected]), [['reviews-v1-0', 'v1', false]]);
  } finally {
    await t.close();
  }
});

test('unauthenticated streams are refused and audited: no certificate, or a CA-valid cert that was never enrolled', async () => {
  const t = await startTestManager();
  try {
    const a = open(t);
    const [err] = (await once(a.ws, 'unexpected-response')) as [unknown, { statusCode: number }];
    void err;
    a.ws.terminate();
    const ca = await loadCa(join(t.dataDir, 'ca'));
    const stray = await issueWorkloadCert(ca, 'spiffe://etz.local/ns/default/sa/reviews');
    const b = open(t, { certPem: stray.certChainPem, keyPem: stray.keyPem });
    const [, res] = (await once(b.ws, 'unexpected-response')) as [unknown, { statusCode: number }];
    assert.equal(res.statusCode, 401);
    b.ws.terminate();
    await until(async () => (await metric(t, 'etz_manager_stream_rejected_total', 'unauthenticated')) === 2, 5000, 'two refusals counted');
    let audit = { entries: [] as Array<{ outcome: string; reason: string }> };
    await until(async () => {
      audit = await t.admin.call('GET', '/v1/audit?action=stream.connect');
      return audit.entries.length === 2;
    }, 5000, 'two refusals audited');
    assert.ok(audit.entries.some((e) => /not enrolled/.test(e.reason)));
  } finally {
    await t.close();
  }
});

test('a sidecar may subscribe only as itself; telemetry about others is rejected and counted', async () => {
  const recordDir = await mkdtemp(join(tmpdir(), 'etz-rec-'));
  const recordFile = join(recordDir, 'trace.jsonl');
  const t = await startTestManager({}, { recordFile });
  try {
    const c = await enrolled(t, 'reviews', 'reviews-0');
    const imposter = open(t, c);
    await once(imposter.ws, 'open');
    imposter.ws.send(JSON.stringify({ type: 'hello', protocol: 1, node: { service: 'ratings', instance: 'ratings-0' }, lastVersion: 0 }));
    const r1 = await closed(imposter.ws);
    assert.equal(r1.code, CLOSE.FORBIDDEN);
    assert.match(r1.reason, /enrolled as reviews\/reviews-0/);

    const s = open(t, c);
    await once(s.ws, 'open');
    s.ws.send(JSON.stringify({ type: 'hello', protocol: 1, node: { service: 'reviews', instance: 'reviews-0' }, lastVersion: 0 }));
    await until(() => s.got.length > 0, 5000, 'snapshot');
    const snap = s.got[0]!;
    assert.equal(snap.type, 'snapshot');
    assert.ok(snap.type === 'snapshot' && (snap.resources.trustBundle as string[]).length >= 1, 'the trust bundle is a resource');
    const mine = { ts: Date.now(), source: { service: 'productpage' }, destination: { service: 'reviews', instance: 'reviews-0' }, method: 'GET', path: '/r', status: 200, durationMs: 3 };
    const foreign = { ...mine, source: { service: 'a' }, destination: { service: 'ratings' } };
    s.ws.send(JSON.stringify({ type: 'telemetry', records: [mine, foreign, { ts: 'bad' }] }));
    await until(() => s.got.some((m) => m.type === 'telemetryAck'), 5000, 'telemetryAck');
    const ack = s.got.find((m) => m.type === 'telemetryAck')!;
    assert.deepEqual(ack.type === 'telemetryAck' && [ack.accepted, ack.rejected], [1, 2]);
    assert.equal(await metric(t, 'etz_manager_telemetry_rejected_total', 'foreign'), 1);
    assert.equal(await metric(t, 'etz_manager_telemetry_rejected_total', 'invalid'), 1);
    s.ws.close();
    await t.manager.close();
    // --record: exactly the accepted record, one JSON line, as etz replay reads it.
    const lines = (await readFile(recordFile, 'utf8')).trim().split('\n');
    assert.equal(lines.length, 1);
    assert.deepEqual(JSON.parse(lines[0]!), mine);
  } finally {
    await t.close();
    await rm(recordDir, { recursive: true, force: true });
  }
});

test('malformed, out-of-order and oversized frames close the stream with a code and reason, are counted, and the manager stays up', async () => {
  const t = await startTestManager({ pubsub: { maxPayloadBytes: 4096 } });
  try {
    const c = await enrolled(t, 'reviews', 'reviews-0');
    const cases: Array<[string | Buffer, number, RegExp, string]> = [
      ['{not json', CLOSE.BAD_MESSAGE, /not JSON/, 'malformed'],
      ['{"type":"ack","version":1,"nonce":"x"}', CLOSE.BAD_MESSAGE, /before 'hello'/, 'order'],
      ['{"type":"hello","protocol":1,"node":{"service":"reviews"},"lastVersion":0}', CLOSE.BAD_MESSAGE, /invalid sidecar frame 'hello'/, 'malformed'],
      ['{"type":"hello","protocol":99,"node":{"service":"reviews","instance":"reviews-0"},"lastVersion":0}', CLOSE.BAD_MESSAGE, /protocol 99 not supported/, 'protocol-version'],
      [JSON.stringify({ type: 'heartbeat', ts: 1, pad: 'x'.repeat(10_000) }), CLOSE.TOO_BIG, /.*/, 'oversized'],
      [Buffer.from([1, 2, 3]), CLOSE.BAD_MESSAGE, /binary/, 'binary'],
    ];
    for (const [frame, code, re, metricReason] of cases) {
      const before = await metric(t, 'etz_manager_stream_rejected_total', metricReason);
      const s = open(t, c);
      await once(s.ws, 'open');
      s.ws.send(frame);
      const r = await closed(s.ws);
      assert.equal(r.code, code, `close code for ${String(frame).slice(0, 40)}`);
      assert.match(r.reason, re);
      assert.equal(await metric(t, 'etz_manager_stream_rejected_total', metricReason), before + 1, `counted as ${metricReason}`);
    }
    // Still serving: a well-behaved stream works after all that.
    const ok = open(t, c);
    await once(ok.ws, 'open');
    ok.ws.send(JSON.stringify({ type: 'hello', protocol: 1, node: { service: 'reviews', instance: 'reviews-0' }, lastVersion: 0 }));
    await until(() => ok.got.length > 0, 5000, 'snapshot');
    ok.ws.close();
  } finally {
    await t.close();
  }
});

test('a stale or replayed ACK is ignored; a second stream of the same instance replaces the first', async () => {
  const t = await startTestManager();
  try {
    const c = await enrolled(t, 'reviews', 'reviews-0');
    const s = open(t, c);
    await once(s.ws, 'open');
    s.ws.send(JSON.stringify({ type: 'hello', protocol: 1, node: { service: 'reviews', instance: 'reviews-0' }, lastVersion: 0 }));
    await until(() => s.got.length > 0, 5000, 'snapshot');
    const snap = s.got[0]!;
    assert.ok(snap.type === 'snapshot');
    s.ws.send(JSON.stringify({ type: 'ack', version: snap.version - 1, nonce: snap.nonce }));
    s.ws.send(JSON.stringify({ type: 'ack', version: snap.version, nonce: 'forged' }));
    await until(() => t.manager.hub.stats.staleAcks >= 2, 5000, 'stale acks counted');
    assert.equal(t.manager.hub.status()[0]!.state, 'pending');
    s.ws.send(JSON.stringify({ type: 'ack', version: snap.version, nonce: snap.nonce }));
    await until(() => t.manager.hub.status()[0]?.state === 'acked', 5000, 'acked');
    // Replaying the same ACK changes nothing.
    s.ws.send(JSON.stringify({ type: 'ack', version: snap.version, nonce: snap.nonce }));
    await until(() => t.manager.hub.stats.staleAcks >= 3, 5000, 'replayed ack ignored');
    const second = open(t, c);
    await once(second.ws, 'open');
    second.ws.send(JSON.stringify({ type: 'hello', protocol: 1, node: { service: 'reviews', instance: 'reviews-0' }, lastVersion: snap.version }));
    const r = await closed(s.ws);
    assert.equal(r.code, CLOSE.REPLACED);
    second.ws.close();
  } finally {
    await t.close();
  }
});

test('a stream that goes silent is closed by the manager', async () => {
  const t = await startTestManager({ pubsub: { heartbeatMs: 100, idleTimeoutMs: 300 } });
  try {
    const c = await enrolled(t, 'reviews', 'reviews-0');
    const s = open(t, c);
    await once(s.ws, 'open');
    // This client never sends a heartbeat after hello.
    s.ws.send(JSON.stringify({ type: 'hello', protocol: 1, node: { service: 'reviews', instance: 'reviews-0' }, lastVersion: 0 }));
    await until(() => s.got.length > 0, 5000, 'snapshot');
    const r = await closed(s.ws);
    assert.equal(r.code, CLOSE.HEARTBEAT_TIMEOUT);
  } finally {
    await t.close();
  }
});
