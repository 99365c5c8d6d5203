import { createHmac, sign, type KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { nullLogger } from '../../src/core/logger.js';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import type { CompileEnv, Direction, RequestContext } from '../../src/sidecar/filter.js';

/**
 * Unit fixtures for the traffic filters: a RequestContext carrying only what filters read, and a
 * CompileEnv. Integration tests use the real Sidecar instead.
 */

export interface FakeRequest {
  method?: string;
  url?: string;
  host?: string;
  headers?: Record<string, string>;
  remoteAddress?: string;
  principal?: string;
  peer?: string;
  id?: string;
  destination?: string;
  direction?: Direction;
}

export function fakeCtx(r: FakeRequest = {}): RequestContext & { setCookies: string[] } {
  const url = r.url ?? '/';
  const q = url.indexOf('?');
  const rawHeaders: string[] = [];
  for (const [k, v] of Object.entries(r.headers ?? {})) rawHeaders.push(k, v);
  const setCookies: string[] = [];
  const res = { appendHeader: (_n: string, v: string) => setCookies.push(v) } as unknown as ServerResponse;
  return {
    id: r.id ?? '',
    direction: r.direction ?? 'outbound',
    req: { rawHeaders, headers: {} } as unknown as IncomingMessage,
    res,
    startedAt: 0,
    method: r.method ?? 'GET',
    path: q < 0 ? url : url.slice(0, q),
    query: q < 0 ? '' : url.slice(q + 1),
    host: r.host ?? 'reviews',
    remoteAddress: r.remoteAddress ?? '127.0.0.1',
    ...(r.peer ? { peer: { spiffeId: r.peer, trustDomain: 'etz.local', namespace: 'default', serviceAccount: 'x' } } : {}),
    ...(r.principal ? { principal: r.principal } : {}),
    ...(r.destination ? { destination: { service: r.destination } } : {}),
    decision: 'allow',
    attrs: new Map(),
    mtls: false,
    bytesIn: 0,
    bytesOut: 0,
    setCookies,
  } as RequestContext & { setCookies: string[] };
}

export function fakeEnv(direction: Direction, resources: Record<string, unknown> = {}, metrics: Registry = createRegistry()): CompileEnv {
  return {
    logger: nullLogger,
    metrics,
    version: 1,
    direction,
    resources,
    sidecar: {},
    clusters: new Map(),
    connector: {},
  } as unknown as CompileEnv;
}

/** A manual clock for detectors and buckets. */
export function manualClock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** A signed JWT for tests (HS256 with a secret, RS256/ES256 with a private key). */
export function b64u(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

export function makeJwt(alg: 'RS256' | 'ES256' | 'HS256', claims: Record<string, unknown>, key: KeyObject | string, kid?: string): string {
  const head = `${b64u({ alg, typ: 'JWT', ...(kid ? { kid } : {}) })}.${b64u(claims)}`;
  let sig: Buffer;
  if (alg === 'HS256') sig = createHmac('sha256', key as string).update(head).digest();
  else if (alg === 'RS256') sig = sign('sha256', Buffer.from(head), key as KeyObject);
  else sig = sign('sha256', Buffer.from(head), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
  return `${head}.${sig.toString('base64url')}`;
}

