/**
 * Seeded pseudo-random numbers. Detectors never touch Math.random: the same seed must give the same
 * scores, so replays and `etz detect` runs are reproducible bit for bit.
 */

/** A generator of uniform numbers in [0, 1). */
export type Rng = () => number;

/** mulberry32: 32-bit state, fast, good enough statistical quality for randomised models. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a over a string: derive a stable per-subject seed from a name (e.g. a service id). */
export function seedFromString(s: string, base = 0x811c9dc5): number {
  let h = base >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
