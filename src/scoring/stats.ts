/**
 * Streaming statistics used by every detector: O(1) memory per estimate (or a fixed-size ring), no
 * allocation per update, numerically stable. All are causal: they only ever see past values.
 */

/** Welford's running mean and variance over everything seen. */
export class Welford {
  n = 0;
  mean = 0;
  private m2 = 0;

  push(x: number): void {
    this.n++;
    const d = x - this.mean;
    this.mean += d / this.n;
    this.m2 += d * (x - this.mean);
  }

  /** Population variance (0 until two values are seen). */
  get variance(): number {
    return this.n > 1 ? this.m2 / this.n : 0;
  }

  get std(): number {
    return Math.sqrt(this.variance);
  }

  reset(): void {
    this.n = 0;
    this.mean = 0;
    this.m2 = 0;
  }
}

/**
 * Exponentially weighted mean and variance (West's incremental form). Warm-up uses 1/n weights so the
 * first values are not dominated by the initial zero.
 */
export class EwStats {
  n = 0;
  mean = 0;
  variance = 0;
  constructor(readonly alpha: number) {
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`alpha must be in (0, 1], got ${alpha}`);
  }

  push(x: number): void {
    this.n++;
    const a = Math.max(this.alpha, 1 / this.n);
    const d = x - this.mean;
    const incr = a * d;
    this.mean += incr;
    this.variance = (1 - a) * (this.variance + d * incr);
  }

  get std(): number {
    return Math.sqrt(this.variance);
  }
}

/**
 * A fixed-size sliding window with O(1) mean and variance (running sums, re-summed every `size`
 * pushes so floating-point drift cannot accumulate).
 */
export class WindowStats {
  private readonly buf: Float64Array;
  private head = 0;
  count = 0;
  private sum = 0;
  private sumSq = 0;
  private sinceResum = 0;

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new RangeError(`window size must be >= 1, got ${size}`);
    this.buf = new Float64Array(size);
  }

  /** Adds x; returns the value that fell out of the window (NaN when none did). */
  push(x: number): number {
    let evicted = NaN;
    if (this.count === this.size) {
      evicted = this.buf[this.head]!;
      this.sum -= evicted;
      this.sumSq -= evicted * evicted;
    } else {
      this.count++;
    }
    this.buf[this.head] = x;
    this.head = (this.head + 1) % this.size;
    this.sum += x;
    this.sumSq += x * x;
    if (++this.sinceResum >= this.size) this.resum();
    return evicted;
  }

  private resum(): void {
    this.sinceResum = 0;
    let s = 0;
    let q = 0;
    for (let i = 0; i < this.count; i++) {
      const v = this.buf[i]!;
      s += v;
      q += v * v;
    }
    this.sum = s;
    this.sumSq = q;
  }

  get full(): boolean {
    return this.count === this.size;
  }

  get mean(): number {
    return this.count ? this.sum / this.count : 0;
  }

  /** Population variance, clamped at 0 against rounding. */
  get variance(): number {
    if (this.count < 2) return 0;
    const m = this.sum / this.count;
    return Math.max(0, this.sumSq / this.count - m * m);
  }

  get std(): number {
    return Math.sqrt(this.variance);
  }

  /** i = 0 is the oldest value in the window. */
  at(i: number): number {
    const start = this.count === this.size ? this.head : 0;
    return this.buf[(start + i) % this.size]!;
  }
}

/**
 * P² (Jain & Chlamtac) streaming quantile: five markers, O(1) memory, no stored samples. Used for
 * latency p50/p95 baselines where a reservoir per subject would cost too much memory.
 */
export class P2Quantile {
  private readonly q = new Float64Array(5);
  private readonly pos = new Float64Array(5);
  private readonly want = new Float64Array(5);
  private readonly dn: Float64Array;
  n = 0;

  constructor(readonly p: number) {
    if (!(p > 0 && p < 1)) throw new RangeError(`quantile must be in (0, 1), got ${p}`);
    this.dn = Float64Array.from([0, p / 2, p, (1 + p) / 2, 1]);
  }

