import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlidingWindowCounter, thresholdScore } from '../../src/scoring/rules.js';

test('"more than 5 requests within a minute" holds on the 6th request only', () => {
  const c = new SlidingWindowCounter({ limit: 5, windowMs: 60_000 });
  const t0 = 1_700_000_000_000;
  for (let i = 0; i < 5; i++) assert.equal(c.hit('alice', t0 + i * 1000), false);
  assert.equal(c.hit('alice', t0 + 5000), true);
  assert.equal(c.count('alice', t0 + 5000), 6);
  assert.equal(c.exceeded('bob', t0), false, 'keys are independent');
  // A minute later the burst has aged out.
  assert.equal(c.hit('alice', t0 + 65_500), false);
  assert.equal(c.exceeded('alice', t0 + 65_500), false);
});

test('slow steady traffic never trips the rule', () => {
  const c = new SlidingWindowCounter({ limit: 5, windowMs: 60_000 });
  for (let i = 0; i < 100; i++) assert.equal(c.hit('k', i * 12_001), false);
});

test('tracked keys are bounded', () => {
  const c = new SlidingWindowCounter({ limit: 2, windowMs: 1000, maxKeys: 100 });
  for (let i = 0; i < 1000; i++) c.hit(`user-${i}`, i);
  assert.equal(c.size, 100);
  assert.throws(() => new SlidingWindowCounter({ limit: -1, windowMs: 1 }), RangeError);
});

test('thresholdScore ramps from warn to critical', () => {
  assert.equal(thresholdScore(0.01, 0.05, 0.25), 0);
  assert.ok(Math.abs(thresholdScore(0.15, 0.05, 0.25) - 0.5) < 1e-12);
  assert.equal(thresholdScore(0.9, 0.05, 0.25), 1);
  assert.throws(() => thresholdScore(1, 2, 1), RangeError);
});
