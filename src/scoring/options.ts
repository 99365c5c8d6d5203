// Detector options arrive as loose records (config files, CLI flags); read them with defaults and
// bounds so a typo gives a clear RangeError instead of a silently broken detector.

export function numOpt(
  opts: Record<string, unknown> | undefined,
  key: string,
  def: number,
  min = -Infinity,
  max = Infinity,
): number {
  const v = opts?.[key];
  if (v === undefined) return def;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) {
    throw new RangeError(`detector option '${key}' must be a number in [${min}, ${max}], got ${String(v)}`);
  }
  return n;
}
