import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN, T0, Trace, mesh } from './trace.js';
import { ofKind, runTrace } from './run.js';

// quote calls price for every request, both answer in ~2 ms; until minute 10, then quote moves its
// calls to a slow `tax` service.
function trace(): Trace {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 20 * MIN, rate: 2 });
  for (let ts = T0; ts < T0 + 20 * MIN; ts += 250) {
    t.add({ ts, source: { service: 'ingress' }, destination: { service: 'quote' }, method: 'GET', path: '/q', status: 200, durationMs: 3 });
    const dst = ts < T0 + 10 * MIN ? 'price' : 'tax';
    t.add({ ts: ts + 1, source: { service: 'quote' }, destination: { service: dst }, method: 'GET', path: '/p', status: 200, durationMs: dst === 'price' ? 2 : 80 });
  }
  return t;
}

test('measured performance zone: fast services talking mostly to each other are grouped, and released when they stop', () => {
  const { events } = runTrace(trace().sorted(), { zones: { performance: { measured: true, coolDownMs: 120_000 } } });
  // reviews → ratings (v2/v3 reviews call ratings every time, both fast) qualifies as well.
  const all = ofKind(events, 'zone.created').filter((e) => e.zone.type === 'performance');
  assert.deepEqual(all.map((e) => e.zone.members.map((m) => m.service)), [['price', 'quote'], ['ratings', 'reviews']]);
  const created = all.slice(0, 1);
  assert.ok(Date.parse(created[0]!.ts) < T0 + 5 * MIN);
  const dissolved = ofKind(events, 'zone.dissolved').find((e) => e.zone.id === created[0]!.zone.id);
  assert.ok(dissolved, 'dissolved after the group went away');
  assert.ok(Date.parse(dissolved.ts) > T0 + 10 * MIN + 120_000);
  assert.equal(ofKind(events, 'zone.created').filter((e) => e.zone.type !== 'performance').length, 0);
});

test('without measured: true only labels make performance zones', () => {
  const { events } = runTrace(trace().sorted());
  assert.equal(ofKind(events, 'zone.created').length, 0);
});
