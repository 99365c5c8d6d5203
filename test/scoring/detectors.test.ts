import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_SERIES_DETECTOR,
  getSeriesDetector,
  getVectorDetector,
  seriesDetectors,
} from '../../src/scoring/index.js';
import { EtzError } from '../../src/core/errors.js';
import { gaussianSeries, max, runSeries } from './helpers.js';

// A noisy daily-like series with a level shift at 1500 and a spike at 1000.
function shiftedSeries(): number[] {
  const xs = gaussianSeries(2000, 5, 100, 5);
  xs[1000]! += 60;
  for (let i = 1500; i < 2000; i++) xs[i]! += 40;
  return xs;
}

for (const name of Object.keys(seriesDetectors)) {
  test(`${name}: scores stay in [0, 1], deterministic and causal (prefix property)`, () => {
    const xs = shiftedSeries();
    const full = runSeries(getSeriesDetector(name), xs);
    assert.ok(full.every((s) => Number.isFinite(s) && s >= 0 && s <= 1));
    assert.deepEqual(runSeries(getSeriesDetector(name), xs), full);
    const k = 1234;
    assert.deepEqual(runSeries(getSeriesDetector(name), xs.slice(0, k)), full.slice(0, k));
  });
}

// Well past each detector's alarm level: ewma/change-point put their limit at 0.68 (two-sided
// normal probability), cusum its decision interval and the ensemble 5σ at 0.5.
const alarmAt: Record<string, number> = { ewma: 0.9, cusum: 0.5, 'change-point': 0.9, ensemble: 0.5 };
for (const name of Object.keys(alarmAt)) {
  test(`${name}: a level shift scores higher than the quiet stretch before it`, () => {
    const scores = runSeries(getSeriesDetector(name), shiftedSeries());
    const quiet = max(scores, 300, 950);
    const shift = max(scores, 1500, 1530);
    assert.ok(shift > quiet, `${name}: shift ${shift} vs quiet ${quiet}`);
    assert.ok(shift > alarmAt[name]!, `${name}: shift score ${shift}`);
  });
}

test('the default detector exists and reacts to a spike', () => {
  assert.ok(seriesDetectors[DEFAULT_SERIES_DETECTOR]);
  const scores = runSeries(getSeriesDetector(), shiftedSeries());
  assert.ok(scores[1000]! > max(scores, 300, 950), 'spike above the quiet maximum');
});

test('unknown detector names and bad options fail clearly', () => {
  assert.throws(() => getSeriesDetector('nope'), (e: unknown) => e instanceof EtzError && e.code === 'ETZ_ERR_DETECTOR_UNKNOWN');
  assert.throws(() => getSeriesDetector('toString'), EtzError);
  assert.throws(() => getSeriesDetector('ewma', { lambda: 'x' }), RangeError);
  assert.throws(() => getVectorDetector(3, 'nope'), EtzError);
});

test('half-space trees: an outlying vector scores above typical ones; seed controls the model', () => {
  const mk = (seed: number) => getVectorDetector(3, 'half-space-trees', { seed, window: 100 });
  const a = gaussianSeries(3000, 9);
  const feed = (d: ReturnType<typeof mk>) => {
    const out: number[] = [];
    for (let i = 0; i + 2 < a.length; i += 3) out.push(d.update([a[i]!, a[i + 1]!, a[i + 2]!], i));
    return out;
  };
  const d1 = mk(1);
  const s1 = feed(d1);
  assert.deepEqual(feed(mk(1)), s1, 'same seed, same scores');
  assert.notDeepEqual(feed(mk(2)), s1, 'another seed builds other trees');
  const typical = s1.slice(500).reduce((x, y) => x + y, 0) / (s1.length - 500);
  const outlier = d1.update([8, -8, 8], 1e6);
  assert.ok(outlier > typical + 0.1, `outlier ${outlier} vs typical ${typical}`);
  assert.throws(() => d1.update([1, 2], 0), RangeError);
});

test('detectors explain their last score', () => {
  const d = getSeriesDetector('ewma');
  runSeries(d, gaussianSeries(200, 4, 50, 1));
  d.update(80, 0);
  const e = d.explain!();
  assert.ok(e.statistic > 10, `statistic ${e.statistic}`);
  assert.ok(Math.abs(e.baseline - 50) < 1);
  assert.ok(e.spread > 0);
});

test('ensemble: an ongoing shift is reported at its onset, not on every later sample', () => {
  const scores = runSeries(getSeriesDetector('ensemble'), shiftedSeries());
  const onset = max(scores, 1500, 1510);
  assert.ok(max(scores, 1600, 1800) < onset / 2, 'later samples of the same incident are damped');
});

test('ensemble: time of day matters — a daytime-normal value at night is anomalous', () => {
  const d = getSeriesDetector('ensemble');
  const noise = gaussianSeries(288 * 8, 17, 0, 2);
  const t0 = Date.UTC(2024, 0, 1);
  let i = 0;
  // Eight days of a daily cycle: 100 at midday, 20 at midnight, 5-minute samples.
  for (; i < 288 * 7; i++) d.update(60 - 40 * Math.cos((2 * Math.PI * i) / 288) + noise[i]!, t0 + i * 300_000);
  const day = (k: number) => 60 - 40 * Math.cos((2 * Math.PI * k) / 288);
  // Continue normally until just before midnight, then serve the midday value at midnight.
  const normal: number[] = [];
  for (; i < 288 * 8 - 1; i++) normal.push(d.update(day(i) + noise[i]!, t0 + i * 300_000));
  const odd = d.update(100, t0 + i * 300_000);
  assert.ok(odd > 0.5, `midday value at midnight scores ${odd}`);
  assert.ok(odd > Math.max(...normal), 'above every normal sample of the day');
  assert.equal((d.explain!() as { component?: string }).component, 'seasonal');
});
