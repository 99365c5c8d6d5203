import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ZoneManager, type InstanceRisk, type ScoredSubject } from '../../../src/manager/zones/manager.js';
import { resolveEngineConfig, type EngineEvent } from '../../../src/manager/risk/index.js';

// Which members a risk zone is drawn around: the instances that explain a service's risk, or the
// whole service when the risk is spread; and the blast-radius guard's instance share.

const T = Date.UTC(2026, 10, 21, 10);
const W = 10_000;

function setup(instances: string[], config: Record<string, unknown> = {}) {
  const events: EngineEvent[] = [];
  const scores = new Map<string, number>();
  const seen = new Map<string, number>();
  const zm = new ZoneManager(resolveEngineConfig(config), (e) => events.push(e), {
    serviceCount: () => 10,
    instanceCount: () => instances.length,
    instances: (service) => instances.map((i): InstanceRisk => {
      const key = `instance:${service}/${i}`;
      return { key, subject: { kind: 'instance', service, instance: i, version: i.split('-')[1]! }, score: scores.get(key) ?? 0, level: (scores.get(key) ?? 0) >= 80 ? 'critical' : (scores.get(key) ?? 0) >= 50 ? 'high' : 'low', reasons: [{ detector: 'baseline', feature: 'newEdges', detail: `${i} called something new`, points: 70 }], at: seen.get(key) ?? 0 };
    }),
  });
  const window = (n: number, items: Array<[string, number]>) => {
    const now = T + n * W;
    // Every instance is live (scored this window); the listed ones with the given score.
    for (const i of instances) {
      seen.set(`instance:a/${i}`, now);
      if (!items.some(([k]) => k === `instance:a/${i}`)) scores.set(`instance:a/${i}`, 0);
    }
    const scored: ScoredSubject[] = items.map(([key, score]) => {
      scores.set(key, score);
      const [kind, name] = key.split(':') as [string, string];
      const subject = kind === 'instance' ? { kind: 'instance' as const, service: name.split('/')[0]!, instance: name.split('/')[1]! } : { kind: 'service' as const, service: name };
      return { key, subject, score, level: score >= 80 ? 'critical' : 'high', reasons: [{ detector: 'baseline', detail: 'service evidence', points: score }] };
    });
    zm.onScores(scored, now, (k) => scores.get(k) ?? 0);
    zm.tick(now);
  };
  const created = () => events.filter((e): e is Extract<EngineEvent, { event: 'zone.created' }> => e.event === 'zone.created').map((e) => e.zone);
  return { events, window, created, zm };
}

test('a service whose risk one instance of three carries gets a zone around that instance, naming it and its siblings', () => {
  const { window, created } = setup(['a-v1', 'a-v2', 'a-v3']);
  window(1, [['service:a', 90], ['instance:a/a-v2', 60]]);
  window(2, [['service:a', 90], ['instance:a/a-v2', 65]]);
  const z = created();
  assert.equal(z.length, 1);
  assert.deepEqual(z[0]!.members, [{ service: 'a', version: 'v2', instance: 'a-v2' }]);
  assert.equal(z[0]!.id, 'containment-a-v2-1');
  assert.match(z[0]!.reason, /^instance a-v2 of a risk 65 \(high\): a-v2 called something new — the risk of service a \(90\) is concentrated there; siblings a-v1 0, a-v3 0 normal$/);
});

test('risk spread over two of three instances is the service\'s: the zone is around all of it', () => {
  const { window, created } = setup(['a-v1', 'a-v2', 'a-v3']);
  window(1, [['service:a', 90], ['instance:a/a-v1', 60], ['instance:a/a-v2', 60]]);
  window(2, [['service:a', 90], ['instance:a/a-v1', 60], ['instance:a/a-v2', 60]]);
  assert.deepEqual(created().map((z) => z.members), [[{ service: 'a' }]]);
});

test('no instance carries the service\'s risk: the zone is around the service', () => {
  const { window, created } = setup(['a-v1', 'a-v2', 'a-v3']);
  window(1, [['service:a', 90]]);
  window(2, [['service:a', 90]]);
  assert.deepEqual(created().map((z) => z.members), [[{ service: 'a' }]]);
});

test('an instance zone grows to the whole service when the risk spreads, and never shrinks back', () => {
  const { window, created, events, zm } = setup(['a-v1', 'a-v2', 'a-v3']);
  window(1, [['service:a', 90], ['instance:a/a-v2', 70]]);
  window(2, [['service:a', 90], ['instance:a/a-v2', 70]]);
  assert.deepEqual(created()[0]!.members, [{ service: 'a', version: 'v2', instance: 'a-v2' }]);
  window(3, [['service:a', 95], ['instance:a/a-v2', 70], ['instance:a/a-v3', 70]]);
  const updated = events.filter((e): e is Extract<EngineEvent, { event: 'zone.updated' }> => e.event === 'zone.updated');
  assert.deepEqual(updated.at(-1)!.zone.members, [{ service: 'a' }]);
  window(4, [['service:a', 95], ['instance:a/a-v2', 70]]);
  assert.deepEqual(zm.list()[0]!.members, [{ service: 'a' }]);
});

test('instance triggers: at most maxInstanceShare of the live instances one by one, then an alert for an operator', () => {
  const { window, created, zm, events } = setup(['a-v1', 'a-v2', 'a-v3', 'a-v4']);
  window(1, [['instance:a/a-v1', 90], ['instance:a/a-v2', 90]]);
  window(2, [['instance:a/a-v1', 90], ['instance:a/a-v2', 90]]);
  assert.equal(created().length, 1);
  assert.deepEqual(zm.list()[0]!.members.map((m) => m.instance), ['a-v1', 'a-v2']);
  window(3, [['instance:a/a-v1', 90], ['instance:a/a-v2', 90], ['instance:a/a-v3', 90]]);
  window(4, [['instance:a/a-v1', 90], ['instance:a/a-v2', 90], ['instance:a/a-v3', 90]]);
  assert.deepEqual(zm.list()[0]!.members.map((m) => m.instance), ['a-v1', 'a-v2']);
  const alerts = events.filter((e): e is Extract<EngineEvent, { event: 'alert' }> => e.event === 'alert');
  assert.equal(alerts.length, 1);
  assert.match(alerts[0]!.message, /instance a-v3 of a held back by the blast-radius guard \(containing 3 of 4 instances of a exceeds the share 0\.5\)/);
});

test('an isolation trigger waits while the subject is already above the containment threshold', () => {
  const { window, created } = setup(['a-v1']);
  window(1, [['service:a', 60]]);
  window(2, [['service:a', 85]]);
  assert.deepEqual(created(), []);
  window(3, [['service:a', 85]]);
  assert.deepEqual(created().map((z) => z.type), ['containment']);
});
