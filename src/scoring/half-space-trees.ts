import type { SeriesDetector, SeriesDetectorFactory, VectorDetector, VectorDetectorFactory } from './detector.js';
import { numOpt } from './options.js';
import { mulberry32 } from './prng.js';
import { EwStats } from './stats.js';

/**
 * Streaming Half-Space Trees (Tan, Ting & Liu, 2011). Each tree halves a random work space along
 * random dimensions; mass (point counts) per node is learned over a window of `window` points and
 * then becomes the reference profile for the next window. Points that fall into nodes that held
 * little mass in the reference window are anomalous. Trees are complete binary trees in flat typed
 * arrays: no per-update allocation, O(trees × depth) per point.
 *
 * HST needs features in [0, 1]; raw features (request rates, bytes, latencies) are unbounded, so
 * each dimension is squashed causally with a logistic of its exponentially weighted z-score.
 */
export class HalfSpaceTrees implements VectorDetector {
  private readonly trees: number;
  private readonly depth: number;
  private readonly window: number;
  private readonly sizeLimit: number;
  private readonly nodes: number;
  private readonly splitDim: Int32Array;
  private readonly splitAt: Float64Array;
  private readonly ref: Float64Array;
  private readonly latest: Float64Array;
  private readonly norm: EwStats[];
  private readonly x: Float64Array;
  private readonly leafPath: Int32Array;
  private seen = 0;
  private hasRef = false;

  constructor(readonly dimensions: number, opts?: Record<string, unknown>) {
    if (!(Number.isInteger(dimensions) && dimensions >= 1)) throw new RangeError('dimensions must be an integer >= 1');
    this.trees = Math.round(numOpt(opts, 'trees', 25, 1, 1000));
    this.depth = Math.round(numOpt(opts, 'depth', 10, 1, 20));
    this.window = Math.round(numOpt(opts, 'window', 250, 2));
    this.sizeLimit = numOpt(opts, 'sizeLimit', Math.max(1, 0.1 * this.window), 0);
    const alpha = numOpt(opts, 'normAlpha', 0.002, 1e-6, 1);
    const rng = mulberry32(numOpt(opts, 'seed', 42));
    this.nodes = (1 << (this.depth + 1)) - 1;
    const internal = (1 << this.depth) - 1;
    this.splitDim = new Int32Array(this.trees * internal);
    this.splitAt = new Float64Array(this.trees * internal);
    this.ref = new Float64Array(this.trees * this.nodes);
    this.latest = new Float64Array(this.trees * this.nodes);
    this.norm = Array.from({ length: dimensions }, () => new EwStats(alpha));
    this.x = new Float64Array(dimensions);
    this.leafPath = new Int32Array(this.depth + 1);
    const lo = new Float64Array(dimensions);
    const hi = new Float64Array(dimensions);
    for (let t = 0; t < this.trees; t++) {
      for (let q = 0; q < dimensions; q++) {
        const s = rng();
        const r = 2 * Math.max(s, 1 - s);
        lo[q] = s - r;
        hi[q] = s + r;
      }
      this.build(t * internal, 0, lo, hi, rng);
    }
  }

  // Assign split dimension/value to node `i` (heap order) and recurse; work ranges are restored
  // on return so one pair of arrays serves the whole build.
  private build(base: number, i: number, lo: Float64Array, hi: Float64Array, rng: () => number): void {
    if (i >= (1 << this.depth) - 1) return;
    const q = Math.floor(rng() * this.dimensions);
    const mid = (lo[q]! + hi[q]!) / 2;
    this.splitDim[base + i] = q;
    this.splitAt[base + i] = mid;
    const oldHi = hi[q]!;
    hi[q] = mid;
    this.build(base, 2 * i + 1, lo, hi, rng);
    hi[q] = oldHi;
    const oldLo = lo[q]!;
    lo[q] = mid;
    this.build(base, 2 * i + 2, lo, hi, rng);
    lo[q] = oldLo;
  }

  update(features: Float64Array | number[]): number {
    if (features.length !== this.dimensions) {
      throw new RangeError(`expected ${this.dimensions} features, got ${features.length}`);
    }
    for (let q = 0; q < this.dimensions; q++) {
      const v = features[q]!;
      const st = this.norm[q]!;
      const sd = st.n > 1 ? Math.max(st.std, 1e-9 * (Math.abs(st.mean) + 1)) : 1;
      this.x[q] = st.n > 0 ? 1 / (1 + Math.exp(-(v - st.mean) / (2 * sd))) : 0.5;
      st.push(v);
    }
    const internal = (1 << this.depth) - 1;
    let logMass = 0;
    for (let t = 0; t < this.trees; t++) {
      const nb = t * this.nodes;
      const sb = t * internal;
      let i = 0;
      let d = 0;
      let scored = false;
      for (;;) {
        this.latest[nb + i]!++;
        if (!scored && this.hasRef && (this.ref[nb + i]! <= this.sizeLimit || d === this.depth)) {
          logMass += Math.log2(this.ref[nb + i]! + 1) + d;
          scored = true;
        }
        if (d === this.depth) break;
        i = this.x[this.splitDim[sb + i]!]! < this.splitAt[sb + i]! ? 2 * i + 1 : 2 * i + 2;
        d++;
      }
    }
    if (++this.seen % this.window === 0) {
      this.ref.set(this.latest);
      this.latest.fill(0);
      this.hasRef = true;
    }
    if (!logMass) return 0;
    const maxLog = Math.log2(this.window + 1) + this.depth;
    const s = 1 - logMass / this.trees / maxLog;
    return s > 1 ? 1 : s < 0 ? 0 : s;
  }
}

export const halfSpaceTreesFactory: VectorDetectorFactory = {
  name: 'half-space-trees',
  description: 'Streaming Half-Space Trees, seeded (options: trees, depth, window, sizeLimit, normAlpha, seed)',
  create: (dimensions, opts) => new HalfSpaceTrees(dimensions, opts),
};

/** HST over a shingle of the last `shingle` values of one series (captures shape, not just level). */
export class ShingledHst implements SeriesDetector {
  private readonly k: number;
  private readonly ring: Float64Array;
  private readonly vec: Float64Array;
  private readonly hst: HalfSpaceTrees;
  private n = 0;

  constructor(opts?: Record<string, unknown>) {
    this.k = Math.round(numOpt(opts, 'shingle', 4, 1, 64));
    this.ring = new Float64Array(this.k);
    this.vec = new Float64Array(this.k);
    this.hst = new HalfSpaceTrees(this.k, opts);
  }

  update(x: number): number {
    this.ring[this.n % this.k] = x;
    this.n++;
    if (this.n < this.k) return 0;
    for (let j = 0; j < this.k; j++) this.vec[j] = this.ring[(this.n + j) % this.k]!;
    return this.hst.update(this.vec);
  }
}

export const hstSeriesFactory: SeriesDetectorFactory = {
  name: 'hst',
  description: 'Half-Space Trees over a shingle of recent values (options: shingle + half-space-trees options)',
  create: (opts) => new ShingledHst(opts),
};
