import type { SeriesDetector, SeriesDetectorFactory } from './detector.js';
import { numOpt } from './options.js';
import { WindowStats, erfc } from './stats.js';

/**
 * NAB's "windowed Gaussian" reference detector, kept as a baseline and as a cross-check of the NAB
 * scoring port: score = 1 − Q(|x − μ| / σ) over a sliding window of past values (μ, σ exclude x).
 * The window slides every `step` values, as in NAB's own implementation.
 */
export class WindowedGaussian implements SeriesDetector {
  private readonly win: WindowStats;
  private readonly step: number;
  private pending: number[] = [];
  private mean = 0;
  private std = 1;

  constructor(opts?: Record<string, unknown>) {
    this.win = new WindowStats(Math.round(numOpt(opts, 'window', 6400, 2)));
    this.step = Math.round(numOpt(opts, 'step', 100, 1));
  }

  update(x: number): number {
    let score = 0;
    if (this.win.count > 0) {
      // NAB uses 1.4142, not √2; kept so the baseline matches NAB's published per-file results.
      score = 1 - 0.5 * erfc(Math.abs(x - this.mean) / this.std / 1.4142);
    }
    if (!this.win.full) {
      this.win.push(x);
      this.refresh();
    } else {
      this.pending.push(x);
      if (this.pending.length === this.step) {
        for (const v of this.pending) this.win.push(v);
        this.pending = [];
        this.refresh();
      }
    }
    return score;
  }

  private refresh(): void {
    this.mean = this.win.mean;
    this.std = this.win.std;
    if (this.std === 0) this.std = 0.000001;
  }
}

export const windowedGaussianFactory: SeriesDetectorFactory = {
  name: 'windowed-gaussian',
  description: 'Gaussian tail probability over a sliding window (NAB baseline; options: window, step)',
  create: (opts) => new WindowedGaussian(opts),
};
