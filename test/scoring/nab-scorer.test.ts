import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  PROFILES,
  calcScoreByThreshold,
  calcSweepScore,
  evaluate,
  nullScores,
  perfectScores,
  probationaryLength,
  scaledSigmoid,
  scoreAtThreshold,
  type DataFile,
} from '../../bench/nab/scorer.js';
import { loadCorpus } from '../../bench/nab/corpus.js';
import { WINDOWED_GAUSSIAN_STANDARD } from '../../bench/nab/published.js';
import { WindowedGaussian } from '../../src/scoring/windowed-gaussian.js';
import { mulberry32 } from '../../src/scoring/prng.js';

const std = PROFILES.standard!;
// dist/test/scoring → project root → the shared NAB subset beside it.
const NAB_DIR = resolve(fileURLToPath(import.meta.url), '../../../../../shared/data/nab');

test('scaled sigmoid matches NAB (window edges and far false positives)', () => {
  assert.ok(Math.abs(scaledSigmoid(-1) - 0.98661) < 1e-5);
  assert.ok(Math.abs(scaledSigmoid(-0.5) - 0.84828) < 1e-5);
  assert.equal(scaledSigmoid(0), 0);
  assert.ok(Math.abs(scaledSigmoid(1) + 0.98661) < 1e-5);
  assert.equal(scaledSigmoid(3), -1);
  assert.equal(probationaryLength(1000), 150);
  assert.equal(probationaryLength(100_000), 750);
});

test('hand-computed file: early detection earns tpWeight, an FP before any window costs fpWeight', () => {
  const n = 200;
  const windows: [number, number][] = [[100, 119]];
  const scores = new Float64Array(n);
  scores[100] = 0.9; // first row of the window: full credit
  scores[40] = 0.8; // before any window: −fpWeight
  const rows = calcScoreByThreshold(calcSweepScore(scores, windows, 'f', std), std);
  assert.ok(Math.abs(scoreAtThreshold(rows, 0.9).score - 1) < 1e-12);
  assert.ok(Math.abs(scoreAtThreshold(rows, 0.8).score - (1 - 0.11)) < 1e-12);
  assert.equal(scoreAtThreshold(rows, 0.95).score, -1, 'nothing detected: one missed window');
  // A late detection in the window earns less; rows in the probation period never count.
  const late = new Float64Array(n);
  late[115] = 1;
  late[10] = 1;
  const r2 = scoreAtThreshold(calcScoreByThreshold(calcSweepScore(late, windows, 'f', std), std), 1);
  const pos = -(119 - 115 + 1) / 20;
  assert.ok(Math.abs(r2.score - scaledSigmoid(pos) / scaledSigmoid(-1)) < 1e-12);
  assert.equal(r2.fp, 0);
});

function syntheticCorpus(): DataFile[] {
  const rng = mulberry32(3);
  return Array.from({ length: 6 }, (_, k) => {
    const n = 1500 + k * 100;
    const windows: [number, number][] = k === 0 ? [] : [[400 + k * 30, 500 + k * 30], [900, 1000]];
    return { name: `f${k}`, scores: Float64Array.from({ length: n }, () => rng()), windows };
  });
}

test('normalisation: the null detector scores 0 and the perfect detector 100 in every profile', () => {
  for (const files of [syntheticCorpus()]) {
    for (const p of Object.keys(PROFILES)) {
      const nul = evaluate(files.map((f) => ({ ...f, scores: nullScores(f) })), p);
      const perfect = evaluate(files.map((f) => ({ ...f, scores: perfectScores(f) })), p);
      assert.ok(Math.abs(nul.normalized) < 1e-9, `${p} null ${nul.normalized}`);
      assert.ok(Math.abs(perfect.normalized - 100) < 1e-9, `${p} perfect ${perfect.normalized}`);
      assert.equal(nul.nullScore, -PROFILES[p]!.fnWeight * 10);
      // Random scores land in between, well below perfect.
      const rnd = evaluate(files, p);
      assert.ok(rnd.normalized < 60 && rnd.normalized > -200, `${p} random ${rnd.normalized}`);
    }
  }
});

test('reproduces NAB published per-file results of its windowed-Gaussian detector', { skip: !existsSync(NAB_DIR) && 'NAB subset not present' }, async () => {
  const corpus = await loadCorpus(NAB_DIR);
  // Non-trivial files (detections and false positives) that the port must score exactly as NAB.
  const names = ['realAdExchange/exchange-3_cpc_results.csv', 'realAdExchange/exchange-4_cpm_results.csv', 'realTraffic/TravelTime_387.csv'];
  for (const name of names) {
    const f = corpus.find((c) => c.name === name)!;
    const det = new WindowedGaussian();
    const scores = f.values.map((v) => det.update(v));
    const row = scoreAtThreshold(calcScoreByThreshold(calcSweepScore(scores, f.windows, f.name, std), std), 1.0);
    const [score, tp, fp, fn] = WINDOWED_GAUSSIAN_STANDARD[name]!;
    assert.ok(Math.abs(row.score - score) < 1e-9, `${name}: ${row.score} vs ${score}`);
    assert.deepEqual([row.tp, row.fp, row.fn], [tp, fp, fn]);
  }
  // And the corpus null detector is exactly −(windows scored) on the real subset.
  const files = corpus.map((c) => ({ name: c.name, scores: new Float64Array(c.values.length).fill(0.5), windows: c.windows }));
  const r = evaluate(files, 'standard');
  assert.equal(r.normalized, 0);
  assert.equal(r.nullScore, -corpus.reduce((a, c) => a + c.windows.length, 0));
});
