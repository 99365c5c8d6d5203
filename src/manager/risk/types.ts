/**
 * Types shared by the Risk Assessment Engine, the zone manager and the replay CLI. Records follow
 * the telemetry-record contract; events follow the replay contract (both are outside contracts:
 * field names here must not drift).
 */

import type { RequestRecordFields } from '../../protocol/telemetry.js';

export interface Workload {
  service: string;
  version?: string;
  instance?: string;
  identity?: string;
  ip?: string;
}

export interface RequestRecord extends RequestRecordFields<number> {
  kind: 'request';
  /** Epoch milliseconds (records may carry RFC 3339 strings; they are normalised on parse). */
  ts: number;
  source: Workload;
}

export interface LogRecord {
  kind: 'log';
  ts: number;
  service: string;
  instance?: string;
  level: 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  message: string;
  fields?: Record<string, unknown>;
}

export type Severity = 'LOW' | 'MEDIUM' | 'HIGH' | 'CRITICAL';

export interface VulnFinding {
  id: string;
  severity: Severity;
  cvss?: number;
  package?: string;
  fixedVersion?: string;
}

export interface VulnRecord {
  kind: 'vuln';
  ts: number;
  service: string;
  image?: string;
  findings: VulnFinding[];
}

export type IntelSeverity = 'low' | 'medium' | 'high' | 'critical';

export interface Indicator {
  type: 'ip' | 'cidr' | 'identity' | 'principal';
  value: string;
  severity: IntelSeverity;
  source?: string;
  /** Epoch milliseconds. */
  expiresAt?: number;
}

export interface IntelRecord {
  kind: 'intel';
  ts: number;
  indicators: Indicator[];
}

export type TelemetryRecord = RequestRecord | LogRecord | VulnRecord | IntelRecord;

export type SubjectKind = 'service' | 'instance' | 'edge' | 'principal';

export type Subject =
  | { kind: 'service'; service: string }
  | { kind: 'instance'; service: string; instance: string; version?: string }
  | { kind: 'edge'; source: string; destination: string }
  | { kind: 'principal'; principal: string };

export type Level = 'low' | 'medium' | 'high' | 'critical';

export interface Reason {
  detector: string;
  feature?: string;
  detail: string;
  /** Share of the score this reason carries, 0–100 points before combination. */
  points?: number;
}

export interface SubjectScore {
  subject: Subject;
  key: string;
  score: number;
  level: Level;
  reasons: Reason[];
  /** Trace time of the window that produced the score (epoch ms). */
  at: number;
  /** Whether the subject's baseline is still warming up. */
  warmingUp: boolean;
}

export type ZoneType = 'containment' | 'isolation' | 'performance';

export interface ZoneMember {
  service: string;
  version?: string;
  instance?: string;
}

export interface Zone {
  id: string;
  type: ZoneType;
  members: ZoneMember[];
  reason: string;
  /** Epoch ms. */
  createdAt: number;
  expiresAt: number | null;
  pinned: boolean;
  /** Computed and reported but not enforced. */
  shadow: boolean;
  /** How the zone came to be: a risk trigger, a label policy, or an operator. */
  origin: 'risk' | 'policy' | 'operator';
  /** Subject keys whose risk keeps the zone in force (risk-triggered zones). */
  triggers: string[];
  /** Since when every trigger has been below the exit threshold (epoch ms), or null. */
  calmSince: number | null;
  /** Start of the first window in which the trigger held (epoch ms): time to containment starts here. */
  detectedAt?: number;
}

export type FlagAction = 'route' | 'ratelimit' | 'block';

export interface FlaggedPrincipal {
  principal: string;
  action: FlagAction;
  reason: string;
  to?: { service: string; version: string };
  flaggedAt: number;
  expiresAt: number;
}

export interface EventBase {
  /** RFC 3339 trace time. */
  ts: string;
}

export type EngineEvent =
  | (EventBase & { event: 'risk'; subject: Subject; score: number; level: Level; previous: Level; reasons: Reason[] })
  | (EventBase & { event: 'zone.created'; zone: PublicZone })
  | (EventBase & { event: 'zone.updated'; zone: PublicZone; reason: string })
  | (EventBase & { event: 'zone.dissolved'; zone: { id: string; type: ZoneType }; reason: string })
  | (EventBase & { event: 'principal.flagged'; principal: string; action: FlagAction; reason: string; to?: { service: string; version: string } })
  | (EventBase & { event: 'principal.cleared'; principal: string; reason: string })
  | (EventBase & { event: 'alert'; severity: 'info' | 'warning' | 'high' | 'critical'; message: string; subject: Subject | null });

export type EventName = EngineEvent['event'];

/** A zone as events and the API show it. */
export interface PublicZone {
  id: string;
  type: ZoneType;
  members: ZoneMember[];
  reason: string;
  origin: Zone['origin'];
  shadow: boolean;
  pinned: boolean;
  createdAt: string;
  expiresAt: string | null;
  detectedAt?: string;
}
