import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { generateKeyAndCsr } from '../../src/identity/index.js';
import { ManagerClient } from '../../src/manager/api-client.js';
import { normalizeSerial } from '../../src/protocol/messages.js';
import { startTestManager, until } from './helpers.js';
import { failures, get, startPeer, startRelay, stopPeer, streamUpgrade, type Managed } from './revocation-fixtures.js';
import { startUpstream } from '../sidecar/helpers.js';

type TestManager = Awaited<ReturnType<typeof startTestManager>>;

test('revoking a sidecar: stream closed, mTLS refused both ways, live connection closed, renewal and re-enrollment refused, audited; a malformed list is NACKed', async () => {
  let t: TestManager | undefined;
  let reviews: Managed | undefined;
  let productpage: Managed | undefined;
  const reviewsApp = await startUpstream((_q, res) => res.end('reviews'));
  const ppApp = await startUpstream((_q, res) => res.end('productpage'));
  const relay = await startRelay();
  let kept: ReturnType<typeof tlsConnect> | undefined;
  try {
    t = await startTestManager();
    const m = { url: t.manager.url, caFile: t.manager.caFile };
    reviews = await startPeer({ ...m, token: await t.token({ service: 'reviews' }) }, 'reviews', reviewsApp.port, { productpage: { endpoints: [{ address: '127.0.0.1', port: relay.port }] } });
    productpage = await startPeer({ ...m, token: await t.token({ service: 'productpage' }) }, 'productpage', ppApp.port, { reviews: { endpoints: [{ address: '127.0.0.1', port: reviews.sidecar.ports.inbound }] } });
    relay.target = productpage.sidecar.ports.inbound;
    await reviews.control.waitForVersion((v) => v > 0);
    await productpage.control.waitForVersion((v) => v > 0);
    const pp = productpage;
    const rv = reviews;

    // Before: traffic flows over mTLS in both directions.
    assert.equal(await get(pp.sidecar.ports.outbound, 'reviews'), 200);
    assert.equal(await get(rv.sidecar.ports.outbound, 'productpage'), 200);
    const creds = rv.control.credentials!;
    const serial = normalizeSerial(new X509Certificate(creds.certPem).serialNumber);
    const before = t.manager.enrollment.get('reviews-0')!;
    assert.ok(before.certs?.some((c) => c.serial === serial), 'the enrollment record lists the issued certificate');

    // A keep-alive connection with reviews' certificate into productpage, open across the revocation.
    kept = tlsConnect({ host: '127.0.0.1', port: pp.sidecar.ports.inbound, cert: creds.certPem, key: creds.keyPem, ca: creds.trustBundlePem, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
    const keptSock = kept;
    const keptClosed = new Promise<void>((r) => keptSock.once('close', () => r()));
    keptSock.on('error', () => {});
    const firstReply = await new Promise<string>((resolve) => {
      let buf = '';
      keptSock.on('data', (c: Buffer) => {
        buf += c.toString();
        if (buf.includes('\r\n\r\n')) resolve(buf);
      });
      keptSock.write('GET /kept HTTP/1.1\r\nHost: productpage\r\n\r\n');
    });
    assert.match(firstReply, /^HTTP\/1\.1 200/);

    const closedStream = new Promise<[number, string]>((r) => rv.control.once('disconnected', (code: number, reason: string) => r([code, reason])));
    const gaveUp = new Promise<string>((r) => rv.control.once('revoked', (reason: string) => r(reason)));
    const ppFailIn = await failures(pp.registry, 'inbound', 'revoked');
    const ppFailOut = await failures(pp.registry, 'outbound', 'revoked');

    const res = await t.admin.call<{ revoked: string; certificates: Array<{ serial: string }>; streamsClosed: number; configVersion: number }>('DELETE', '/v1/sidecars/reviews-0', { reason: 'compromised: reverse shell seen' });
    assert.equal(res.revoked, 'reviews-0');
    assert.ok(res.certificates.some((c) => c.serial === serial));
    assert.equal(res.streamsClosed, 1);

    // (a) its control stream is closed with the revocation code and reason.
    const [code, reason] = await closedStream;
    assert.equal(code, 4011);
    assert.match(reason, /revoked: compromised/);
    // The revoked sidecar's control client stops reconnecting: each attempt would be refused and audited.
    assert.match(await gaveUp, /revoked: compromised/);
    const reconnects = rv.control.stats.reconnects;
    let attempts = 0;
    rv.control.on('error', () => attempts++);

    // (c) the other sidecar receives the list; the live connection from the revoked peer is closed.
    await pp.control.waitForVersion((v) => v >= res.configVersion);
    await keptClosed;

    // (2) both directions refused at the handshake, counted with reason "revoked".
    assert.ok((await get(pp.sidecar.ports.outbound, 'reviews')) >= 500, 'productpage → revoked reviews fails');
    await until(async () => (await failures(pp.registry, 'outbound', 'revoked')) > ppFailOut, 5000, 'outbound refusal counted');
    // The revoked side sees the abandoned handshake at once, not after its handshake timeout (10 s).
    await until(async () => (await failures(rv.registry, 'inbound', 'handshake_error')) > 0, 5000, 'abandoned handshake closed by the refused side');
    assert.ok((await get(rv.sidecar.ports.outbound, 'productpage')) >= 500, 'revoked reviews → productpage fails');
    await until(async () => (await failures(pp.registry, 'inbound', 'revoked')) > ppFailIn, 5000, 'inbound refusal counted');
    const appSeen = ppApp.seen.length;
    assert.ok((await get(rv.sidecar.ports.outbound, 'productpage')) >= 500);
    assert.equal(ppApp.seen.length, appSeen, 'no request from the revoked peer reached the application');

    assert.equal(rv.control.stats.reconnects, reconnects, 'no reconnection after the revocation');
    assert.equal(attempts, 0, 'no failed reconnection attempt after the revocation');
    // Reconnection refused (403 with the code), renewal and re-enrollment refused.
    const up = await streamUpgrade(t.manager.url, t.caPem, creds.certPem, creds.keyPem);
    assert.equal(up.status, 403);
    assert.match(up.body, /ETZ_ERR_IDENTITY_REVOKED/);
    const { csrPem } = await generateKeyAndCsr(before.spiffeId);
    await assert.rejects(t.manager.enrollment.renew(before, csrPem, 'workload'), (e: { code?: string }) => e.code === 'ETZ_ERR_IDENTITY_REVOKED');
    const tok = await t.token({ service: 'reviews' });
    const bootstrap = new ManagerClient({ url: t.manager.url, ca: t.caPem, token: tok });
    await assert.rejects(
      bootstrap.call('POST', '/v1/enroll', { csr: csrPem, service: 'reviews', instance: 'reviews-0' }),
      (e: { code?: string; message: string }) => e.code === 'ETZ_ERR_IDENTITY_REVOKED' && /403/.test(e.message),
    );
    // A second revocation says so; an unknown instance is 404.
    await assert.rejects(t.admin.call('DELETE', '/v1/sidecars/reviews-0', { reason: 'again' }), (e: { code?: string }) => e.code === 'ETZ_ERR_IDENTITY_REVOKED');
    await assert.rejects(t.admin.call('DELETE', '/v1/sidecars/nobody', { reason: 'x' }), (e: { code?: string }) => e.code === 'ETZ_ERR_NOT_FOUND');
    await assert.rejects(t.admin.call('DELETE', '/v1/sidecars/productpage-0', {}), (e: { code?: string }) => e.code === 'ETZ_ERR_INVALID_INPUT');

    // Audited with actor and reason; listed.
    const audit = await t.admin.call<{ entries: Array<{ action: string; actor: string; reason?: string; target?: string; details?: { serials?: string[] } }> }>('GET', '/v1/audit?action=sidecar.revoke');
    const entry = audit.entries.find((e) => e.target === 'reviews/reviews-0');
    assert.ok(entry);
    assert.equal(entry.reason, 'compromised: reverse shell seen');
    assert.ok(entry.actor.length > 0 && entry.actor !== 'anonymous');
    assert.ok(entry.details?.serials?.includes(serial));
    const list = await t.admin.call<{ items: Array<{ instance: string; certs: Array<{ serial: string }> }> }>('GET', '/v1/revocations');
    assert.deepEqual(list.items.map((i) => i.instance), ['reviews-0']);
    const sidecars = await t.admin.call<{ items: Array<{ instance: string }> }>('GET', '/v1/sidecars');
    assert.deepEqual(sidecars.items.map((s) => s.instance), ['productpage-0']);

    // A malformed list is NACKed; the previous list stays in force.
    const v = pp.control.version;
    const nacked = new Promise<string>((r) => pp.control.once('nacked', (_v: number, err: string) => r(err)));
    t.manager.publish('mesh', 'revoked', [{ serial: 'not a serial', notAfter: 1 }]);
    assert.match(await nacked, /revoked/);
    assert.equal(pp.control.version, v);
    const outBefore = await failures(pp.registry, 'outbound', 'revoked');
    assert.ok((await get(pp.sidecar.ports.outbound, 'reviews')) >= 500);
    assert.ok((await failures(pp.registry, 'outbound', 'revoked')) > outBefore, 'the previous list still refuses');
    t.manager.revocations.publish();
    await pp.control.waitForVersion((x) => x > v);
  } finally {
    kept?.destroy();
    await stopPeer(reviews);
    await stopPeer(productpage);
    await t?.close();
    await relay.close();
    await reviewsApp.close();
    await ppApp.close();
  }
});
