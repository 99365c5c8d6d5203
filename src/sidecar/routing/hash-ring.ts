/**
 * Consistent hashing for session affinity (Envoy's ring_hash): each member owns many points on a
 * 32-bit ring; a key goes to the first point at or after its hash. Adding or removing one member
 * moves only the keys that member owned, so a user stays on the same endpoint (and version) while
 * the others change. Built once per endpoint set, looked up with a binary search.
 */

/** 32-bit FNV-1a followed by a murmur3 finaliser, so that near-identical keys spread out. */
export function hash32(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export interface RingMember<T> {
  /** Stable identity of the member (e.g. "10.0.0.5:9080"); the ring places points by it. */
  readonly id: string;
  readonly value: T;
  /** Relative share of the ring; default 1. */
  readonly weight?: number;
}

export class HashRing<T> {
  private readonly points: Uint32Array;
  private readonly owners: T[];
  readonly size: number;

  constructor(members: readonly RingMember<T>[], pointsPerMember = 160) {
    const all: { h: number; v: T }[] = [];
    for (const m of members) {
      const n = Math.max(1, Math.round(pointsPerMember * (m.weight ?? 1)));
      for (let i = 0; i < n; i++) all.push({ h: hash32(`${m.id}#${i}`), v: m.value });
    }
    all.sort((a, b) => a.h - b.h);
    this.points = Uint32Array.from(all, (p) => p.h);
    this.owners = all.map((p) => p.v);
    this.size = members.length;
  }

  get(key: string): T | undefined {
    return this.getByHash(hash32(key));
  }

  getByHash(h: number): T | undefined {
    const pts = this.points;
    if (pts.length === 0) return undefined;
    let lo = 0;
    let hi = pts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pts[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === pts.length ? 0 : lo];
  }
}
