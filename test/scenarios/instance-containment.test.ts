import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN, T0, Trace, mesh, type Rec } from './trace.js';
import { ofKind, runTrace } from './run.js';
import type { EngineEvent } from '../../src/manager/risk/index.js';

// A compromised reviews instance, as the Bookinfo demo plays it: from minute 6 it calls services
// its service never called (details, productpage, other reviews) and uploads 64 KiB bodies, also
// to the sensitive ratings. Each call is reported twice, as sidecars do: by the caller's sidecar
// (outbound, naming the calling instance) and by the callee's (inbound, which only knows the
// caller's service from its certificate).

const ATTACK_FROM = T0 + 6 * MIN;
const ATTACK_TO = T0 + 8 * MIN;
const TARGETS = ['details', 'productpage', 'reviews', 'ratings'];
const INSTANCES: Array<[string, string]> = [['v1', 'reviews-v1-0'], ['v2', 'reviews-v2-0'], ['v3', 'reviews-v3-0']];

function exfiltrate(t: Trace, version: string, instance: string, offset: number): void {
  let i = 0;
  for (let ts = ATTACK_FROM + offset; ts < ATTACK_TO; ts += 200) {
    const dst = TARGETS[i++ % TARGETS.length]!;
    const id = t.nextId('exfil');
    const call: Rec = { ts, source: { service: 'reviews', version, instance }, destination: { service: dst }, method: 'POST', path: '/admin/export', status: dst === 'productpage' ? 404 : 200, durationMs: 9, bytesIn: 65_536, bytesOut: 120, mtls: true, requestId: id };
    t.add(call);
    t.add({ ...call, ts: ts + 1, source: { service: 'reviews', identity: 'spiffe://etz.local/ns/default/sa/reviews' }, destination: { service: dst, version: 'v1', instance: `${dst}-v1-0` } });
  }
}

function run(bad: Array<[string, string]>) {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 16 * MIN, rate: 5, reviews: () => INSTANCES });
  bad.forEach(([v, inst], k) => exfiltrate(t, v, inst, k * 50));
  return runTrace(t.sorted(), { risk: { services: { ratings: { labels: ['sensitive'] } } } });
}

const zonesOf = (events: EngineEvent[], type: string) => ofKind(events, 'zone.created').filter((e) => e.zone.type === type && e.zone.origin === 'risk');

test('one instance of three goes bad: the containment zone is drawn around that instance only, its siblings and its victims stay out', () => {
  const { events, engine } = run([['v2', 'reviews-v2-0']]);
  const created = zonesOf(events, 'containment');
  assert.equal(created.length, 1, JSON.stringify(created.map((e) => e.zone)));
  const zone = created[0]!.zone;
  assert.deepEqual(zone.members, [{ service: 'reviews', version: 'v2', instance: 'reviews-v2-0' }]);
  // The explanation names the instance and what it did.
  assert.match(zone.reason, /instance reviews-v2-0 of reviews/);
  assert.match(zone.reason, /edges never seen in the baseline/);
  assert.match(zone.reason, /siblings reviews-v1-0 [\d.]+, reviews-v3-0 [\d.]+ normal/);
  const createdAt = Date.parse(created[0]!.ts);
  assert.ok(createdAt >= ATTACK_FROM + 20_000 && createdAt <= ATTACK_FROM + MIN, created[0]!.ts);
  // Never widened to the service, never another member.
  for (const u of ofKind(events, 'zone.updated').filter((e) => e.zone.id === zone.id)) {
    assert.deepEqual(u.zone.members, zone.members, u.reason);
  }
  // Nothing else is contained or isolated by risk: not the siblings, not the services it floods.
  assert.deepEqual(zonesOf(events, 'isolation').map((e) => e.zone.members), []);
  // The instance itself is critical on its own evidence; the siblings stay low.
  const inst = ofKind(events, 'risk').find((e) => e.subject.kind === 'instance' && (e.subject as { instance: string }).instance === 'reviews-v2-0' && e.level === 'critical');
  assert.ok(inst, 'reviews-v2-0 scored critical');
  assert.ok(inst.reasons.some((r) => r.feature === 'newEdges'), JSON.stringify(inst.reasons));
  assert.ok(inst.reasons.some((r) => r.detector === 'siblings' && r.feature === 'bytesOut'), JSON.stringify(inst.reasons));
  for (const sib of ['reviews-v1-0', 'reviews-v3-0']) {
    const high = ofKind(events, 'risk').filter((e) => e.subject.kind === 'instance' && (e.subject as { instance: string }).instance === sib && (e.level === 'high' || e.level === 'critical'));
    assert.deepEqual(high, [], sib);
  }
  // The flooded services are victims: their risk never holds at isolation level.
  for (const svc of ['productpage', 'details', 'ratings']) {
    const hot = ofKind(events, 'risk').filter((e) => e.subject.kind === 'service' && (e.subject as { service: string }).service === svc && (e.level === 'high' || e.level === 'critical'));
    assert.ok(hot.length <= 1, `${svc}: ${JSON.stringify(hot.map((e) => [e.ts, e.score]))}`);
  }
  // Released after the attack and the cool-down.
  const dissolved = ofKind(events, 'zone.dissolved').find((e) => e.zone.id === zone.id);
  assert.ok(dissolved, 'dissolved after the cool-down');
  assert.ok(Date.parse(dissolved.ts) >= ATTACK_TO + 5 * MIN, dissolved.ts);
  // The requests it sent are judged on it, not on the services it sent them to.
  assert.ok(engine.explain('instance:reviews/reviews-v2-0'));
});

test('every instance goes bad: the risk is spread over the service, which is contained as a whole', () => {
  const { events } = run(INSTANCES);
  const created = zonesOf(events, 'containment');
  assert.equal(created.length, 1, JSON.stringify(created.map((e) => e.zone)));
  const zone = created[0]!.zone;
  // Whether the first trigger was an instance or the service, the zone ends around all of reviews.
  const last = ofKind(events, 'zone.updated').filter((e) => e.zone.id === zone.id).at(-1)?.zone ?? zone;
  assert.deepEqual(last.members, [{ service: 'reviews' }]);
  assert.ok(Date.parse(created[0]!.ts) <= ATTACK_FROM + MIN);
  // No instance-by-instance containment beyond the share the blast-radius guard allows.
  const instZones = created.filter((e) => e.zone.members.some((m) => m.instance !== undefined && m.service !== 'reviews'));
  assert.deepEqual(instZones, []);
});
