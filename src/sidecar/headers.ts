import type { Ctx } from './context.js';
import { lowerHeaderName } from './header-names.js';

/**
 * Hop-by-hop header handling (RFC 9110 §7.6.1): these describe one connection and never cross a
 * proxy. Connection-named headers are dropped too. `expect` is answered by the listener itself
 * (100-continue), and `x-request-id` / `x-forwarded-*` are rewritten by the sidecar.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);

function isHopByHop(lower: string): boolean {
  return HOP_BY_HOP.has(lower) || (lower.length > 6 && lower.charCodeAt(0) === 112 /* p */ && lower.startsWith('proxy-'));
}

/** Extra names a Connection header lists, beyond the standard hop-by-hop ones; null when none. */
function connectionTokens(value: string, into: Set<string> | null): Set<string> | null {
  if (value === 'keep-alive' || value === 'close') return into;
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t === '' || t === 'close' || isHopByHop(t)) continue;
    (into ??= new Set()).add(t);
  }
  return into;
}

/**
 * The header list sent upstream, as undici's flat [name, value, …] array: the client's headers
 * minus hop-by-hop ones, with x-request-id, x-forwarded-for and x-forwarded-proto set, plus what
 * filters added in ctx.upstreamHeaders.
 */
export function upstreamRequestHeaders(ctx: Ctx, proto: string): string[] {
  const raw = ctx.req.rawHeaders;
  const out: string[] = [];
  // A header a filter sets replaces the client's copy (e.g. the verified x-etz-principal at the gateway).
  const add = ctx.upstreamHeaders;
  // At the edge, headers reserved for the mesh (x-etz-*) never come from outside: what the
  // gateway established itself (the verified principal, its verdict) is added by its filters.
  const edge = ctx.direction === 'gateway';
  let xff: string | undefined;
  let xfp: string | undefined;
  let extra: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (isHopByHop(lower)) {
      if (lower === 'connection') extra = connectionTokens(raw[i + 1]!, extra);
      continue;
    }
    switch (lower) {
      case 'x-forwarded-for':
        xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`;
        continue;
      case 'x-forwarded-proto':
        xfp ??= raw[i + 1]!;
        continue;
      case 'x-request-id':
      case 'expect':
        continue;
    }
    if (add !== undefined && overridden(add, lower)) continue;
    if (edge && lower.startsWith('x-etz-')) continue;
    out.push(lower, raw[i + 1]!);
  }
  if (extra !== null) {
    for (let i = out.length - 2; i >= 0; i -= 2) if (extra.has(out[i]!)) out.splice(i, 2);
  }
  const ip = ctx.remoteAddress;
  out.push('x-forwarded-for', xff === undefined ? ip : `${xff}, ${ip}`);
  out.push('x-forwarded-proto', xfp ?? proto);
  out.push('x-request-id', ctx.id);
  if (add !== undefined) for (let i = 0; i < add.length; i++) out.push(add[i]!);
  return out;
}

function overridden(add: string[], lower: string): boolean {
  for (let i = 0; i < add.length; i += 2) if (add[i] === lower) return true;
  return false;
}

/** Upstream response headers (undici gives Buffers) → the flat list for res.writeHead. */
export function downstreamResponseHeaders(raw: Buffer[] | string[]): string[] {
  const out: string[] = [];
  let extra: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    // Names go downstream lower-cased (case-insensitive in HTTP/1.1, as HTTP/2 requires).
    const lower = lowerHeaderName(raw[i]!);
    if (isHopByHop(lower)) {
      if (lower === 'connection') extra = connectionTokens(raw[i + 1]!.toString('latin1'), extra);
      continue;
    }
    out.push(lower, raw[i + 1]!.toString('latin1'));
  }
  if (extra !== null) {
    for (let i = out.length - 2; i >= 0; i -= 2) if (extra.has(out[i]!)) out.splice(i, 2);
  }
  return out;
}

/** Trailers from undici (flat Buffer list) → the object res.addTrailers takes. */
export function trailerObject(raw: Buffer[] | string[]): Record<string, string> | null {
  if (!raw || raw.length === 0) return null;
  const t: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    if (name === '__proto__' || isHopByHop(name)) continue;
    const v = raw[i + 1]!.toString('latin1');
    t[name] = t[name] === undefined ? v : `${t[name]}, ${v}`;
  }
  return t;
}

/** For upgrade responses the Connection/Upgrade pair must stay: it is the switch itself. */
export function rawResponseHead(status: number, statusText: string, raw: Buffer[] | string[]): string {
  let head = `HTTP/1.1 ${status} ${statusText || 'Switching Protocols'}\r\n`;
  for (let i = 0; i < raw.length; i += 2) {
    head += `${raw[i]!.toString('latin1')}: ${raw[i + 1]!.toString('latin1')}\r\n`;
  }
  return `${head}\r\n`;
}
