import type {
  Indicator,
  IntelRecord,
  LogRecord,
  RequestRecord,
  Severity,
  TelemetryRecord,
  VulnFinding,
  VulnRecord,
  Workload,
} from './types.js';

/**
 * Validation of telemetry records (telemetry-record.md). Hand-written rather than ajv because it
 * runs once per record on the ingest hot path; every failure names the field, so callers can
 * report "line N: field F: reason" and skip the record without stopping the stream.
 */

export class RecordError extends Error {
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'RecordError';
    this.field = field;
  }
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** `ts` as epoch ms: RFC 3339 string or a finite number. */
export function parseTimestamp(value: unknown, field = 'ts'): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new RecordError(field, 'must be a finite number of epoch milliseconds');
    return value;
  }
  if (typeof value === 'string') {
    if (!RFC3339.test(value)) throw new RecordError(field, 'must be an RFC 3339 timestamp');
    const ms = Date.parse(value);
    if (Number.isNaN(ms)) throw new RecordError(field, 'must be an RFC 3339 timestamp');
    return ms;
  }
  if (value === undefined) throw new RecordError(field, 'is required');
  throw new RecordError(field, 'must be an RFC 3339 string or epoch milliseconds');
}

function obj(v: unknown, field: string, required: boolean): Record<string, unknown> | undefined {
  if (v === undefined && !required) return undefined;
  if (v === undefined) throw new RecordError(field, 'is required');
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new RecordError(field, 'must be an object');
  return v as Record<string, unknown>;
}

function str(o: Record<string, unknown>, key: string, prefix: string, required: true): string;
function str(o: Record<string, unknown>, key: string, prefix: string, required: false): string | undefined;
function str(o: Record<string, unknown>, key: string, prefix: string, required: boolean): string | undefined {
  const v = o[key];
  if (v === undefined || (v === null && !required)) {
    if (required) throw new RecordError(prefix + key, 'is required');
    return undefined;
  }
  if (typeof v !== 'string') throw new RecordError(prefix + key, 'must be a string');
  if (required && v.length === 0) throw new RecordError(prefix + key, 'must not be empty');
  return v;
}

