import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigHub } from '../../src/manager/pubsub/hub.js';
import { WalStore } from '../../src/manager/store/wal-store.js';
import { EXPIRY_MARGIN_MS, RevocationService } from '../../src/manager/revocation.js';

function parse(frame: unknown): { version: number; nonce: string; resources: { revoked?: unknown } } {
  const text = Buffer.isBuffer(frame) ? frame.toString() : typeof frame === 'string' ? frame : JSON.stringify(frame);
  return JSON.parse(text) as { version: number; nonce: string; resources: { revoked?: unknown } };
}

/** The `revoked` list of the newest push that carried one (deltas carry only changed types). */
function pushedList(frames: unknown[]): unknown {
  for (let i = frames.length - 1; i >= 0; i--) {
    const r = parse(frames[i]).resources;
    if ('revoked' in r) return r.revoked;
  }
  return undefined;
}

test('revocation entries expire with their certificates (plus the margin), the shorter list is pushed, and the store keeps what is left across a reopen', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-revoke-expiry-'));
  let clock = 1_000_000_000_000;
  const hub = new ConfigHub({ debounceMs: 0 });
  let store = await WalStore.open({ dir });
  try {
    const svc = new RevocationService(store, hub, () => clock);
    const frames: unknown[] = [];
    hub.subscribe({ id: 'ratings-0', node: { service: 'ratings', instance: 'ratings-0' }, send: (m) => {
      frames.push(m);
      // ACK like a sidecar: the hub sends the next change only once the previous one is answered.
      const f = parse(m);
      queueMicrotask(() => hub.ack('ratings-0', f.version, f.nonce));
    }, bufferedAmount: () => 0 }, 0);

    await new Promise((r) => setImmediate(r));
    await svc.revoke({ instance: 'reviews-0', service: 'reviews', spiffeId: 'spiffe://etz.local/ns/default/sa/reviews', actor: 'admin', reason: 'test', certs: [
      { serial: '0a:bc', notAfter: clock + 60_000 },
      { serial: 'DEF0', notAfter: clock + 3_600_000 },
      { serial: '99', notAfter: clock - EXPIRY_MARGIN_MS - 1 }, // already dead: not listed
    ] });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(pushedList(frames), [{ serial: 'ABC', notAfter: clock + 60_000 }, { serial: 'DEF0', notAfter: clock + 3_600_000 }]);
    assert.equal(svc.isSerialRevoked('0ABC'), true);
    assert.equal(svc.isSerialRevoked('99'), false);
    assert.equal(svc.isInstanceRevoked('reviews-0'), true);

    // Nothing due: no work, no push.
    const n = frames.length;
    assert.equal(await svc.expire(), 0);
    assert.equal(frames.length, n);

    // The first certificate's notAfter + margin passes: its entry goes, the list is pushed again.
    clock += 60_000 + EXPIRY_MARGIN_MS;
    assert.equal(await svc.expire(), 1);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(pushedList(frames), [{ serial: 'DEF0', notAfter: clock - 60_000 - EXPIRY_MARGIN_MS + 3_600_000 }]);
    assert.equal(svc.isSerialRevoked('ABC'), false);
    assert.equal(svc.isSerialRevoked('def0'), true);

    // Durable: a reopened store has the shorter record.
    await store.close();
    store = await WalStore.open({ dir });
    const again = new RevocationService(store, hub, () => clock);
    assert.deepEqual(again.list().map((r) => [r.instance, r.reason, r.certs.map((c) => c.serial)]), [['reviews-0', 'test', ['DEF0']]]);

    // The last one expires: the record is gone and the instance may enroll again.
    clock += 3_600_000;
    assert.equal(await again.expire(), 1);
    await new Promise((r) => setImmediate(r));
    assert.equal(again.isInstanceRevoked('reviews-0'), false);
    assert.deepEqual(again.list(), []);
    assert.deepEqual(pushedList(frames), []);
  } finally {
    hub.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
