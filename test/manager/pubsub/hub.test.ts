import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
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

/** A hub with two sidecars (default s/s-0, s/s-1) that ACKed their snapshots; `done` collects settled rollouts. */
function twoInForce(opts: { rolloutHistory?: number } = {}, nodes: [string, string][] = [['s', 's-0'], ['s', 's-1']]) {
  const hub = new ConfigHub({ debounceMs: 0, ...opts });
  const [a, b] = nodes.map(([service, instance]) => sub(service, instance)) as [ReturnType<typeof sub>, ReturnType<typeof sub>];
  hub.subscribe(a, 0);
  hub.subscribe(b, 0);
  hub.ack(a.id, last(a).version, last(a).nonce);
  hub.ack(b.id, last(b).version, last(b).nonce);
  const done: number[] = [];
  hub.on('rollout-complete', (r) => done.push(r.version));
  return { hub, a, b, done };
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
  const { hub, a, b } = twoInForce({}, [['reviews', 'reviews-0'], ['ratings', 'ratings-0']]);
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

test('debounce: a lone change goes out in the same turn; changes within the window after a push go out together when it closes', async () => {
  const hub = new ConfigHub({ debounceMs: 40 });
  const a = sub('s', 's-0');
  hub.subscribe(a, 0);
  hub.ack('s-0', last(a).version, last(a).nonce);
  const n = a.got.length;
  // After a quiet window: the changes of this turn are one version, sent before any timer runs.
  hub.set('mesh', 'zones', [1]);
  hub.set('mesh', 'intel', [2]);
  hub.set('mesh', 'zones', [3]);
  assert.equal(a.got.length, n, 'the changes of one turn are collected first');
  await new Promise((r) => setImmediate(r));
  assert.equal(a.got.length, n + 1, 'sent without waiting for the window');
  let d = last(a);
  assert.deepEqual(d.type === 'delta' && d.resources, { zones: [3], intel: [2] });
  hub.ack('s-0', d.version, d.nonce);
  // Within the window after that push: held until it closes, then one version for all of them.
  const pushedAt = performance.now();
  hub.set('mesh', 'zones', [4]);
  await new Promise((r) => setTimeout(r, 5));
  hub.set('mesh', 'routes', [{ r: 5 }]);
  assert.equal(a.got.length, n + 1, 'nothing sent inside the window');
  while (a.got.length === n + 1) await new Promise((r) => setTimeout(r, 2));
  assert.ok(performance.now() - pushedAt >= 35, `held for the rest of the window (${(performance.now() - pushedAt).toFixed(1)} ms)`);
  d = last(a);
  assert.deepEqual(d.type === 'delta' && d.resources, { zones: [4], routes: [{ r: 5 }] });
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(a.got.length, n + 2, 'one push for the window');
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
  const { hub, a, b, done } = twoInForce();
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

test('one publish encodes one frame per distinct view: same-shape sidecars share the bytes, own topics and base versions get their own', () => {
  const hub = new ConfigHub({ debounceMs: 0 });
  const raw = new Map<string, Buffer[]>();
  const mk = (service: string, instance: string) => {
    const s = sub(service, instance);
    const send = s.send;
    s.send = (m) => {
      if (Buffer.isBuffer(m)) raw.set(instance, [...(raw.get(instance) ?? []), m]);
      send(m);
    };
    return s;
  };
  const subs = [mk('a', 'a-0'), mk('a', 'a-1'), mk('b', 'b-0'), mk('b', 'b-1'), mk('c', 'c-0')];
  // ACK whatever is in flight until the sidecar is current (an ACK may release a coalesced push).
  const settle = (list: typeof subs) => {
    for (const s of list) while (hub.status().find((x) => x.id === s.id)!.state === 'pending') hub.ack(s.id, last(s).version, last(s).nonce);
  };
  for (const s of subs) hub.subscribe(s, 0);
  settle(subs);
  hub.set('service/b', 'routes', [{ r: 'b' }]);
  hub.set('instance/b-1', 'routes', [{ r: 'b-1' }]);
  settle(subs);
  // c-0 is one change behind: its delta must build on its own base version.
  const lagging = subs[4]!;
  hub.set('mesh', 'intel', [{ i: 1 }]);
  const lagVersion = hub.currentVersion;
  settle(subs.slice(0, 4));
  hub.set('mesh', 'zones', [{ id: 'z' }]);
  const frames = new Map(subs.map((s) => [s.id, raw.get(s.id)!.at(-1)!]));
  assert.equal(frames.get('a-0'), frames.get('a-1'), 'same shape, same base: one shared Buffer');
  assert.notEqual(frames.get('a-0'), frames.get('b-0'));
  const nonce = last(subs[0]!).nonce;
  for (const s of subs.slice(0, 4)) {
    const d = last(s);
    assert.equal(d.type, 'delta');
    assert.equal(d.nonce, nonce, 'one nonce per publish');
    assert.deepEqual(d.type === 'delta' && d.resources, { zones: [{ id: 'z' }] });
  }
  assert.equal(last(lagging).version, lagVersion, 'one push in flight: the lagging sidecar waits for its ACK');
  hub.ack('c-0', lagVersion, last(lagging).nonce);
  const d = last(lagging);
  assert.deepEqual(d.type === 'delta' && [d.baseVersion, d.resources], [lagVersion, { zones: [{ id: 'z' }] }]);
  assert.deepEqual(hub.view({ service: 'b', instance: 'b-1' }).routes, [{ r: 'b' }, { r: 'b-1' }]);
  // A mesh change of a type the service and instance topics also hold: three different merges.
  settle(subs);
  hub.set('mesh', 'routes', [{ r: 'mesh' }]);
  const routes = (id: string) => { const m = last(subs.find((s) => s.id === id)!); return m.type === 'delta' ? m.resources.routes : undefined; };
  assert.deepEqual([routes('a-0'), routes('a-1'), routes('c-0')], [[{ r: 'mesh' }], [{ r: 'mesh' }], [{ r: 'mesh' }]]);
  assert.deepEqual(routes('b-0'), [{ r: 'mesh' }, { r: 'b' }]);
  assert.deepEqual(routes('b-1'), [{ r: 'mesh' }, { r: 'b' }, { r: 'b-1' }]);
  settle(subs);
  // A sidecar connecting now gets a full snapshot of its own merged view.
  const late = mk('b', 'b-1');
  hub.unsubscribe('b-1');
  hub.subscribe(late, 0);
  const snap = last(late);
  assert.equal(snap.type, 'snapshot');
  assert.deepEqual(snap.type === 'snapshot' && [snap.resources.routes, snap.resources.zones, snap.resources.intel], [[{ r: 'mesh' }, { r: 'b' }, { r: 'b-1' }], [{ id: 'z' }], [{ i: 1 }]]);
  hub.close();
});

test('rollouts: a later ACK brings every earlier open change into force, newest first; the history is bounded', () => {
  const { hub, a, b, done } = twoInForce({ rolloutHistory: 2 });
  hub.set('mesh', 'zones', [1]);
  const v1 = hub.currentVersion;
  hub.ack('s-0', v1, last(a).nonce);
  hub.set('mesh', 'zones', [2]); // s-1 still owes v1: coalesced
  const v2 = hub.currentVersion;
  hub.ack('s-0', v2, last(a).nonce);
  assert.deepEqual(done, []);
  hub.ack('s-1', v1, last(b).nonce);
  assert.deepEqual(done, [v1]);
  hub.ack('s-1', last(b).version, last(b).nonce);
  assert.deepEqual(done, [v1, v2]);
  assert.deepEqual(hub.getRollout(v2)!.counts, { acked: 2, nacked: 0, pending: 0 });
  // Several changes settle with one ACK, newest first.
  hub.set('mesh', 'zones', [3]);
  const v3 = hub.currentVersion;
  hub.ack('s-0', v3, last(a).nonce);
  hub.set('mesh', 'zones', [4]);
  const v4 = hub.currentVersion;
  hub.ack('s-0', v4, last(a).nonce);
  hub.set('mesh', 'zones', [5]);
  const v5 = hub.currentVersion;
  hub.ack('s-0', v5, last(a).nonce);
  assert.equal(hub.getRollout(v3), undefined, 'only the last 2 changes are kept');
  hub.ack('s-1', v3, last(b).nonce);
  assert.deepEqual(done.slice(2), [], 'an evicted change is no longer tracked');
  assert.equal(last(b).version, v5, 'the ACK released the latest state');
  hub.ack('s-1', v5, last(b).nonce);
  assert.deepEqual(done.slice(2), [v5, v4]);
  assert.deepEqual(hub.listRollouts().map((r) => [r.version, r.inForce]), [[v5, true], [v4, true]]);
  hub.close();
});

test('snapshots leave out optional resource types nobody set, so sidecars that predate them keep accepting snapshots', () => {
  const hub = new ConfigHub({ debounceMs: 0 });
  hub.set('mesh', 'policies', [{ p: 1 }]);
  const a = sub('reviews', 'reviews-0');
  hub.subscribe(a, 0);
  const snap = last(a);
  assert.equal(snap.type, 'snapshot');
  const keys = Object.keys(snap.resources);
  assert.ok(keys.includes('policies') && keys.includes('zones'), 'required types are always present');
  assert.ok(!keys.includes('revoked') && !keys.includes('peerAuthentication'), `unset optional types left out: ${keys}`);
  hub.ack('reviews-0', snap.version, snap.nonce);
  // Once set, the type travels in deltas and in the next full snapshot.
  hub.set('mesh', 'revoked', [{ serial: 'AB12', notAfter: Date.now() + 60_000 }]);
  const d = last(a);
  assert.deepEqual(d.type === 'delta' && Object.keys(d.resources), ['revoked']);
  const b = sub('reviews', 'reviews-1');
  hub.subscribe(b, 0);
  const snapB = last(b);
  assert.deepEqual(snapB.type === 'snapshot' && snapB.resources.revoked, [{ serial: 'AB12', notAfter: (d.type === 'delta' && (d.resources.revoked as { notAfter: number }[])[0]!.notAfter) }]);
  assert.ok(!Object.keys(snapB.resources).includes('peerAuthentication'));
  hub.close();
});
