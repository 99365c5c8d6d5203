import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagerClient } from '../../src/manager/api-client.js';
import { normalizeSerial } from '../../src/protocol/messages.js';
import { startUpstream } from '../sidecar/helpers.js';
import { until } from './helpers.js';
import { etz, spawnManager as managerProcess } from './manager-process.js';
import { failures, get, startPeer, stopPeer, streamUpgrade, type Managed } from './revocation-fixtures.js';

async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

test('revocation survives a manager crash: etz revoke, kill -9, restart → still listed, pushed to a new sidecar and enforced, reconnection refused', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'etz-revoke-restart-'));
  const app = await startUpstream((_q, res) => res.end('ok'));
  let mgr: { child: ChildProcess; url: string } | undefined;
  let reviews: Managed | undefined;
  let productpage: Managed | undefined;
  try {
    mgr = await managerProcess(dataDir);
    const caFile = join(dataDir, 'ca', 'trust-bundle.pem');
    const ca = await readFile(caFile, 'utf8');
    const adminToken = (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
    const api = (url: string) => new ManagerClient({ url, ca, token: adminToken });
    const token = async (url: string, service: string) => (await api(url).call<{ token: string }>('POST', '/v1/tokens', { scope: { service } })).token;

    reviews = await startPeer({ url: mgr.url, caFile, token: await token(mgr.url, 'reviews') }, 'reviews', app.port, {});
    await reviews.control.waitForVersion((v) => v > 0);
    const creds = reviews.control.credentials!;
    const serial = normalizeSerial(new X509Certificate(creds.certPem).serialNumber);

    // The CLI: a reason is required (usage error, exit 2), then the revocation.
    const noReason = await etz(['revoke', 'reviews-0', '-d', dataDir]);
    assert.equal(noReason.code, 2, noReason.stderr);
    assert.match(noReason.stderr, /--reason/);
    const r = await etz(['revoke', 'reviews-0', '--reason', 'key exfiltrated', '-d', dataDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^revoked reviews-0: \d+ certificate\(s\) listed, 1 control stream\(s\) closed/);
    assert.ok(r.stdout.includes(serial), r.stdout);

    // Crash without warning, restart on the same data dir.
    await kill9(mgr.child);
    mgr = await managerProcess(dataDir);
    const listed = await etz(['revoke', '--list', '--json', '-d', dataDir]);
    assert.equal(listed.code, 0, listed.stderr);
    const items = (JSON.parse(listed.stdout) as { items: Array<{ instance: string; reason: string; certs: Array<{ serial: string }> }> }).items;
    assert.deepEqual(items.map((i) => [i.instance, i.reason]), [['reviews-0', 'key exfiltrated']]);
    assert.ok(items[0]!.certs.some((c) => c.serial === serial));

    // A sidecar enrolling with the restarted manager gets the list and refuses the revoked peer.
    productpage = await startPeer({ url: mgr.url, caFile, token: await token(mgr.url, 'productpage') }, 'productpage', app.port, { reviews: { endpoints: [{ address: '127.0.0.1', port: reviews.sidecar.ports.inbound }] } });
    await productpage.control.waitForVersion((v) => v > 0);
    const pp = productpage;
    const seen = app.seen.length;
    assert.ok((await get(pp.sidecar.ports.outbound, 'reviews')) >= 500);
    await until(async () => (await failures(pp.registry, 'outbound', 'revoked')) > 0, 5000, 'refusal counted as revoked');
    assert.equal(app.seen.length, seen, 'nothing reached the revoked peer');

    // The revoked certificate cannot open a control stream on the restarted manager either.
    const up = await streamUpgrade(mgr.url, ca, creds.certPem, creds.keyPem);
    assert.equal(up.status, 403);
    assert.match(up.body, /ETZ_ERR_IDENTITY_REVOKED/);
    const audit = await api(mgr.url).call<{ entries: Array<{ action: string; reason?: string }> }>('GET', '/v1/audit?action=sidecar.revoke');
    assert.equal(audit.entries[0]?.reason, 'key exfiltrated');
  } finally {
    await stopPeer(productpage);
    await stopPeer(reviews);
    if (mgr) await kill9(mgr.child);
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});