  push(x: number): void {
    const q = this.q;
    if (this.n < 5) {
      q[this.n++] = x;
      if (this.n === 5) {
        q.sort();
        for (let i = 0; i < 5; i++) {
          this.pos[i] = i + 1;
          this.want[i] = 1 + 4 * this.dn[i]!;
        }
      }
      return;
    }
    this.n++;
    let k: number;
    if (x < q[0]!) {
      q[0] = x;
      k = 0;
    } else if (x >= q[4]!) {
      q[4] = x;
      k = 3;
    } else {
      k = 0;
      while (k < 3 && x >= q[k + 1]!) k++;
    }
    for (let i = k + 1; i < 5; i++) this.pos[i]!++;
    for (let i = 0; i < 5; i++) this.want[i]! += this.dn[i]!;
    for (let i = 1; i < 4; i++) {
      const d = this.want[i]! - this.pos[i]!;
      if ((d >= 1 && this.pos[i + 1]! - this.pos[i]! > 1) || (d <= -1 && this.pos[i - 1]! - this.pos[i]! < -1)) {
        const s = Math.sign(d);
        const cand = this.parabolic(i, s);
        q[i] = q[i - 1]! < cand && cand < q[i + 1]! ? cand : this.linear(i, s);
        this.pos[i]! += s;
      }
    }
  }

  private parabolic(i: number, s: number): number {
    const { q, pos: n } = this;
    return (
      q[i]! +
      (s / (n[i + 1]! - n[i - 1]!)) *
        ((n[i]! - n[i - 1]! + s) * ((q[i + 1]! - q[i]!) / (n[i + 1]! - n[i]!)) +
          (n[i + 1]! - n[i]! - s) * ((q[i]! - q[i - 1]!) / (n[i]! - n[i - 1]!)))
    );
  }

  private linear(i: number, s: number): number {
    return this.q[i]! + (s * (this.q[i + s]! - this.q[i]!)) / (this.pos[i + s]! - this.pos[i]!);
  }

  /** The current estimate (exact while fewer than 5 values were seen). NaN before any value. */
  get value(): number {
    if (this.n === 0) return NaN;
    if (this.n < 5) {
      const s = Array.from(this.q.subarray(0, this.n)).sort((a, b) => a - b);
      return s[Math.min(s.length - 1, Math.floor(this.p * s.length))]!;
    }
    return this.q[2]!;
  }
}

/** Complementary error function (Numerical Recipes erfcc; relative error < 1.2e-7 everywhere). */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** Upper tail probability of the standard normal, Q(z) = P(Z > z). */
export function normalTail(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/**
 * Maps a deviation in standard deviations to [0, 1): the two-sided probability that a normal value
 * lies closer to the mean. 1σ → 0.68, 3σ → 0.997. Keeps scores comparable across detectors.
 */
export function sigmaToScore(k: number): number {
  if (!(k > 0)) return 0;
  return 1 - erfc(k / Math.SQRT2);
}

export function clamp01(x: number): number {
  return x > 1 ? 1 : x > 0 ? x : 0;
}

/**
 * Maximum over the last `size` values in O(1) amortised (monotonic deque over a fixed ring of
 * indices), for "is this the highest point in a while?" peak tests.
 */
export class SlidingMax {
  private readonly idx: Float64Array;
  private readonly val: Float64Array;
  private head = 0;
  private len = 0;
  private n = 0;

  constructor(readonly size: number) {
    if (!(size >= 1)) throw new RangeError(`window size must be >= 1, got ${size}`);
    this.idx = new Float64Array(size + 1);
    this.val = new Float64Array(size + 1);
  }

  /** Max of the values currently in the window (−Infinity when empty). */
  get max(): number {
    return this.len ? this.val[this.head]! : -Infinity;
  }

  push(x: number): void {
    const cap = this.idx.length;
    // Drop values that can never be the max again, then the one falling out of the window.
    while (this.len && this.val[(this.head + this.len - 1) % cap]! <= x) this.len--;
    const tail = (this.head + this.len) % cap;
    this.idx[tail] = this.n;
    this.val[tail] = x;
    this.len++;
    this.n++;
    if (this.idx[this.head]! <= this.n - 1 - this.size) {
      this.head = (this.head + 1) % cap;
      this.len--;
    }
  }
}

/**
 * Deterministic reservoir sampling (Algorithm R): offer the value that arrives after `seen`
 * earlier ones to a sample of at most `capacity`. A multiplicative hash of the arrival index
 * stands in for a PRNG, so replays of the same records keep the same sample.
 */
export function reservoirOffer(sample: number[], seen: number, value: number, capacity: number): void {
  if (seen < capacity) {
    sample.push(value);
    return;
  }
  const slot = (Math.imul(seen, 2654435761) >>> 0) % (seen + 1);
  if (slot < capacity) sample[slot] = value;
}
