import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN, T0, Trace, mesh } from './trace.js';
import { ofKind, runTrace } from './run.js';
import type { EngineEvent } from '../../src/manager/risk/index.js';

function assertNoZones(events: EngineEvent[]): void {
  const zones = ofKind(events, 'zone.created').filter((e) => e.zone.type === 'containment' || e.zone.type === 'isolation');
  assert.deepEqual(zones.map((z) => z.zone.reason), []);
}

test('benign: a 3× load increase across the mesh creates no zone', () => {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 14 * MIN, rate: (ts) => (ts < T0 + 6 * MIN ? 4 : 12) });
  const { events } = runTrace(t.sorted());
  assertNoZones(events);
  // No workload reaches high risk (end users may, by the per-user rule, at 12 views/s).
  const high = ofKind(events, 'risk').filter((e) => e.subject.kind !== 'principal' && e.level !== 'low' && e.level !== 'medium');
  assert.deepEqual(high, []);
});

test('benign: a rolling deploy of reviews v4 replacing v3 creates no zone', () => {
  const t = new Trace();
  const start = T0 + 6 * MIN;
  mesh(t, {
    from: T0,
    to: T0 + 14 * MIN,
    rate: 5,
    reviews: (ts) => {
      const step = Math.floor((ts - start) / (2 * MIN));
      const list: Array<[string, string]> = [['v1', 'reviews-v1-0'], ['v2', 'reviews-v2-0']];
      if (ts < start) list.push(['v3', 'reviews-v3-0'], ['v3', 'reviews-v3-1']);
      else if (step === 0) list.push(['v3', 'reviews-v3-1'], ['v4', 'reviews-v4-0']);
      else list.push(['v4', 'reviews-v4-0'], ['v4', 'reviews-v4-1']);
      return list;
    },
  });
  const { events } = runTrace(t.sorted());
  assertNoZones(events);
});

test('benign: a diurnal cycle (load ×5 between trough and peak) creates no zone', () => {
  const t = new Trace();
  const period = 60 * MIN;
  mesh(t, { from: T0, to: T0 + 90 * MIN, rate: (ts) => 1 + 4 * (0.5 - 0.5 * Math.cos((2 * Math.PI * (ts - T0)) / period)) + 0.5 });
  const { events } = runTrace(t.sorted());
  assertNoZones(events);
});
