import type { DetectorExplanation, SeriesDetector, SeriesDetectorFactory } from './detector.js';
import { numOpt } from './options.js';
import { EwStats, sigmaToScore } from './stats.js';

/**
 * EWMA control chart. The chart statistic z = λx + (1−λ)z smooths noise so that small sustained
 * shifts stand out; it is compared with a slowly adapting baseline (mean/σ of the raw values with
 * weight `baselineAlpha`) using the EWMA's own standard error σ·√(λ/(2−λ)). The score is the
 * two-sided normal probability of the deviation divided by `limit` (L, in σ of the chart), so a
 * score of sigmaToScore(1) ≈ 0.68 marks the classic L-sigma control limit and 0.99 lies at 2.58·L.
 * The risk engine's thresholds rely on this scale: keep it stable.
 */
export class EwmaChart implements SeriesDetector {
  private readonly lambda: number;
  private readonly limit: number;
  private readonly warmup: number;
  private readonly base: EwStats;
  private readonly seFactor: number;
  private z = NaN;
  private last: DetectorExplanation = { statistic: 0, baseline: 0, spread: 0 };

  constructor(opts?: Record<string, unknown>) {
    this.lambda = numOpt(opts, 'lambda', 0.2, 1e-4, 1);
    this.limit = numOpt(opts, 'limit', 3, 0.1);
    this.warmup = numOpt(opts, 'warmup', 30, 2);
    this.base = new EwStats(numOpt(opts, 'baselineAlpha', 0.01, 1e-6, 1));
    this.seFactor = Math.sqrt(this.lambda / (2 - this.lambda));
  }

  update(x: number): number {
    this.z = Number.isNaN(this.z) ? x : this.lambda * x + (1 - this.lambda) * this.z;
    const { mean, std, n } = this.base;
    let score = 0;
    if (n >= this.warmup) {
      const se = Math.max(std, 1e-9 * (Math.abs(mean) + 1)) * this.seFactor;
      const k = Math.abs(this.z - mean) / se;
      this.last = { statistic: k, baseline: mean, spread: se };
      score = sigmaToScore(k / this.limit);
    } else {
      this.last = { statistic: 0, baseline: mean, spread: 0 };
    }
    // Learn after scoring: the current value must not vouch for itself.
    this.base.push(x);
    return score;
  }

  explain(): DetectorExplanation {
    return this.last;
  }
}

export const ewmaFactory: SeriesDetectorFactory = {
  name: 'ewma',
  description: 'EWMA control chart against a slowly adapting baseline (options: lambda, limit, warmup, baselineAlpha)',
  create: (opts) => new EwmaChart(opts),
};
