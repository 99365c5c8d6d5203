import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigHub, type Subscriber } from '../../../src/manager/pubsub/hub.js';
import { parseManagerMessage, type ManagerMessage } from '../../../src/protocol/messages.js';

/** A subscriber that records what it is sent (the hub's only view of a stream). */
function sub(service: string, instance: string, buffered = () => 0) {
  const got: ManagerMessage[] = [];
  const s: Subscriber & { got: ManagerMessage[] } = {
    id: instance,
    node: { service, instance },
    send: (m) => got.push(typeof m === 'string' || Buffer.isBuffer(m) ? parseManagerMessage(m) : m),
    bufferedAmount: buffered,
    got,
  };
  return s;
}

function last(s: { got: ManagerMessage[] }) {
  const m = s.got.at(-1);
  assert.ok(m && (m.type === 'snapshot' || m.type === 'delta'), 'a push was sent');
  return m;
}

test('first push is a full snapshot; later changes are deltas of the changed types only', () => {
  const hub = new ConfigHub({ debounceMs: 0 });
  hub.set('mesh', 'policies', [{ p: 1 }]);
  const a = sub('reviews', 'reviews-0');
  hub.subscribe(a, 0);
  const snap = last(a);
  assert.equal(snap.type, 'snapshot');
  assert.deepEqual(snap.type === 'snapshot' && snap.resources.policies, [{ p: 1 }]);
  assert.ok(hub.ack('reviews-0', snap.version, snap.nonce));
  hub.set('mesh', 'zones', [{ id: 'z1' }]);
  const d = last(a);
  assert.equal(d.type, 'delta');
  assert.ok(d.version > snap.version);
  assert.equal(d.type === 'delta' && d.baseVersion, snap.version);
  assert.deepEqual(Object.keys(d.resources), ['zones']);
  hub.close();
});

test('topics: a service change reaches only that service; views merge mesh + service + instance', () => {
  const hub = new ConfigHub({ debounceMs: 0 });
  const a = sub('reviews', 'reviews-0');
  const b = sub('ratings', 'ratings-0');
  hub.subscribe(a, 0);
  hub.subscribe(b, 0);
  hub.ack('reviews-0', last(a).version, last(a).nonce);
  hub.ack('ratings-0', last(b).version, last(b).nonce);
  const before = b.got.length;
  hub.set('mesh', 'routes', [{ r: 'mesh' }]);
  hub.ack('reviews-0', last(a).version, last(a).nonce);
  hub.ack('ratings-0', last(b).version, last(b).nonce);
  hub.set('service/reviews', 'routes', [{ r: 'svc' }]);
  hub.set('instance/reviews-0', 'routes', [{ r: 'inst' }]);
  assert.equal(b.got.length, before + 1, 'ratings got the mesh change only');
  assert.deepEqual(hub.view({ service: 'reviews', instance: 'reviews-0' }).routes, [{ r: 'mesh' }, { r: 'svc' }, { r: 'inst' }]);
  assert.deepEqual(hub.view({ service: 'ratings', instance: 'ratings-0' }).routes, [{ r: 'mesh' }]);
  hub.close();
});

test('changes within the debounce window go out as one version', async () => {
  const hub = new ConfigHub({ debounceMs: 20 });
  const a = sub('s', 's-0');
  hub.subscribe(a, 0);
  hub.ack('s-0', last(a).version, last(a).nonce);
  const n = a.got.length;
  hub.set('mesh', 'zones', [1]);
  hub.set('mesh', 'intel', [2]);
  hub.set('mesh', 'zones', [3]);
  assert.equal(a.got.length, n, 'nothing sent before the window closes');
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(a.got.length, n + 1);
  const d = last(a);
  assert.deepEqual(d.type === 'delta' && d.resources, { zones: [3], intel: [2] });
  hub.close();
});

test('a slow subscriber gets one push in flight, then the latest state — never every intermediate delta', () => {
  const hub = new ConfigHub({ debounceMs: 0 });
  const a = sub('s', 's-0');
  hub.subscribe(a, 0);
  const first = last(a);
  for (let i = 0; i < 100; i++) hub.set('mesh', 'zones', [{ i }]);
  assert.equal(a.got.length, 1, 'no queue while the snapshot is unanswered');
  hub.ack('s-0', first.version, first.nonce);
  assert.equal(a.got.length, 2);
  const d = last(a);
  assert.deepEqual(d.type === 'delta' && d.resources.zones, [{ i: 99 }]);
  assert.equal(d.version, hub.currentVersion);
  assert.ok(hub.stats.coalesced >= 99);
  hub.close();
});

