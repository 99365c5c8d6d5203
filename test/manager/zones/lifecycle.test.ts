import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ZoneManager, type ScoredSubject } from '../../../src/manager/zones/manager.js';
import { resolveEngineConfig, type EngineEvent } from '../../../src/manager/risk/index.js';
import { EtzError } from '../../../src/core/errors.js';

const T = Date.UTC(2026, 10, 21, 10);
const W = 10_000;

function setup(config: Record<string, unknown> = {}, inv = { services: 10, instances: 4 }) {
  const events: EngineEvent[] = [];
  const scores = new Map<string, number>();
  const zm = new ZoneManager(resolveEngineConfig(config), (e) => events.push(e), { serviceCount: () => inv.services, instanceCount: () => inv.instances });
  const window = (i: number, items: Array<[string, number]>) => {
    const now = T + i * W;
    const scored: ScoredSubject[] = items.map(([key, score]) => {
      scores.set(key, score);
      const [kind, name] = key.split(':') as [string, string];
      const subject = kind === 'instance' ? { kind: 'instance' as const, service: name.split('/')[0]!, instance: name.split('/')[1]! } : { kind: 'service' as const, service: name };
      return { key, subject, score, level: score >= 80 ? 'critical' : 'high', reasons: [] };
    });
    zm.onScores(scored, now, (k) => scores.get(k) ?? 0);
    zm.tick(now);
  };
  return { zm, events, window };
}

test('hysteresis: one spike does not contain; two consecutive windows do', () => {
  const { events, window } = setup();
  window(1, [['service:a', 95]]);
  window(2, [['service:a', 10]]);
  window(3, [['service:a', 95]]);
  assert.equal(events.length, 0);
  window(4, [['service:a', 90]]);
  assert.deepEqual(events.map((e) => e.event), ['zone.created']);
  const z = (events[0] as Extract<EngineEvent, { event: 'zone.created' }>).zone;
  assert.equal(z.type, 'containment');
  assert.equal(z.expiresAt, new Date(T + 4 * W + 3_600_000).toISOString());
});

test('cool-down: dissolved only after risk stayed below the exit threshold for the whole period', () => {
  const { events, window } = setup({ zones: { containment: { coolDownMs: 60_000 } } });
  window(1, [['service:a', 90]]);
  window(2, [['service:a', 90]]);
  window(3, [['service:a', 40]]); // calm from here
  window(6, [['service:a', 60]]); // back above exit (50): calm resets
  window(7, [['service:a', 20]]);
  window(12, [['service:a', 20]]);
  assert.ok(!events.some((e) => e.event === 'zone.dissolved'));
  window(13, [['service:a', 20]]);
  const d = events.find((e) => e.event === 'zone.dissolved') as Extract<EngineEvent, { event: 'zone.dissolved' }>;
  assert.ok(d);
  assert.equal(d.ts, new Date(T + 13 * W).toISOString());
});

test('operators: create, pin (automation and TTL leave it alone), extend, dissolve; bad input refused', () => {
  const { zm, events } = setup();
  const z = zm.create({ type: 'isolation', members: [{ service: 'payments' }], reason: 'audit', ttlMs: 60_000 }, T);
  assert.equal(z.origin, 'operator');
  zm.pin(z.id, true, 'investigating', T + 1);
  zm.tick(T + 120_000);
  assert.ok(zm.get(z.id), 'pinned zones outlive their TTL');
  zm.pin(z.id, false, 'done', T + 120_001);
  zm.extend(z.id, 600_000, 'more time', T + 120_002);
  zm.tick(T + 130_000);
  assert.ok(zm.get(z.id));
  zm.dissolve(z.id, 'resolved', T + 140_000);
  assert.equal(zm.get(z.id), undefined);
  assert.deepEqual(events.map((e) => e.event), ['zone.created', 'zone.updated', 'zone.updated', 'zone.updated', 'zone.dissolved']);
  assert.throws(() => zm.dissolve(z.id, 'again', T), (e: unknown) => e instanceof EtzError && e.code === 'ETZ_ERR_ZONE_NOT_FOUND');
  assert.throws(() => zm.create({ type: 'quarantine' as never, members: [{ service: 'x' }], reason: 'r' }, T), (e: unknown) => e instanceof EtzError && e.code === 'ETZ_ERR_ZONE_INVALID');
  assert.throws(() => zm.create({ type: 'containment', members: [], reason: 'r' }, T), /at least one service/);
  assert.throws(() => zm.create({ type: 'containment', members: [{ service: 'x' }], reason: ' ' }, T), /reason is required/);
});

