import { performance } from 'node:perf_hooks';
import type { Decision, RequestContext } from './filter.js';
import type { SidecarConfig } from '../config/sidecar-schema.js';
import type { RequestRecordFields } from '../protocol/telemetry.js';

/**
 * One proxied request as the sidecar saw it, in the shape of the telemetry-record contract
 * (kind "request", omitted). The sink decides what to do with it (batch it to the manager, write
 * it to a file); the listener builds a record only when a sink is set, so telemetry that is off
 * costs nothing.
 */
export interface RequestRecord extends RequestRecordFields<string, Decision> {
  kind?: 'request';
}

export interface TelemetrySink {
  /** Called once per completed (or failed) request; must not block or throw. */
  record(rec: RequestRecord): void;
}

/** What the sidecar knows about itself, precomputed once. */
export interface SelfInfo {
  service: string;
  version?: string;
  instance?: string;
}

export function selfInfo(config: SidecarConfig): SelfInfo {
  const s: SelfInfo = { service: config.service.name };
  if (config.service.version && config.service.version !== 'unknown') s.version = config.service.version;
  if (config.service.instance) s.instance = config.service.instance;
  return s;
}

/** Service name a SPIFFE identity stands for: etz issues `…/ns/<ns>/sa/<service>`. */
export function serviceOfPeer(ctx: RequestContext): string | undefined {
  return ctx.peer?.serviceAccount;
}

export function buildRequestRecord(ctx: RequestContext, self: SelfInfo, status: number, durationMs: number): RequestRecord {
  const inbound = ctx.direction === 'inbound';
  let source: RequestRecord['source'];
  let destination: RequestRecord['destination'];
  if (inbound) {
    source = { service: serviceOfPeer(ctx) ?? 'ingress' };
    if (ctx.peer) source.identity = ctx.peer.spiffeId;
    if (ctx.remoteAddress) source.ip = ctx.remoteAddress;
    destination = { ...self };
  } else {
    // A gateway's traffic comes from outside the mesh: the source is "ingress" at the client's address.
    source = ctx.direction === 'gateway' ? { service: 'ingress', ...(ctx.remoteAddress ? { ip: ctx.remoteAddress } : {}) } : { ...self };
    destination = { service: ctx.destination?.service ?? 'unknown' };
    const version = ctx.endpoint?.version ?? ctx.destination?.version;
    if (version) destination.version = version;
    const instance = ctx.endpoint?.instance ?? ctx.destination?.instance;
    if (instance) destination.instance = instance;
  }
  const rec: RequestRecord = {
    ts: new Date(performance.timeOrigin + ctx.startedAt).toISOString(),
    source,
    destination,
    method: ctx.method,
    path: ctx.path,
    status,
    durationMs: Math.round(durationMs * 1000) / 1000,
    bytesIn: ctx.bytesIn,
    bytesOut: ctx.bytesOut,
    mtls: ctx.mtls,
    decision: ctx.decision,
    requestId: ctx.id,
  };
  if (ctx.principal !== undefined) rec.principal = ctx.principal;
  if (ctx.replyCode !== undefined) rec.reason = ctx.replyCode;
  return rec;
}