test('a subscriber whose socket is backed up is skipped until it drains (tick retries)', () => {
  const hub = new ConfigHub({ debounceMs: 0, maxBufferedBytes: 100 });
  let buffered = 1000;
  const a = sub('s', 's-0', () => buffered);
  hub.subscribe(a, 0);
  assert.equal(a.got.length, 0);
  hub.set('mesh', 'zones', [1]);
  assert.equal(a.got.length, 0);
  buffered = 0;
  hub.tick();
  assert.equal(last(a).type, 'snapshot');
  hub.close();
});

test('stale or unknown ACKs are ignored; rollout counts acked/nacked/pending and in-force', () => {
  const hub = new ConfigHub({ debounceMs: 0 });
  const a = sub('s', 's-0');
  const b = sub('s', 's-1');
  hub.subscribe(a, 0);
  hub.subscribe(b, 0);
  hub.ack('s-0', last(a).version, last(a).nonce);
  hub.ack('s-1', last(b).version, last(b).nonce);
  const done: number[] = [];
  hub.on('rollout-complete', (r) => done.push(r.version));
  hub.set('mesh', 'zones', [{ id: 'z' }]);
  const v = hub.currentVersion;
  let r = hub.getRollout(v)!;
  assert.deepEqual(r.counts, { acked: 0, nacked: 0, pending: 2 });
  assert.equal(hub.ack('s-0', v, 'wrong-nonce'), false);
  assert.equal(hub.ack('s-0', v - 1, last(a).nonce), false);
  assert.ok(hub.stats.staleAcks >= 2);
  assert.ok(hub.ack('s-0', v, last(a).nonce));
  assert.ok(hub.nack('s-1', v, last(b).nonce, 'bad zone'));
  r = hub.getRollout(v)!;
  assert.deepEqual(r.counts, { acked: 1, nacked: 1, pending: 0 });
  assert.equal(r.inForce, false);
  assert.equal(r.targets['s-1']!.error, 'bad zone');
  assert.equal(hub.status().find((s) => s.id === 's-1')!.state, 'nacked');
  // The next change carries the NACKed type again (delta against the last ACKed version) …
  hub.set('mesh', 'intel', [1]);
  const d = last(b);
  assert.deepEqual(d.type === 'delta' && Object.keys(d.resources).sort(), ['intel', 'zones']);
  // … and once ACKed, the earlier change is in force too.
  hub.ack('s-1', d.version, d.nonce);
  hub.ack('s-0', last(a).version, last(a).nonce);
  assert.equal(hub.getRollout(v)!.inForce, true);
  assert.ok(done.includes(v));
  hub.close();
});

test('resume: a sidecar that reconnects with the version it ACKed gets no push; an outdated one gets a snapshot', () => {
  const hub = new ConfigHub({ debounceMs: 0 });
  hub.set('mesh', 'zones', [1]);
  const a = sub('s', 's-0');
  hub.subscribe(a, 0);
  hub.ack('s-0', last(a).version, last(a).nonce);
  const acked = last(a).version;
  hub.unsubscribe('s-0');
  const again = sub('s', 's-0');
  hub.subscribe(again, acked);
  assert.equal(again.got.length, 0);
  assert.equal(hub.status()[0]!.state, 'acked');
  hub.unsubscribe('s-0');
  hub.set('mesh', 'zones', [2]);
  const third = sub('s', 's-0');
  hub.subscribe(third, acked);
  assert.equal(last(third).type, 'snapshot');
  hub.close();
});

test('a version from a previous manager incarnation is never trusted: genesis forces a snapshot', () => {
  let now = 1_000_000;
  const hub = new ConfigHub({ debounceMs: 0, now: () => now });
  const a = sub('s', 's-0');
  hub.subscribe(a, 999_999);
  assert.equal(last(a).type, 'snapshot');
  assert.ok(last(a).version >= 1_000_000);
  now += 5;
  hub.set('mesh', 'zones', [1]);
  assert.ok(hub.currentVersion >= now, 'versions follow the clock so they keep rising across restarts');
  hub.close();
});

test('an unanswered push is re-sent as a snapshot after the ACK timeout', () => {
  let now = 10_000;
  const hub = new ConfigHub({ debounceMs: 0, ackTimeoutMs: 1000, now: () => now });
  const a = sub('s', 's-0');
  hub.subscribe(a, 0);
  hub.ack('s-0', last(a).version, last(a).nonce);
  hub.set('mesh', 'zones', [1]);
  assert.equal(a.got.length, 2);
  now += 2000;
  hub.tick();
  assert.equal(a.got.length, 3);
  assert.equal(last(a).type, 'snapshot');
  hub.close();
});
