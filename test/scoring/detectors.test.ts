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

// The score at which each detector's own alarm rule fires (CUSUM: S = h maps to 0.5).
const alarmAt: Record<string, number> = { ewma: 0.9, cusum: 0.5, 'change-point': 0.9, ensemble: 0.9 };
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
