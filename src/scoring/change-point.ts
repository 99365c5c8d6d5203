import type { DetectorExplanation, SeriesDetector, SeriesDetectorFactory } from './detector.js';
import { numOpt } from './options.js';
import { WindowStats, sigmaToScore } from './stats.js';

/**
 * Windowed two-sample change-point test. The last `recent` values are compared with the
 * `reference` values just before them: a standardised mean difference catches level shifts, a
 * log-variance ratio catches changes in volatility (e.g. an error rate that starts flapping). Both
 * are in σ units under the no-change hypothesis; the larger is divided by `limit` and mapped to
 * [0, 1]. O(1) per value: two rings with running sums.
 */
export class WindowedChangePoint implements SeriesDetector {
  private readonly recent: WindowStats;
  private readonly ref: WindowStats;
  private readonly limit: number;
  private readonly minRef: number;
  private readonly varianceTest: boolean;
  private last: DetectorExplanation = { statistic: 0, baseline: 0, spread: 0 };

  constructor(opts?: Record<string, unknown>) {
    const w = numOpt(opts, 'recent', 12, 2, 1e5);
    const W = numOpt(opts, 'reference', 240, 4, 1e6);
    this.recent = new WindowStats(Math.round(w));
    this.ref = new WindowStats(Math.round(W));
    this.limit = numOpt(opts, 'limit', 4, 0.1);
    this.minRef = Math.min(this.ref.size, Math.max(4, Math.round(numOpt(opts, 'warmup', W / 2, 4))));
    this.varianceTest = numOpt(opts, 'varianceTest', 1, 0, 1) > 0;
  }

  update(x: number): number {
    const out = this.recent.push(x);
    if (!Number.isNaN(out)) this.ref.push(out);
    const r = this.ref;
    const c = this.recent;
    if (r.count < this.minRef || !c.full) {
      this.last = { statistic: 0, baseline: r.mean, spread: 0 };
      return 0;
    }
    const floor = 1e-9 * (Math.abs(r.mean) + 1);
    const vr = Math.max(r.variance, floor * floor);
    const se = Math.sqrt(vr * (1 / c.count + 1 / r.count));
    const tMean = Math.abs(c.mean - r.mean) / se;
    let stat = tMean;
    if (this.varianceTest) {
      const vc = Math.max(c.variance, floor * floor);
      const sdLog = Math.sqrt(2 / (c.count - 1) + 2 / (r.count - 1));
      stat = Math.max(stat, Math.abs(Math.log(vc / vr)) / sdLog);
    }
    this.last = { statistic: stat, baseline: r.mean, spread: Math.sqrt(vr) };
    return sigmaToScore(stat / this.limit);
  }

  explain(): DetectorExplanation {
    return this.last;
  }
}

export const changePointFactory: SeriesDetectorFactory = {
  name: 'change-point',
  description: 'Windowed two-sample test for level and variance shifts (options: recent, reference, limit, warmup, varianceTest)',
  create: (opts) => new WindowedChangePoint(opts),
};
