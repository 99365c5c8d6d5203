import type { DetectorExplanation, SeriesDetector, SeriesDetectorFactory } from './detector.js';
import { numOpt } from './options.js';
import { EwStats } from './stats.js';

/**
 * Two-sided tabular CUSUM on standardised values. S⁺ and S⁻ accumulate deviations beyond the slack
 * `k` (in σ); the alarm level is `h`. The score is S/(S+h): 0.5 exactly at the decision interval,
 * approaching 1 as evidence of a sustained shift grows. After an alarm the sums restart and the
 * baseline re-learns quickly (`resetAlpha`), so a level shift raises one alarm, not an endless one.
 */
export class Cusum implements SeriesDetector {
  private readonly k: number;
  private readonly h: number;
  private readonly warmup: number;
  private readonly base: EwStats;
  private readonly fast: EwStats;
  private readonly resetAlpha: number;
  private sPos = 0;
  private sNeg = 0;
  private relearn = 0;
  private last: DetectorExplanation = { statistic: 0, baseline: 0, spread: 0 };

  constructor(opts?: Record<string, unknown>) {
    this.k = numOpt(opts, 'k', 0.5, 0);
    this.h = numOpt(opts, 'h', 5, 1e-6);
    this.warmup = numOpt(opts, 'warmup', 30, 2);
    this.base = new EwStats(numOpt(opts, 'baselineAlpha', 0.005, 1e-6, 1));
    this.resetAlpha = numOpt(opts, 'resetAlpha', 0.1, 1e-6, 1);
    this.fast = new EwStats(this.resetAlpha);
  }

  update(x: number): number {
    let score = 0;
    if (this.relearn > 0) {
      // Re-learning after an alarm: the new level is the norm to be, so nothing is scored.
      this.fast.push(x);
      if (--this.relearn === 0) {
        this.base.mean = this.fast.mean;
        this.base.variance = this.fast.variance;
      }
      return score;
    }
    const b = this.base;
    if (b.n >= this.warmup) {
      const sd = Math.max(b.std, 1e-9 * (Math.abs(b.mean) + 1));
      const z = (x - b.mean) / sd;
      this.sPos = Math.max(0, this.sPos + z - this.k);
      this.sNeg = Math.max(0, this.sNeg - z - this.k);
      const s = Math.max(this.sPos, this.sNeg);
      this.last = { statistic: s, baseline: b.mean, spread: sd };
      score = s / (s + this.h);
      if (s > this.h) {
        // A confirmed shift: the old baseline is history. Restart sums and re-learn from recent data.
        this.sPos = 0;
        this.sNeg = 0;
        this.relearn = Math.ceil(2 / this.resetAlpha);
        this.fast.n = 0;
        this.fast.mean = 0;
        this.fast.variance = 0;
      }
    }
    b.push(x);
    return score;
  }

  explain(): DetectorExplanation {
    return this.last;
  }
}

export const cusumFactory: SeriesDetectorFactory = {
  name: 'cusum',
  description: 'Two-sided tabular CUSUM for sustained shifts (options: k, h, warmup, baselineAlpha, resetAlpha)',
  create: (opts) => new Cusum(opts),
};
