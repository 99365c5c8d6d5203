import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { ConfigError } from '../../src/core/errors.js';
import { validateResources } from '../../src/sidecar/chain.js';
import { FILTERS, EXTRA_RESOURCES } from '../../src/sidecar/filters/index.js';
import { RevocationList, compileRevoked } from '../../src/sidecar/tls/revocation.js';
import { emptyResources, encode, parseManagerMessage, type Resources } from '../../src/protocol/messages.js';

test('snapshots: one without `revoked` (older manager) validates, one with it too; every other type is still required', () => {
  const { revoked: _r, ...older } = emptyResources();
  assert.doesNotThrow(() => parseManagerMessage(JSON.stringify({ type: 'snapshot', version: 3, nonce: 'a', resources: older })));
  const current: Resources = { ...emptyResources(), revoked: [{ serial: 'AB01', notAfter: Date.now() + 60_000 }] };
  assert.doesNotThrow(() => parseManagerMessage(JSON.stringify({ type: 'snapshot', version: 4, nonce: 'b', resources: current })));
  const { zones: _z, ...noZones } = emptyResources();
  assert.throws(() => parseManagerMessage(encode({ type: 'snapshot', version: 5, nonce: 'c', resources: noZones as Resources })), /zones/);
});

test('the `revoked` resource: malformed entries are refused naming the field', () => {
  const ok = validateResources({ revoked: [{ serial: '0A:bc:01', notAfter: 1 }] }, FILTERS, EXTRA_RESOURCES);
  assert.deepEqual(ok.revoked, [{ serial: '0A:bc:01', notAfter: 1 }]);
  for (const [bad, field] of [
    [[{ serial: 'xyz', notAfter: 1 }], /\/resources\/revoked\/0\/serial/],
    [[{ serial: 'AB' }], /\/resources\/revoked\/0/],
    [[{ serial: 'AB', notAfter: 'soon' }], /\/resources\/revoked\/0\/notAfter/],
    [{ serial: 'AB' }, /\/resources\/revoked/],
  ] as const) {
    assert.throws(() => validateResources({ revoked: bad }, FILTERS, EXTRA_RESOURCES), (e: unknown) => e instanceof ConfigError && field.test(`${e.field} ${e.message}`));
  }
});

test('compileRevoked normalises serials and leaves long-expired certificates out; RevocationList closes tracked connections of newly revoked serials only', async () => {
  const now = Date.now();
  const set = compileRevoked([{ serial: '00ab:CD', notAfter: now + 60_000 }, { serial: 'EF', notAfter: now - 3_600_000 }], now);
  assert.deepEqual([...set], ['ABCD']);
  assert.equal(compileRevoked([], now).size, 0);

  const server = createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const open = async (): Promise<Socket> => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    return s;
  };
  try {
    const list = new RevocationList();
    const [a, b] = [await open(), await open()];
    list.track(a, 'ab:cd');
    list.track(b, '1234');
    assert.equal(list.has('ABCD'), false, 'nothing revoked yet');
    const g = list.generation;
    assert.equal(list.set(set), 1);
    assert.ok(list.generation > g);
    assert.equal(a.destroyed, true);
    assert.equal(b.destroyed, false);
    assert.equal(list.has('00AB:CD'), true);
    assert.equal(list.has('1234'), false);
    assert.equal(list.set(compileRevoked([])), 0);
    assert.equal(list.has('ABCD'), false);
    b.destroy();
  } finally {
    await new Promise((r) => server.close(r));
  }
});
