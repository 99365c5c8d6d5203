import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN, T0, Trace, mesh } from './trace.js';
import { ofKind, runTrace } from './run.js';
import { mulberry32 } from '../../src/scoring/index.js';

// A compromised `details`: from minute 6 it calls services it never called before, at a high
// rate, for two minutes; then it goes quiet again.
function compromisedTrace(): Trace {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 16 * MIN, rate: 5 });
  const rng = mulberry32(99);
  const targets = ['ratings', 'accounts', 'reviews'];
  for (let ts = T0 + 6 * MIN; ts < T0 + 8 * MIN; ts += 150) {
    const dst = targets[Math.floor(rng() * targets.length)]!;
    t.add({ ts, source: { service: 'details', version: 'v1', instance: 'details-v1-0' }, destination: { service: dst }, method: 'GET', path: '/admin/export', status: 200, durationMs: 5, bytesOut: 800, mtls: true });
  }
  return t;
}

test('a compromised service is contained within the configured windows and released after cool-down', () => {
  const { events } = runTrace(compromisedTrace().sorted());
  const created = ofKind(events, 'zone.created').filter((e) => e.zone.type === 'containment');
  assert.equal(created.length, 1, JSON.stringify(created));
  const zone = created[0]!.zone;
  assert.deepEqual(zone.members, [{ service: 'details' }]);
  const createdAt = Date.parse(created[0]!.ts);
  // Hysteresis: two 10 s windows above the threshold, so not before 6:20 and well before 7:00.
  assert.ok(createdAt >= T0 + 6 * MIN + 20_000, `created at ${created[0]!.ts}`);
  assert.ok(createdAt <= T0 + 7 * MIN, `created at ${created[0]!.ts}`);
  // Time to containment is measured from the first anomalous window.
  assert.equal(zone.detectedAt, new Date(T0 + 6 * MIN).toISOString());
  const risk = ofKind(events, 'risk').find((e) => e.subject.kind === 'service' && (e.subject as { service: string }).service === 'details' && e.level === 'critical');
  assert.ok(risk, 'a critical risk event for details');
  assert.ok(risk.reasons.some((r) => r.feature === 'newEdges'), JSON.stringify(risk.reasons));
  assert.ok(ofKind(events, 'alert').some((a) => a.subject && (a.subject as { service?: string }).service === 'details'));
  const dissolved = ofKind(events, 'zone.dissolved').find((e) => e.zone.id === zone.id);
  assert.ok(dissolved, 'dissolved after cool-down');
  const at = Date.parse(dissolved.ts);
  // Attack ends at 8:00; cool-down is 5 min below the exit threshold.
  assert.ok(at >= T0 + 13 * MIN && at <= T0 + 15 * MIN, `dissolved at ${dissolved.ts}`);
  assert.match(dissolved.reason, /below/);
});

test('the same trace gives the same events (deterministic)', () => {
  const a = runTrace(compromisedTrace().sorted()).events;
  const b = runTrace(compromisedTrace().sorted()).events;
  assert.deepEqual(a, b);
});
