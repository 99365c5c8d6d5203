import { EtzError } from '../../core/errors.js';
import { parseDuration } from '../traffic/analyzer.js';
import type { RiskEngine } from './index.js';
import type { Level, SubjectKind } from './types.js';

/**
 * The risk and traffic endpoints as pure functions of an engine and a parsed request, for the
 * manager's HTTP server to mount (it owns transport, authentication and audit):
 *
 *   GET /v1/risk[?kind=service&level=high&limit=100]  → riskList
 *   GET /v1/risk/{subject}                            → riskExplain
 *   GET /v1/traffic[?window=5m]                       → trafficReport
 *
 * Bad input raises EtzError ETZ_ERR_INVALID_INPUT (400); an unknown subject ETZ_ERR_NOT_FOUND (404).
 */

const KINDS = new Set<SubjectKind>(['service', 'instance', 'edge', 'principal']);
const LEVELS: Level[] = ['low', 'medium', 'high', 'critical'];
const MAX_TRAFFIC_WINDOW = 3_600_000;

export function riskList(engine: RiskEngine, query: URLSearchParams) {
  const kind = query.get('kind');
  if (kind !== null && !KINDS.has(kind as SubjectKind)) throw new EtzError('ETZ_ERR_INVALID_INPUT', 'kind must be one of service, instance, edge, principal');
  const level = query.get('level');
  if (level !== null && !LEVELS.includes(level as Level)) throw new EtzError('ETZ_ERR_INVALID_INPUT', 'level must be one of low, medium, high, critical');
  const limitRaw = query.get('limit');
  const limit = limitRaw === null ? 500 : Number(limitRaw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new EtzError('ETZ_ERR_INVALID_INPUT', 'limit must be an integer between 1 and 10000');
  const min = level === null ? 0 : LEVELS.indexOf(level as Level);
  const items = engine
    .scores()
    .filter((s) => (kind === null || s.subject.kind === kind) && LEVELS.indexOf(s.level) >= min)
    .slice(0, limit)
    .map((s) => ({ subject: s.subject, key: s.key, score: s.score, level: s.level, at: new Date(s.at).toISOString(), warmingUp: s.warmingUp, reasons: s.reasons }));
  return { at: new Date(engine.now).toISOString(), items };
}

export function riskExplain(engine: RiskEngine, subject: string) {
  if (!subject || subject.length > 512) throw new EtzError('ETZ_ERR_INVALID_INPUT', 'subject must be a subject key such as service:reviews or edge:productpage->reviews');
  const e = engine.explain(subject);
  if (!e) throw new EtzError('ETZ_ERR_NOT_FOUND', `no risk score for '${subject}' (not seen, or still without a closed window)`);
  return { ...e, at: new Date(e.at).toISOString() };
}

export function trafficReport(engine: RiskEngine, query: URLSearchParams) {
  const raw = query.get('window') ?? '5m';
  const ms = parseDuration(raw);
  if (ms === null || ms > MAX_TRAFFIC_WINDOW) throw new EtzError('ETZ_ERR_INVALID_INPUT', `window must be a duration up to 1h such as 30s, 5m or 1h (got '${raw}')`);
  return engine.traffic(ms);
}
