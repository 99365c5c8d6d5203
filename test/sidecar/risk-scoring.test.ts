import { test } from 'node:test';
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createRegistry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import { validateConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/core/errors.js';
import { RiskScorer, riskScorerFor, riskScoringFilter, riskScoringSchema } from '../../src/sidecar/filters/risk-scoring.js';
import { startSidecar } from './helpers.js';
import { call, registryOf, startBackend } from './traffic-fixtures.js';
import { fakeEnv } from './routing-fixtures.js';

// The routing filter's own rate detector is kept out of the way (a huge threshold), so only the
// inline risk scoring can flag anyone here.
const routes = {
  rules: [{ name: 'reviews', hosts: ['reviews'], route: [{ subset: { version: 'v2' } }], suspicious: { subset: { version: 'v1' } } }],
  detector: { threshold: 1_000_000 },
};

test('a principal with a burst is flagged by the worker and rerouted; others are not; the pool closes with the sidecar', async () => {
  const backends = await Promise.all(['v1', 'v2'].map((v) => startBackend(v, 'ok')));
  const registry = createRegistry();
  const riskScoring = { enabled: true, maxRequests: 10, windowMs: 60_000, threshold: 80, flushMs: 20 };
  const sidecar = await startSidecar(1, { service: { name: 'productpage', version: 'v1' }, inbound: { enabled: false }, registry: registryOf('reviews', backends), resources: { routes, riskScoring } }, { registry });
  try {
    assert.ok((sidecar.configDump().chains as Record<string, string[]>).outbound!.includes('risk-scoring'));
    const port = sidecar.ports.outbound;
    const ask = async (user: string, id: string) => (await call(port, 'reviews', { headers: { 'x-etz-principal': user, 'x-request-id': id } })).headers['x-backend'];
    for (let i = 0; i < 3; i++) assert.equal(await ask('alice', `a${i}`), 'v2');
    // Fan-out calls sharing one request id count once: 30 calls, 3 user requests.
    for (let i = 0; i < 30; i++) assert.equal(await ask('bob', `b${i % 3}`), 'v2');
    for (let i = 0; i < 15; i++) await ask('mallory', `m${i}`);
    const scorer = riskScorerFor(registry, nullLogger);
    await scorer.flush();
    // Exactly one principal was ever flagged (batches flush every 20 ms, so it may be an earlier one).
    assert.match(await registry.metrics(), /etz_risk_scoring_flagged_total 1\b/);
    for (let i = 0; i < 3; i++) assert.equal(await ask('mallory', `m-late-${i}`), 'v1');
    assert.equal(await ask('alice', 'a-late'), 'v2');
    assert.equal(await ask('bob', 'b-late'), 'v2');
    assert.ok(scorer.threads >= 1);
    await sidecar.close({ drainMs: 100 });
    assert.equal(scorer.closed, true);
    assert.equal(scorer.threads, 0, 'the worker pool is destroyed on close');
  } finally {
    await sidecar.close({ drainMs: 100 });
    await Promise.all(backends.map((b) => b.close()));
  }
});

test('off by default and when the resource says so; settings are validated', () => {
  assert.equal(riskScoringFilter.compile(undefined, fakeEnv('outbound')), null);
  assert.equal(riskScoringFilter.compile({ enabled: false }, fakeEnv('outbound')), null);
  assert.throws(() => validateConfig('resources', riskScoringSchema, { enabled: true, threshold: 0 }), (e: unknown) => e instanceof ConfigError && e.field === '/threshold');
  assert.throws(() => validateConfig('resources', riskScoringSchema, { enabled: true, windowSec: 1 }), ConfigError);
});

test('a large batch is scored in the worker while the event loop stays responsive', async (t) => {
  const registry = createRegistry();
  const flagged: string[] = [];
  const scorer = new RiskScorer(registry, nullLogger, (p) => flagged.push(p));
  t.after(() => scorer.close());
  scorer.configure({ enabled: true, maxRequests: 50, maxPrincipals: 500_000, batchSize: 10_000_000, maxQueued: 10_000_000, flushMs: 60_000 });
  const now = Date.now();
  const N = 200_000;
  for (let i = 0; i < N; i++) scorer.record(`user-${i % 50_000}`, `r${i}`, i % 50 === 0 ? 500 : 200, now + (i >> 10));
  for (let i = 0; i < 200; i++) scorer.record('burst', `x${i}`, 200, now + 500);
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  // A ticker on the loop: it keeps running while the worker scores.
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  await scorer.flush();
  clearInterval(ticker);
  h.disable();
  const workerMs = scorer.last!.workerMs;
  const maxDelayMs = h.max / 1e6;
  assert.deepEqual(flagged, ['burst']);
  assert.equal(scorer.last!.tracked, 50_001);
  // The loop's worst stall is a fraction of the scoring time (only the batch's hand-over runs on it).
  assert.ok(maxDelayMs < workerMs, `event-loop max delay ${maxDelayMs.toFixed(1)} ms vs ${workerMs.toFixed(1)} ms of scoring`);
  assert.ok(ticks > 0);
  t.diagnostic(`worker ${workerMs.toFixed(1)} ms, event-loop max delay ${maxDelayMs.toFixed(1)} ms, ticks ${ticks}`);
});
