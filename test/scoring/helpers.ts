import { mulberry32 } from '../../src/scoring/prng.js';

/** Standard normal samples from a seeded generator (Box–Muller), for reproducible test series. */
export function gaussianSeries(n: number, seed: number, mean = 0, sd = 1): number[] {
  const rng = mulberry32(seed);
  const out: number[] = [];
  while (out.length < n) {
    const u = 1 - rng();
    const v = rng();
    const r = Math.sqrt(-2 * Math.log(u));
    out.push(mean + sd * r * Math.cos(2 * Math.PI * v));
    if (out.length < n) out.push(mean + sd * r * Math.sin(2 * Math.PI * v));
  }
  return out;
}

export function runSeries(det: { update(x: number, t: number): number }, xs: number[]): number[] {
  return xs.map((x, i) => det.update(x, i * 60_000));
}

export function max(xs: number[], from = 0, to = xs.length): number {
  let m = -Infinity;
  for (let i = from; i < to; i++) m = Math.max(m, xs[i]!);
  return m;
}
