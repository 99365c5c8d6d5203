import type { DetectorExplanation, SeriesDetector, SeriesDetectorFactory } from './detector.js';
import { WindowedChangePoint } from './change-point.js';
import { EwmaChart } from './ewma.js';
import { numOpt } from './options.js';

/**
 * The default series detector: the larger of a fast EWMA chart (spikes, short bursts) and the
 * windowed change-point test (level and variance shifts).
 */
export class Ensemble implements SeriesDetector {
  private readonly parts: SeriesDetector[];
  private lastPart = 0;

  constructor(opts?: Record<string, unknown>) {
    this.parts = [
      new EwmaChart({ lambda: numOpt(opts, 'lambda', 0.5, 1e-4, 1), limit: 3, baselineAlpha: 0.005 }),
      new WindowedChangePoint({ recent: 12, reference: 288, limit: 4 }),
    ];
  }

  update(x: number, t: number): number {
    let best = 0;
    for (let i = 0; i < this.parts.length; i++) {
      const s = this.parts[i]!.update(x, t);
      if (s > best) {
        best = s;
        this.lastPart = i;
      }
    }
    return best;
  }

  explain(): DetectorExplanation {
    return this.parts[this.lastPart]!.explain?.() ?? { statistic: 0, baseline: 0, spread: 0 };
  }
}

export const ensembleFactory: SeriesDetectorFactory = {
  name: 'ensemble',
  description: 'Spike + level/variance-shift ensemble tuned on NAB (the default)',
  create: (opts) => new Ensemble(opts),
};
