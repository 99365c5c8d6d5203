/**
 * The detector registry: the Risk Assessment Engine, `etz detect` and `etz replay` all pick
 * detectors here by name, so every path runs the same code.
 */
import type { SeriesDetector, SeriesDetectorFactory, VectorDetector, VectorDetectorFactory } from './detector.js';
import { EtzError } from '../core/errors.js';
import { changePointFactory } from './change-point.js';
import { cusumFactory } from './cusum.js';
import { ensembleFactory } from './ensemble.js';
import { ewmaFactory } from './ewma.js';
import { halfSpaceTreesFactory, hstSeriesFactory } from './half-space-trees.js';
import { windowedGaussianFactory } from './windowed-gaussian.js';

export type * from './detector.js';
export { EwmaChart } from './ewma.js';
export { Cusum } from './cusum.js';
export { WindowedChangePoint } from './change-point.js';
export { HalfSpaceTrees, ShingledHst } from './half-space-trees.js';
export { WindowedGaussian } from './windowed-gaussian.js';
export { Ensemble } from './ensemble.js';
export { SlidingWindowCounter, thresholdScore, type SlidingWindowCounterOptions } from './rules.js';
export { Welford, EwStats, WindowStats, P2Quantile, erfc, normalTail, sigmaToScore, clamp01 } from './stats.js';
export { mulberry32, seedFromString, type Rng } from './prng.js';

export const seriesDetectors: Readonly<Record<string, SeriesDetectorFactory>> = Object.freeze({
  [ensembleFactory.name]: ensembleFactory,
  [ewmaFactory.name]: ewmaFactory,
  [cusumFactory.name]: cusumFactory,
  [changePointFactory.name]: changePointFactory,
  [hstSeriesFactory.name]: hstSeriesFactory,
  [windowedGaussianFactory.name]: windowedGaussianFactory,
});

export const vectorDetectors: Readonly<Record<string, VectorDetectorFactory>> = Object.freeze({
  [halfSpaceTreesFactory.name]: halfSpaceTreesFactory,
});

/** The best series detector on the NAB benchmark; what `etz detect` and the engine use by default. */
export const DEFAULT_SERIES_DETECTOR = ensembleFactory.name;
export const DEFAULT_VECTOR_DETECTOR = halfSpaceTreesFactory.name;

/** Creates a series detector by name; unknown names and bad options raise ETZ_ERR_DETECTOR_UNKNOWN / RangeError. */
export function getSeriesDetector(name: string = DEFAULT_SERIES_DETECTOR, opts?: Record<string, unknown>): SeriesDetector {
  const f = Object.hasOwn(seriesDetectors, name) ? seriesDetectors[name] : undefined;
  if (!f) {
    throw new EtzError('ETZ_ERR_DETECTOR_UNKNOWN', `unknown detector '${name}' (known: ${Object.keys(seriesDetectors).join(', ')})`);
  }
  return f.create(opts);
}

export function getVectorDetector(
  dimensions: number,
  name: string = DEFAULT_VECTOR_DETECTOR,
  opts?: Record<string, unknown>,
): VectorDetector {
  const f = Object.hasOwn(vectorDetectors, name) ? vectorDetectors[name] : undefined;
  if (!f) {
    throw new EtzError('ETZ_ERR_DETECTOR_UNKNOWN', `unknown vector detector '${name}' (known: ${Object.keys(vectorDetectors).join(', ')})`);
  }
  return f.create(dimensions, opts);
}
