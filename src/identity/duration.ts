import { EtzError } from '../core/errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, y: 365 * 86_400_000 };

/** '24h', '90s', '365d', '1500ms' (or a number of milliseconds) → milliseconds. */
export function parseDuration(v: string | number, what = 'duration'): number {
  if (typeof v === 'number') {
    if (Number.isFinite(v) && v > 0) return v;
  } else {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|y)$/.exec(v.trim());
    if (m) {
      const n = Number(m[1]) * UNITS[m[2]!]!;
      if (n > 0) return n;
    }
  }
  throw new EtzError('ETZ_ERR_USAGE', `invalid ${what} '${v}': use a positive number with a unit (ms, s, m, h, d, y), e.g. 24h`);
}