test('an operator dissolving a risk zone keeps automation off that target for a cool-down', () => {
  const { zm, events, window } = setup();
  window(1, [['service:a', 90]]);
  window(2, [['service:a', 90]]);
  const id = (events[0] as Extract<EngineEvent, { event: 'zone.created' }>).zone.id;
  zm.dissolve(id, 'false positive', T + 2 * W);
  window(3, [['service:a', 90]]);
  window(4, [['service:a', 90]]);
  assert.equal(events.filter((e) => e.event === 'zone.created').length, 1);
});

test('blast-radius guard: beyond the mesh share, alert and wait for an operator', () => {
  const { events, window } = setup({}, { services: 4, instances: 1 });
  // 30% of 4 services → at most 1 automatic containment.
  window(1, [['service:a', 90], ['service:b', 90]]);
  window(2, [['service:a', 90], ['service:b', 90]]);
  const created = events.filter((e) => e.event === 'zone.created');
  assert.equal(created.length, 1);
  const alerts = events.filter((e) => e.event === 'alert') as Array<Extract<EngineEvent, { event: 'alert' }>>;
  assert.equal(alerts.length, 1);
  assert.match(alerts[0]!.message, /containment of service b held back by the blast-radius guard/);
  // The alert is raised once while the condition lasts, and no isolation zone is made instead.
  window(3, [['service:a', 90], ['service:b', 90]]);
  assert.equal(events.filter((e) => e.event === 'alert').length, 1);
  assert.equal(events.filter((e) => e.event === 'zone.created').length, 1);
});

test('blast-radius guard: a share of one service\'s instances', () => {
  const { events, window } = setup({ zones: { blastRadius: { maxInstanceShare: 0.25 } } }, { services: 10, instances: 3 });
  window(1, [['instance:a/a-0', 90]]);
  window(2, [['instance:a/a-0', 90]]);
  assert.equal(events.filter((e) => e.event === 'zone.created').length, 0);
  assert.match((events[0] as Extract<EngineEvent, { event: 'alert' }>).message, /one of 3 instances/);
});

test('instances of one service join a single zone (zone.updated)', () => {
  const { events, window } = setup({}, { services: 10, instances: 10 });
  window(1, [['instance:a/a-0', 90]]);
  window(2, [['instance:a/a-0', 90], ['instance:a/a-1', 90]]);
  window(3, [['instance:a/a-1', 90]]);
  assert.deepEqual(events.map((e) => e.event), ['zone.created', 'zone.updated']);
  const u = events[1] as Extract<EngineEvent, { event: 'zone.updated' }>;
  assert.deepEqual(u.zone.members.map((m) => m.instance), ['a-0', 'a-1']);
});

test('label policies: sensitive → isolation, two latency-critical services → one performance zone', () => {
  const { zm, events } = setup({ risk: { services: { payments: { labels: ['sensitive'] }, quote: { labels: ['latency-critical'] }, price: { labels: ['latency-critical'] } } } });
  zm.applyPolicies(T);
  zm.applyPolicies(T + 1);
  const created = events.filter((e) => e.event === 'zone.created') as Array<Extract<EngineEvent, { event: 'zone.created' }>>;
  assert.deepEqual(created.map((e) => [e.zone.type, e.zone.members.map((m) => m.service)]), [['isolation', ['payments']], ['performance', ['price', 'quote']]]);
  zm.tick(T + 86_400_000);
  assert.equal(zm.list().length, 2, 'policy zones have no TTL');
});

test('shadow mode: zones are reported as shadow', () => {
  const { events, window } = setup({ zones: { mode: 'shadow' } });
  window(1, [['service:a', 90]]);
  window(2, [['service:a', 90]]);
  assert.equal((events[0] as Extract<EngineEvent, { event: 'zone.created' }>).zone.shadow, true);
});