function num(o: Record<string, unknown>, key: string, prefix: string, required: boolean, integer: boolean): number | undefined {
  const v = o[key];
  if (v === undefined || (v === null && !required)) {
    if (required) throw new RecordError(prefix + key, 'is required');
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RecordError(prefix + key, 'must be a number');
  if (integer && !Number.isInteger(v)) throw new RecordError(prefix + key, 'must be an integer');
  if (v < 0) throw new RecordError(prefix + key, 'must not be negative');
  return v;
}

function parseRequest(o: Record<string, unknown>, ts: number): RequestRecord {
  // Absent source identity means traffic from outside the mesh.
  const src = obj(o.source, 'source', false) ?? { service: 'ingress' };
  const source: Workload = { service: str(src, 'service', 'source.', true) };
  const sv = str(src, 'version', 'source.', false);
  if (sv !== undefined) source.version = sv;
  const si = str(src, 'instance', 'source.', false);
  if (si !== undefined) source.instance = si;
  const sid = str(src, 'identity', 'source.', false);
  if (sid !== undefined) source.identity = sid;
  const sip = str(src, 'ip', 'source.', false);
  if (sip !== undefined) source.ip = sip;
  const dst = obj(o.destination, 'destination', true)!;
  const destination: RequestRecord['destination'] = { service: str(dst, 'service', 'destination.', true) };
  const dv = str(dst, 'version', 'destination.', false);
  if (dv !== undefined) destination.version = dv;
  const di = str(dst, 'instance', 'destination.', false);
  if (di !== undefined) destination.instance = di;
  const rec: RequestRecord = {
    kind: 'request',
    ts,
    source,
    destination,
    method: str(o, 'method', '', true),
    path: str(o, 'path', '', true),
    status: num(o, 'status', '', true, true)!,
    durationMs: num(o, 'durationMs', '', true, false)!,
  };
  const principal = str(o, 'principal', '', false);
  if (principal !== undefined && principal !== '') rec.principal = principal;
  const bi = num(o, 'bytesIn', '', false, true);
  if (bi !== undefined) rec.bytesIn = bi;
  const bo = num(o, 'bytesOut', '', false, true);
  if (bo !== undefined) rec.bytesOut = bo;
  if (o.mtls !== undefined) {
    if (typeof o.mtls !== 'boolean') throw new RecordError('mtls', 'must be a boolean');
    rec.mtls = o.mtls;
  }
  const decision = str(o, 'decision', '', false);
  if (decision !== undefined) rec.decision = decision;
  const reason = str(o, 'reason', '', false);
  if (reason !== undefined && reason !== '') rec.reason = reason;
  const rid = str(o, 'requestId', '', false);
  if (rid !== undefined && rid !== '') rec.requestId = rid;
  return rec;
}

const LOG_LEVELS = new Set(['debug', 'info', 'warn', 'error', 'fatal']);

function parseLog(o: Record<string, unknown>, ts: number): LogRecord {
  const level = str(o, 'level', '', true);
  if (!LOG_LEVELS.has(level)) throw new RecordError('level', 'must be one of debug, info, warn, error, fatal');
  const rec: LogRecord = { kind: 'log', ts, service: str(o, 'service', '', true), level: level as LogRecord['level'], message: str(o, 'message', '', false) ?? '' };
  if (o.message === undefined) throw new RecordError('message', 'is required');
  const inst = str(o, 'instance', '', false);
  if (inst !== undefined) rec.instance = inst;
  const fields = obj(o.fields, 'fields', false);
  if (fields) rec.fields = fields;
  return rec;
}

const SEVERITIES = new Set(['LOW', 'MEDIUM', 'HIGH', 'CRITICAL']);

export function parseFinding(f: unknown, field: string): VulnFinding {
  const o = obj(f, field, true)!;
  const sev = str(o, 'severity', `${field}.`, true).toUpperCase();
  // Trivy reports UNKNOWN / NEGLIGIBLE too; they carry no prior.
  const severity = (SEVERITIES.has(sev) ? sev : 'LOW') as Severity;
  const out: VulnFinding = { id: str(o, 'id', `${field}.`, true), severity };
  const cvss = num(o, 'cvss', `${field}.`, false, false);
  if (cvss !== undefined) {
    if (cvss > 10) throw new RecordError(`${field}.cvss`, 'must be between 0 and 10');
    out.cvss = cvss;
  }
  const pkg = str(o, 'package', `${field}.`, false);
  if (pkg !== undefined) out.package = pkg;
  const fixed = str(o, 'fixedVersion', `${field}.`, false);
  if (fixed !== undefined) out.fixedVersion = fixed;
  return out;
}

function parseVuln(o: Record<string, unknown>, ts: number): VulnRecord {
  if (!Array.isArray(o.findings)) throw new RecordError('findings', o.findings === undefined ? 'is required' : 'must be an array');
  const rec: VulnRecord = { kind: 'vuln', ts, service: str(o, 'service', '', true), findings: o.findings.map((f, i) => parseFinding(f, `findings[${i}]`)) };
  const image = str(o, 'image', '', false);
  if (image !== undefined) rec.image = image;
  return rec;
}

const IND_TYPES = new Set(['ip', 'cidr', 'identity', 'principal']);
const IND_SEV = new Set(['low', 'medium', 'high', 'critical']);

export function parseIndicator(v: unknown, field: string): Indicator {
  const o = obj(v, field, true)!;
  const type = str(o, 'type', `${field}.`, true);
  if (!IND_TYPES.has(type)) throw new RecordError(`${field}.type`, 'must be one of ip, cidr, identity, principal');
  const severity = str(o, 'severity', `${field}.`, true).toLowerCase();
  if (!IND_SEV.has(severity)) throw new RecordError(`${field}.severity`, 'must be one of low, medium, high, critical');
  const ind: Indicator = { type: type as Indicator['type'], value: str(o, 'value', `${field}.`, true), severity: severity as Indicator['severity'] };
  const source = str(o, 'source', `${field}.`, false);
  if (source !== undefined) ind.source = source;
  if (o.expiresAt !== undefined) ind.expiresAt = parseTimestamp(o.expiresAt, `${field}.expiresAt`);
  return ind;
}

function parseIntel(o: Record<string, unknown>, ts: number): IntelRecord {
  if (!Array.isArray(o.indicators)) throw new RecordError('indicators', o.indicators === undefined ? 'is required' : 'must be an array');
  return { kind: 'intel', ts, indicators: o.indicators.map((v, i) => parseIndicator(v, `indicators[${i}]`)) };
}

/** Validate one decoded JSON value as a telemetry record; throws RecordError naming the field. */
export function parseRecord(value: unknown): TelemetryRecord {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new RecordError('(record)', 'must be a JSON object');
  const o = value as Record<string, unknown>;
  const kind = o.kind === undefined ? 'request' : o.kind;
  if (typeof kind !== 'string') throw new RecordError('kind', 'must be a string');
  const ts = parseTimestamp(o.ts);
  switch (kind) {
    case 'request':
      return parseRequest(o, ts);
    case 'log':
      return parseLog(o, ts);
    case 'vuln':
      return parseVuln(o, ts);
    case 'intel':
      return parseIntel(o, ts);
    default:
      throw new RecordError('kind', 'must be one of request, log, vuln, intel');
  }
}

/** Decode and validate one JSON line. */
export function parseRecordLine(line: string): TelemetryRecord {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new RecordError('(line)', `is not valid JSON (${(err as Error).message})`);
  }
  return parseRecord(value);
}
