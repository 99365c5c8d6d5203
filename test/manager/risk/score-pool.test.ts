import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RiskEngine, createScoringPool, defaultEngineConfig, parseRecord, type EngineEvent } from '../../../src/manager/risk/index.js';
import { MIN, T0, Trace, mesh } from '../../scenarios/trace.js';

test('scoring in the piscina worker gives exactly the events of inline scoring', async () => {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 9 * MIN, rate: 3 });
  const targets = ['ratings', 'accounts', 'reviews'];
  for (let i = 0, ts = T0 + 5 * MIN; ts < T0 + 7 * MIN; ts += 150, i++) {
    t.add({ ts, source: { service: 'details' }, destination: { service: targets[i % 3]! }, method: 'GET', path: '/x', status: 200, durationMs: 2 });
  }
  const recs = t.sorted().map((r) => parseRecord(r));
  const inline = new RiskEngine();
  const a: EngineEvent[] = [];
  inline.on((e) => a.push(e));
  for (const r of recs) {
    inline.ingest(r);
    inline.advance(r.ts);
  }
  const cfg = defaultEngineConfig();
  const pool = createScoringPool(cfg);
  try {
    const live = new RiskEngine(cfg);
    const b: EngineEvent[] = [];
    live.on((e) => b.push(e));
    let next = -Infinity;
    for (const r of recs) {
      live.ingest(r);
      // The live manager ticks; here once per second of trace time.
      if (r.ts >= next) {
        await live.advanceAsync(r.ts, pool.score);
        next = r.ts + 1000;
      }
    }
    await live.advanceAsync(recs.at(-1)!.ts, pool.score);
    inline.advance(recs.at(-1)!.ts);
    assert.ok(a.some((e) => e.event === 'zone.created'));
    assert.deepEqual(b, a);
    const baselines = await pool.exportBaselines();
    assert.ok(baselines.length > 5);
  } finally {
    await pool.close();
  }
});

test('worker mode: advance() scores in the worker in the background; same zones as inline', async () => {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 9 * MIN, rate: 3 });
  const targets = ['ratings', 'accounts', 'reviews'];
  for (let i = 0, ts = T0 + 5 * MIN; ts < T0 + 7 * MIN; ts += 150, i++) {
    t.add({ ts, source: { service: 'details' }, destination: { service: targets[i % 3]! }, method: 'GET', path: '/x', status: 200, durationMs: 2 });
  }
  const recs = t.sorted().map((r) => parseRecord(r));
  const engine = new RiskEngine(defaultEngineConfig(), { worker: true });
  const events: EngineEvent[] = [];
  engine.on((e) => events.push(e));
  try {
    let next = -Infinity;
    for (const r of recs) {
      engine.ingest(r);
      if (r.ts >= next) {
        engine.advance(r.ts);
        await engine.settled();
        next = r.ts + 1000;
      }
    }
    assert.ok(events.some((e) => e.event === 'zone.created' && e.zone.members[0]!.service === 'details'));
  } finally {
    await engine.close();
  }
});
