import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN, T0, Trace, mesh, pageView } from './trace.js';
import { ofKind, runTrace } from './run.js';
import { mulberry32 } from '../../src/scoring/index.js';

test('a scraping user (> 5 requests a minute, fan-out counted once) is flagged and routed to reviews v1', () => {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 8 * MIN, rate: 4 });
  const rng = mulberry32(5);
  // 12 page views within 40 s at minute 5; each view fans out into 4–5 records with one requestId.
  for (let i = 0; i < 12; i++) pageView(t, rng, T0 + 5 * MIN + i * 3500, 'mallory');
  const { events, engine } = runTrace(t.sorted());
  const flagged = ofKind(events, 'principal.flagged');
  assert.deepEqual(flagged.map((e) => e.principal), ['mallory']);
  const f = flagged[0]!;
  assert.equal(f.action, 'route');
  assert.deepEqual(f.to, { service: 'reviews', version: 'v1' });
  // The 6th view (i = 5) is the first that makes "more than 5"; not the 2nd, as counting records would.
  assert.equal(Date.parse(f.ts), T0 + 5 * MIN + 5 * 3500);
  assert.equal(ofKind(events, 'zone.created').length, 0);
  assert.deepEqual(engine.flaggedPrincipals().map((p) => p.principal), ['mallory']);
  const explained = engine.explain('principal:mallory');
  assert.equal(explained?.level, 'high');
  assert.match(explained!.reasons[0]!.detail, /more than 5 requests/);
});

test('five page views a minute with heavy fan-out do not flag a user', () => {
  const t = new Trace();
  const rng = mulberry32(6);
  for (let i = 0; i < 10; i++) pageView(t, rng, T0 + i * 12_500, 'alice');
  const { events } = runTrace(t.sorted());
  assert.equal(ofKind(events, 'principal.flagged').length, 0);
});

test('the flag is lifted after its TTL once the user calms down', () => {
  const t = new Trace();
  const rng = mulberry32(7);
  for (let i = 0; i < 8; i++) pageView(t, rng, T0 + i * 2000, 'bob');
  // Quiet traffic from others for 15 minutes so the clock moves.
  mesh(t, { from: T0, to: T0 + 15 * MIN, rate: 1 });
  const { events } = runTrace(t.sorted());
  const cleared = ofKind(events, 'principal.cleared');
  assert.deepEqual(cleared.map((e) => e.principal), ['bob']);
  const back = ofKind(events, 'risk').filter((e) => e.subject.kind === 'principal').map((e) => [e.previous, e.level]);
  assert.deepEqual(back, [['low', 'high'], ['high', 'low']]);
  assert.ok(Date.parse(cleared[0]!.ts) >= T0 + 14_000 + 10 * MIN);
});

test('credential stuffing: a burst of 401s from one principal blocks it', () => {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 7 * MIN, rate: 3 });
  for (let i = 0; i < 30; i++) {
    t.add({ ts: T0 + 5 * MIN + i * 1000, source: { service: 'ingress', ip: '203.0.113.9' }, destination: { service: 'productpage', version: 'v1', instance: 'productpage-v1-0' }, principal: 'eve', method: 'POST', path: '/login', status: 401, durationMs: 3, requestId: `login-${i}` });
  }
  const { events, engine } = runTrace(t.sorted());
  // Six attempts within a minute already trip the request-rate rule (route); the 11th failure
  // (more than 10) escalates to a block.
  const flagged = ofKind(events, 'principal.flagged');
  assert.deepEqual(flagged.map((f) => [f.principal, f.action]), [['eve', 'route'], ['eve', 'block']]);
  const block = flagged[1]!;
  assert.match(block.reason, /authentication failures/);
  assert.equal(Date.parse(block.ts), T0 + 5 * MIN + 10_000);
  assert.equal(engine.flaggedPrincipals().find((p) => p.principal === 'eve')?.action, 'block');
  const risk = ofKind(events, 'risk').filter((e) => e.subject.kind === 'principal').at(-1);
  assert.equal(risk?.level, 'critical');
  assert.ok(ofKind(events, 'alert').some((a) => a.message.includes('eve')));
  assert.equal(ofKind(events, 'zone.created').length, 0);
});
