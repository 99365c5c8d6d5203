import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN, T0, Trace, mesh } from './trace.js';
import { ofKind, runTrace } from './run.js';

test('exfiltration: bytes out 20× baseline from a sensitive service raises critical risk and an alert', () => {
  const t = new Trace();
  const from = T0 + 6 * MIN;
  const to = T0 + 8 * MIN;
  mesh(t, { from: T0, to: T0 + 10 * MIN, rate: 5, accountsBytes: (ts) => (ts >= from && ts < to ? 40_000 : 2000) });
  const config = { risk: { services: { accounts: { labels: ['sensitive'] } } } };
  const { events, engine } = runTrace(t.sorted(), config);
  // The label policy puts accounts in an isolation zone from the start.
  const iso = ofKind(events, 'zone.created').filter((e) => e.zone.type === 'isolation' && e.zone.origin === 'policy');
  assert.equal(iso.length, 1);
  assert.deepEqual(iso[0]!.zone.members, [{ service: 'accounts' }]);
  assert.equal(iso[0]!.zone.origin, 'policy');

  const risky = ofKind(events, 'risk').filter((e) => (e.level === 'critical' || e.level === 'high') && e.reasons.some((r) => r.feature === 'bytesOut'));
  const svc = risky.find((e) => e.subject.kind === 'service' && (e.subject as { service: string }).service === 'accounts');
  assert.ok(svc, `accounts scored high on bytesOut: ${JSON.stringify(risky.map((e) => e.subject))}`);
  assert.equal(svc.level, 'critical');
  assert.ok(Date.parse(svc.ts) >= from && Date.parse(svc.ts) <= from + MIN);
  assert.ok(svc.reasons.some((r) => /sensitive/.test(r.detail)));
  const alerts = ofKind(events, 'alert').filter((a) => a.severity === 'critical');
  assert.ok(alerts.some((a) => a.subject && a.subject.kind === 'service' && (a.subject as { service: string }).service === 'accounts'));
  // Nothing scored critical before the exfiltration started.
  assert.ok(ofKind(events, 'risk').every((e) => e.level !== 'critical' || Date.parse(e.ts) >= from));
  // The data leaves through accounts: it is contained (its caller's edge is critical too, but the
  // blast-radius guard of a 5-service mesh allows one automatic containment, so that one waits).
  const contained = ofKind(events, 'zone.created').filter((e) => e.zone.type === 'containment');
  assert.deepEqual(contained.map((e) => e.zone.members), [[{ service: 'accounts' }]]);
  assert.ok(ofKind(events, 'alert').some((a) => /blast-radius/.test(a.message)));
  const ex = engine.explain('accounts');
  assert.ok(ex && ex.zones.length >= 1);
});
