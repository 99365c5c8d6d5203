import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RiskEngine, resolveEngineConfig, parseRecord, type EngineEvent } from '../../../src/manager/risk/index.js';
import { riskExplain, riskList, trafficReport } from '../../../src/manager/risk/api.js';
import { EtzError } from '../../../src/core/errors.js';
import { MIN, T0, Trace, mesh } from '../../scenarios/trace.js';

function attackTrace() {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 16 * MIN, rate: 4 });
  const targets = ['ratings', 'accounts', 'reviews'];
  for (let i = 0, ts = T0 + 6 * MIN; ts < T0 + 8 * MIN; ts += 150, i++) {
    t.add({ ts, source: { service: 'details' }, destination: { service: targets[i % 3]! }, method: 'GET', path: '/dump', status: 200, durationMs: 3 });
  }
  return t.sorted().map((r) => parseRecord(r));
}

function feed(engine: RiskEngine, recs: ReturnType<typeof attackTrace>) {
  for (const r of recs) {
    engine.ingest(r);
    engine.advance(r.ts);
  }
}

test('snapshot/restore: a restarted engine keeps its zones and dissolves them on schedule', () => {
  const recs = attackTrace();
  const cut = recs.findIndex((r) => r.ts >= T0 + 7 * MIN);
  const a = new RiskEngine();
  const evA: EngineEvent[] = [];
  a.on((e) => evA.push(e));
  feed(a, recs.slice(0, cut));
  assert.equal(a.zones().length, 1);
  const snap = JSON.parse(JSON.stringify(a.snapshot({ baselines: true })));

  const b = new RiskEngine();
  b.restore(snap);
  assert.deepEqual(b.zones(), a.zones());
  const evB: EngineEvent[] = [];
  b.on((e) => evB.push(e));
  feed(b, recs.slice(cut));
  b.advance(recs.at(-1)!.ts + 5000);
  assert.ok(!evB.some((e) => e.event === 'zone.created' && e.zone.type === 'containment'), 'the zone is not created twice');
  const d = evB.find((e) => e.event === 'zone.dissolved');
  assert.ok(d && d.event === 'zone.dissolved' && d.zone.id === a.zones()[0]!.id);
});

test('risk API functions: list with filters, explain, traffic; bad input is a 400', () => {
  const engine = new RiskEngine();
  feed(engine, attackTrace());
  const list = riskList(engine, new URLSearchParams('kind=service&level=medium'));
  assert.ok(list.items.every((s) => s.subject.kind === 'service'));
  const all = riskList(engine, new URLSearchParams());
  assert.ok(all.items.length > list.items.length);
  const e = riskExplain(engine, 'service:details');
  assert.equal(e.key, 'service:details');
  assert.ok(e.features && 'requestsOut' in e.features);
  assert.throws(() => riskExplain(engine, 'service:nope'), (x: unknown) => x instanceof EtzError && x.code === 'ETZ_ERR_NOT_FOUND');
  assert.throws(() => riskList(engine, new URLSearchParams('level=severe')), (x: unknown) => x instanceof EtzError && x.code === 'ETZ_ERR_INVALID_INPUT');
  assert.throws(() => trafficReport(engine, new URLSearchParams('window=2d')), /window must be a duration/);
});

test('traffic analysis: volumes, errors, latency percentiles, top sources and anomalies', () => {
  const engine = new RiskEngine(resolveEngineConfig({}));
  feed(engine, attackTrace().filter((r) => r.ts < T0 + 7 * MIN));
  const r = trafficReport(engine, new URLSearchParams('window=2m'));
  assert.equal(r.window.ms, 120_000);
  const ratings = r.services.find((s) => s.service === 'ratings')!;
  assert.ok(ratings.requests > 0);
  assert.ok(ratings.latencyMs.p50 <= ratings.latencyMs.p95 && ratings.latencyMs.p95 <= ratings.latencyMs.p99);
  assert.ok(ratings.topSources.some((s) => s.source === 'details'));
  assert.ok(r.edges.some((e) => e.source === 'details' && e.destination === 'accounts'));
  assert.equal(r.summary.requests, r.services.reduce((n, s) => n + s.requests, 0));
  assert.ok(r.summary.anomalies >= 1);
  assert.ok(r.anomalies.some((a) => a.subject.kind === 'service' && (a.subject as { service: string }).service === 'details'));
  const pp = r.services.find((s) => s.service === 'productpage')!;
  assert.ok(pp.topPrincipals.length > 0);
});

test('late records (window already scored) are refused, not silently merged', () => {
  const engine = new RiskEngine();
  engine.ingestJson({ ts: T0, source: { service: 'a' }, destination: { service: 'b' }, method: 'GET', path: '/', status: 200, durationMs: 1 });
  engine.advance(T0 + 60_000);
  const r = engine.ingestJson({ ts: T0 + 1000, source: { service: 'a' }, destination: { service: 'b' }, method: 'GET', path: '/', status: 200, durationMs: 1 });
  assert.deepEqual(r, { ok: false, reason: 'late' });
  assert.equal(engine.counters.late, 1);
});

test('error logs count per service and instance; a burst after warm-up is an anomaly with its reason', () => {
  const engine = new RiskEngine();
  for (let w = 0; w < 30; w++) {
    const ts = T0 + w * 10_000;
    engine.ingestJson({ ts, source: { service: 'a' }, destination: { service: 'b' }, method: 'GET', path: '/', status: 200, durationMs: 1 });
    engine.ingestJson({ kind: 'log', ts: ts + 1, service: 'b', instance: 'b-0', level: 'info', message: 'ok' });
    const errors = w === 29 ? 40 : w % 5 === 0 ? 1 : 0;
    for (let i = 0; i < errors; i++) engine.ingestJson({ kind: 'log', ts: ts + 2 + i, service: 'b', instance: 'b-0', level: 'error', message: 'db timeout' });
    engine.advance(ts + 1);
  }
  engine.advance(T0 + 30 * 10_000 + 5000);
  const e = engine.explain('service:b')!;
  assert.equal(e.features!.errorLogs, 40);
  assert.ok(e.reasons.some((r) => r.feature === 'errorLogs' && r.detector === 'baseline'), JSON.stringify(e.reasons));
  assert.equal(engine.explain('instance:b/b-0')!.features!.errorLogs, 40);
  assert.throws(() => engine.ingestJson({ kind: 'log', ts: T0, service: 'b', level: 'error' }), /message: is required/);
});

test('the default snapshot keeps only subjects carrying risk; allSubjects keeps all', () => {
  const engine = new RiskEngine();
  feed(engine, attackTrace().filter((r) => r.ts < T0 + 7 * MIN));
  const small = engine.snapshot();
  const full = engine.snapshot({ allSubjects: true });
  assert.ok(small.subjects.length < full.subjects.length);
  assert.ok(small.subjects.every((s) => s.score > 0 || small.zones.zones.some((z) => z.triggers.includes(s.key))));
  assert.ok(small.subjects.some((s) => s.key === 'service:details'));
  assert.equal(small.zones.zones.length, 1);
});
