import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EwStats, P2Quantile, SlidingMax, Welford, WindowStats, erfc, normalTail, sigmaToScore } from '../../src/scoring/stats.js';
import { mulberry32, seedFromString } from '../../src/scoring/prng.js';
import { gaussianSeries } from './helpers.js';

test('Welford matches the two-pass mean and variance', () => {
  const xs = gaussianSeries(1000, 7, 5, 2);
  const w = new Welford();
  xs.forEach((x) => w.push(x));
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(w.mean - mean) < 1e-12);
  assert.ok(Math.abs(w.variance - v) < 1e-9);
});

test('WindowStats keeps exactly the last N values', () => {
  const w = new WindowStats(5);
  for (let i = 1; i <= 12; i++) w.push(i);
  assert.equal(w.count, 5);
  assert.equal(w.mean, 10);
  assert.equal(w.at(0), 8);
  assert.equal(w.at(4), 12);
  assert.ok(Math.abs(w.variance - 2) < 1e-12);
  assert.equal(w.push(13), 8, 'returns the evicted value');
});

test('EwStats converges to the mean and variance of a stationary series', () => {
  const e = new EwStats(0.01);
  gaussianSeries(20000, 3, 10, 3).forEach((x) => e.push(x));
  assert.ok(Math.abs(e.mean - 10) < 0.6, `mean ${e.mean}`);
  assert.ok(Math.abs(e.std - 3) < 0.5, `std ${e.std}`);
  assert.throws(() => new EwStats(0), RangeError);
});

test('P² estimates quantiles of a uniform stream within a few percent', () => {
  const rng = mulberry32(11);
  const p50 = new P2Quantile(0.5);
  const p95 = new P2Quantile(0.95);
  for (let i = 0; i < 20000; i++) {
    const x = rng() * 100;
    p50.push(x);
    p95.push(x);
  }
  assert.ok(Math.abs(p50.value - 50) < 2, `p50 ${p50.value}`);
  assert.ok(Math.abs(p95.value - 95) < 2, `p95 ${p95.value}`);
});

test('erfc and the normal tail agree with known values', () => {
  assert.ok(Math.abs(erfc(0) - 1) < 1e-7);
  assert.ok(Math.abs(erfc(1) - 0.157299207) < 1e-7);
  assert.ok(Math.abs(erfc(-1) - 1.842700793) < 1e-7);
  assert.ok(Math.abs(normalTail(1.959964) - 0.025) < 1e-6);
  assert.ok(Math.abs(sigmaToScore(3) - 0.9973) < 1e-4);
  assert.equal(sigmaToScore(-1), 0);
});

test('mulberry32 is deterministic per seed and differs across seeds', () => {
  const a = mulberry32(1);
  const b = mulberry32(1);
  const c = mulberry32(2);
  const sa = Array.from({ length: 5 }, a);
  assert.deepEqual(sa, Array.from({ length: 5 }, b));
  assert.notDeepEqual(sa, Array.from({ length: 5 }, c));
  assert.ok(sa.every((x) => x >= 0 && x < 1));
  assert.equal(seedFromString('svc-a'), seedFromString('svc-a'));
  assert.notEqual(seedFromString('svc-a'), seedFromString('svc-b'));
});

test('SlidingMax tracks the maximum of the last N values', () => {
  const m = new SlidingMax(3);
  const xs = [5, 1, 2, 0, 0, 7, 3, 3, 1, 0];
  const want = [5, 5, 5, 2, 2, 7, 7, 7, 3, 3];
  xs.forEach((x, i) => {
    m.push(x);
    assert.equal(m.max, want[i], `after ${i}`);
  });
  const rng = mulberry32(5);
  const big = new SlidingMax(50);
  const hist: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const x = rng();
    big.push(x);
    hist.push(x);
    assert.equal(big.max, Math.max(...hist.slice(-50)));
  }
});
