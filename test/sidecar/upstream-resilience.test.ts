import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer } from '../../src/sidecar/upstream/balancer.js';
import { CircuitBreaker } from '../../src/sidecar/upstream/circuit.js';
import { OutlierDetector } from '../../src/sidecar/upstream/outlier.js';
import { RetryBudget, RetryPolicy, type AttemptOutcome } from '../../src/sidecar/upstream/retry-policy.js';
import { createDestinationTraffic, sendWithRetries, type TryResult } from '../../src/sidecar/upstream/resilience.js';
import { ConfigError } from '../../src/core/errors.js';

const eps = ['a', 'b', 'c', 'd'].map((k) => ({ key: k }));

test('round robin visits every endpoint in turn', () => {
  const b = new Balancer<{ key: string }>('round-robin');
  const got = Array.from({ length: 8 }, () => b.pick(eps)!.key);
  assert.deepEqual(got, ['a', 'b', 'c', 'd', 'a', 'b', 'c', 'd']);
  assert.equal(b.pick([]), undefined);
});

test('least request (P2C) steers away from a busy endpoint', () => {
  const b = new Balancer<{ key: string }>('least-request');
  for (let i = 0; i < 50; i++) b.started('a');
  const counts: Record<string, number> = {};
  for (let i = 0; i < 3000; i++) {
    const k = b.pick(eps)!.key;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  // a only wins when both random choices are a, which P2C never does: zero.
  assert.equal(counts.a ?? 0, 0);
  for (const k of ['b', 'c', 'd']) assert.ok(counts[k]! > 700, `${k}: ${counts[k]}`);
  for (let i = 0; i < 50; i++) b.finished('a');
  assert.equal(b.inFlight('a'), 0);
});

test('consistent hash: same key same endpoint; an avoided endpoint only moves its own keys', () => {
  const b = new Balancer<{ key: string }>('consistent-hash');
  const home = new Map<string, string>();
  for (let i = 0; i < 2000; i++) home.set(`u${i}`, b.pick(eps, `u${i}`)!.key);
  for (let i = 0; i < 2000; i++) assert.equal(b.pick(eps, `u${i}`)!.key, home.get(`u${i}`));
  for (const [k, v] of home) {
    const now = b.pick(eps, k, (e) => e.key === 'b')!.key;
    if (v === 'b') assert.notEqual(now, 'b');
    else assert.equal(now, v);
  }
  // Everything avoided: panic routing still answers.
  assert.ok(b.pick(eps, 'x', () => true));
});

test('outlier detection ejects after consecutive errors, for base × count, and returns the endpoint', () => {
  const o = new OutlierDetector({ consecutive5xx: 3, baseEjectionTimeMs: 1000, maxEjectionPercent: 50 });
  const err: AttemptOutcome = { kind: 'response', status: 500 };
  let t = 0;
  assert.equal(o.record('a', err, 4, t), false);
  assert.equal(o.record('a', { kind: 'response', status: 200 }, 4, t), false); // success resets the run
  o.record('a', err, 4, t);
  o.record('a', { kind: 'reset' }, 4, t);
  assert.equal(o.record('a', { kind: 'connect-failure' }, 4, t), true);
  assert.equal(o.isEjected('a', t + 999), true);
  assert.equal(o.isEjected('a', t + 1000), false);
  // Second ejection lasts twice as long.
  t = 1500;
  for (let i = 0; i < 3; i++) o.record('a', err, 4, t);
  assert.equal(o.isEjected('a', t + 1999), true);
  assert.equal(o.isEjected('a', t + 2000), false);
  assert.equal(o.ejectionCount('a'), 2);
  assert.deepEqual(o.healthy(eps, (e) => e.key, t + 2000).map((e) => e.key), ['a', 'b', 'c', 'd']);
});

test('maxEjectionPercent caps ejections (at least one may go); 4xx never ejects', () => {
  const o = new OutlierDetector({ consecutive5xx: 1, baseEjectionTimeMs: 10_000, maxEjectionPercent: 50 });
  const e5: AttemptOutcome = { kind: 'response', status: 503 };
  assert.equal(o.record('a', e5, 4, 0), true);
  assert.equal(o.record('b', e5, 4, 0), true);
  assert.equal(o.record('c', e5, 4, 0), false);
  assert.equal(o.ejectedCount(0), 2);
  assert.deepEqual(o.healthy(eps, (e) => e.key, 0).map((e) => e.key), ['c', 'd']);
  const small = new OutlierDetector({ consecutive5xx: 1, maxEjectionPercent: 10 });
  assert.equal(small.record('a', e5, 3, 0), true, 'at least one endpoint may be ejected');
  assert.equal(small.record('b', e5, 3, 0), false);
  const fours = new OutlierDetector({ consecutive5xx: 1 });
  for (let i = 0; i < 10; i++) assert.equal(fours.record('a', { kind: 'response', status: 404 }, 2, 0), false);
  const gw = new OutlierDetector({ consecutive5xx: 0, consecutiveGatewayErrors: 2, maxEjectionPercent: 100 });
  gw.record('a', { kind: 'response', status: 500 }, 2, 0);
  assert.equal(gw.record('a', { kind: 'response', status: 500 }, 2, 0), false, '500 is not a gateway error');
  gw.record('a', { kind: 'response', status: 502 }, 2, 0);
  assert.equal(gw.record('a', { kind: 'timeout' }, 2, 0), true);
});

test('retry policy: idempotent-only by default, connect failures always safe, retry-on conditions', () => {
  const p = new RetryPolicy({ retryOn: ['connect-failure', 'reset', '503', 'retriable-4xx'] });
  assert.equal(p.retriable('GET', { kind: 'response', status: 503 }), true);
  assert.equal(p.retriable('GET', { kind: 'response', status: 500 }), false);
  assert.equal(p.retriable('GET', { kind: 'response', status: 409 }), true);
  assert.equal(p.retriable('GET', { kind: 'reset' }), true);
  assert.equal(p.retriable('GET', { kind: 'timeout' }), false);
  assert.equal(p.retriable('POST', { kind: 'response', status: 503 }), false);
  assert.equal(p.retriable('POST', { kind: 'reset' }), false);
  assert.equal(p.retriable('POST', { kind: 'connect-failure' }), true);
  const all = new RetryPolicy({ retryOn: ['5xx', 'timeout', 'retriable-status-codes'], retriableStatusCodes: [429], retryNonIdempotent: true });
  assert.equal(all.retriable('POST', { kind: 'response', status: 500 }), true);
  assert.equal(all.retriable('PATCH', { kind: 'timeout' }), true);
  assert.equal(all.retriable('GET', { kind: 'response', status: 429 }), true);
  assert.equal(all.retriable('GET', { kind: 'response', status: 404 }), false);
  assert.throws(() => new RetryPolicy({ retryOn: ['retriable-status-codes'] }), ConfigError);
});

test('backoff is jittered and capped', () => {
  const p = new RetryPolicy({ backoff: { baseMs: 10, maxMs: 50 } });
  assert.equal(p.backoffMs(1, () => 0.999), 9);
  assert.equal(p.backoffMs(2, () => 0.999), 19);
  assert.equal(p.backoffMs(5, () => 0.999), 49);
  assert.equal(p.backoffMs(3, () => 0), 0);
  const seen = new Set(Array.from({ length: 50 }, () => p.backoffMs(3)));
  assert.ok(seen.size > 5, 'jitter spreads retries');
});

test('retry budget: at most 20% extra under total failure, plus the floor', () => {
  const b = new RetryBudget({ percent: 20, minRetriesPerSec: 1, ttlMs: 10_000 });
  let retries = 0;
  for (let i = 0; i < 1000; i++) {
    const now = i * 5; // 1000 requests over 5 s
    b.onRequest(now);
    if (b.tryRetry(now)) retries++;
  }
  // 20% of 1000 plus a floor of 1/s × 10 s.
  assert.ok(retries <= 210, `retries ${retries}`);
  assert.ok(retries >= 190, `retries ${retries}`);
  // Deposits expire: after a quiet TTL only the floor is left.
  const later = 100_000;
  let r2 = 0;
  for (let i = 0; i < 100; i++) if (b.tryRetry(later)) r2++;
  assert.equal(r2, 10);
});

test('circuit breaker: pending and request limits answer overflow at once', () => {
  const c = new CircuitBreaker({ maxConnections: 2, maxPendingRequests: 1, maxRequests: 10, maxRetries: 1 });
  assert.equal(c.tryAcquire(), null);
  assert.equal(c.tryAcquire(), null);
  assert.equal(c.tryAcquire(), null); // pending 1
  assert.equal(c.tryAcquire(), 'pending');
  assert.equal(c.pending, 1);
  assert.deepEqual(c.state(), { pending: true, requests: false, retries: false });
  c.release();
  assert.equal(c.tryAcquire(), null);
  const r = new CircuitBreaker({ maxRequests: 1 });
  assert.equal(r.tryAcquire(), null);
  assert.equal(r.tryAcquire(), 'requests');
  assert.equal(c.tryAcquireRetry(), true);
  assert.equal(c.tryAcquireRetry(), false);
  c.releaseRetry();
  assert.equal(c.tryAcquireRetry(), true);
});

function outcomes(list: AttemptOutcome[]) {
  const calls: string[] = [];
  let i = 0;
  return {
    calls,
    attempt: async (e: { key: string }): Promise<TryResult<string>> => {
      calls.push(e.key);
      const outcome = list[Math.min(i++, list.length - 1)]!;
      return { outcome, response: outcome.kind === 'response' ? `status ${outcome.status}` : undefined };
    },
  };
}

test('sendWithRetries retries on another endpoint and returns the last response', async () => {
  const traffic = createDestinationTraffic<{ key: string }>('reviews', { loadBalancer: 'round-robin' });
  const o = outcomes([{ kind: 'response', status: 503 }, { kind: 'reset' }, { kind: 'response', status: 200 }]);
  const retried: string[] = [];
  const r = await sendWithRetries({
    traffic,
    endpoints: eps,
    method: 'GET',
    replayable: true,
    retry: new RetryPolicy({ attempts: 3, backoff: { baseMs: 0, maxMs: 0 } }),
    attempt: o.attempt,
    observer: { retry: (_s, reason) => retried.push(reason) },
  });
  assert.equal(r.kind, 'done');
  if (r.kind !== 'done') return;
  assert.equal(r.tries, 3);
  assert.equal(r.result.response, 'status 200');
  assert.equal(new Set(o.calls).size, 3, 'each try went to a different endpoint');
  assert.deepEqual(retried, ['503', 'reset']);
  assert.equal(traffic.circuit.inFlight, 1);
  r.release();
  r.release();
  assert.equal(traffic.circuit.inFlight, 0);
  for (const e of eps) assert.equal(traffic.balancer.inFlight(e.key), 0);
});

test('sendWithRetries never resends a POST by default, nor a streamed body', async () => {
  const traffic = createDestinationTraffic<{ key: string }>('reviews');
  const post = outcomes([{ kind: 'response', status: 503 }]);
  const r = await sendWithRetries({ traffic, endpoints: eps, method: 'POST', replayable: true, retry: new RetryPolicy({ attempts: 3 }), attempt: post.attempt });
  assert.equal(post.calls.length, 1);
  assert.equal(r.kind, 'done');
  if (r.kind === 'done') r.release();
  const streamed = outcomes([{ kind: 'reset' }]);
  await sendWithRetries({ traffic, endpoints: eps, method: 'PUT', replayable: false, retry: new RetryPolicy({ attempts: 3 }), attempt: streamed.attempt });
  assert.equal(streamed.calls.length, 1);
  // A connect failure sent nothing, so even a (body-less) POST may go elsewhere.
  const refused = outcomes([{ kind: 'connect-failure' }, { kind: 'response', status: 201 }]);
  const r2 = await sendWithRetries({
    traffic,
    endpoints: eps,
    method: 'POST',
    replayable: true,
    retry: new RetryPolicy({ attempts: 1, backoff: { baseMs: 0 } }),
    attempt: refused.attempt,
  });
  assert.equal(refused.calls.length, 2);
  assert.equal(r2.kind === 'done' && r2.result.response, 'status 201');
});

test('sendWithRetries: overflow is immediate; budget stops retry storms; outlier ejects', async () => {
  const traffic = createDestinationTraffic<{ key: string }>('ratings', {
    pool: { maxConnections: 1, maxPendingRequests: 0 },
    retryBudget: { percent: 20, minRetriesPerSec: 0 },
    outlierDetection: { consecutive5xx: 2, maxEjectionPercent: 100, baseEjectionTimeMs: 60_000 },
  });
  const hold = outcomes([{ kind: 'response', status: 200 }]);
  const first = await sendWithRetries({ traffic, endpoints: eps, method: 'GET', replayable: true, attempt: hold.attempt });
  const second = await sendWithRetries({ traffic, endpoints: eps, method: 'GET', replayable: true, attempt: hold.attempt });
  assert.deepEqual(second, { kind: 'overflow', which: 'pending' });
  assert.equal(hold.calls.length, 1);
  if (first.kind === 'done') first.release();

  let exhausted = 0;
  let tries = 0;
  for (let i = 0; i < 100; i++) {
    const fail = outcomes([{ kind: 'response', status: 503 }]);
    const r = await sendWithRetries({
      traffic,
      endpoints: eps,
      method: 'GET',
      replayable: true,
      retry: new RetryPolicy({ attempts: 3, backoff: { baseMs: 0, maxMs: 0 } }),
      attempt: fail.attempt,
      observer: { budgetExhausted: () => exhausted++ },
    });
    tries += fail.calls.length;
    if (r.kind === 'done') r.release();
  }
  assert.ok(tries <= 121, `100 requests made ${tries} tries`);
  assert.ok(exhausted > 0);
  assert.ok(traffic.outlier.ejectedCount(Date.now()) > 0, 'failing endpoints were ejected');
});
