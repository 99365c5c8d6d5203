/**
 * Validation of telemetry records as sidecars send them (see the telemetry-record contract).
 * Hand-written rather than ajv: it runs for every record on the intake path and must name the
 * offending field. Unknown fields are kept (forward compatible).
 */

/**
 * The fields of a request record (telemetry-record contract), shared by the sidecar that writes
 * them and the engine that reads them so the two cannot drift. They differ only in `ts` (RFC 3339
 * on the wire, epoch ms once parsed) and in how narrowly `decision` is typed.
 */
export interface RequestRecordFields<Ts extends string | number, D extends string = string> {
  ts: Ts;
  source: { service: string; version?: string; instance?: string; identity?: string; ip?: string };
  destination: { service: string; version?: string; instance?: string };
  principal?: string;
  method: string;
  path: string;
  status: number;
  durationMs: number;
  bytesIn?: number;
  bytesOut?: number;
  mtls?: boolean;
  decision?: D;
  /** The code (ETZ_ERR_*) of the reply the sidecar itself gave instead of the upstream's: a denial, an unavailable upstream. */
  reason?: string;
  requestId?: string;
}

export type RecordCheck = { ok: true; record: Record<string, unknown> } | { ok: false; field: string; reason: string };

const KINDS = new Set(['request', 'log', 'vuln', 'intel']);
const LEVELS = new Set(['debug', 'info', 'warn', 'error', 'fatal']);

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function checkRecord(rec: unknown): RecordCheck {
  const bad = (field: string, reason: string): RecordCheck => ({ ok: false, field, reason });
  if (!isObj(rec)) return bad('/', 'must be an object');
  const kind = rec.kind ?? 'request';
  if (typeof kind !== 'string' || !KINDS.has(kind)) return bad('kind', 'must be one of request, log, vuln, intel');
  const ts = rec.ts;
  if (typeof ts === 'number') {
    if (!Number.isFinite(ts)) return bad('ts', 'must be a finite number');
  } else if (typeof ts === 'string') {
    if (Number.isNaN(Date.parse(ts))) return bad('ts', 'must be an RFC 3339 time');
  } else {
    return bad('ts', ts === undefined ? 'is required' : 'must be a string or number');
  }
  const str = (o: Record<string, unknown>, k: string, path: string, required: boolean): RecordCheck | undefined => {
    const v = o[k];
    if (v === undefined) return required ? bad(path, 'is required') : undefined;
    return typeof v === 'string' ? undefined : bad(path, 'must be a string');
  };
  if (kind === 'request') {
    for (const side of ['source', 'destination'] as const) {
      const o = rec[side];
      if (!isObj(o)) return bad(side, o === undefined ? 'is required' : 'must be an object');
      const e = str(o, 'service', `${side}.service`, true);
      if (e) return e;
      for (const k of ['version', 'instance', 'identity', 'ip']) {
        const e2 = str(o, k, `${side}.${k}`, false);
        if (e2) return e2;
      }
    }
    for (const [k, req] of [['method', true], ['path', true], ['principal', false], ['decision', false], ['reason', false], ['requestId', false]] as const) {
      const e = str(rec, k, k, req);
      if (e) return e;
    }
    if (!Number.isInteger(rec.status)) return bad('status', rec.status === undefined ? 'is required' : 'must be an integer');
    if (typeof rec.durationMs !== 'number' || !Number.isFinite(rec.durationMs)) return bad('durationMs', rec.durationMs === undefined ? 'is required' : 'must be a number');
    for (const k of ['bytesIn', 'bytesOut']) if (rec[k] !== undefined && !Number.isInteger(rec[k])) return bad(k, 'must be an integer');
    if (rec.mtls !== undefined && typeof rec.mtls !== 'boolean') return bad('mtls', 'must be a boolean');
  } else if (kind === 'log') {
    const e = str(rec, 'service', 'service', true) ?? str(rec, 'message', 'message', true) ?? str(rec, 'instance', 'instance', false);
    if (e) return e;
    if (typeof rec.level !== 'string' || !LEVELS.has(rec.level)) return bad('level', 'must be one of debug, info, warn, error, fatal');
  } else if (kind === 'vuln') {
    const e = str(rec, 'service', 'service', true);
    if (e) return e;
    if (!Array.isArray(rec.findings)) return bad('findings', 'is required (array)');
  } else if (!Array.isArray(rec.indicators)) {
    return bad('indicators', 'is required (array)');
  }
  return { ok: true, record: rec };
}
