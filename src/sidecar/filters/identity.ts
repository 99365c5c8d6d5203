import type { FilterFactory, HttpFilter, RequestContext } from '../filter.js';
import type { Ctx } from '../context.js';
import { peerOfSocket } from '../tls/inbound.js';

/**
 * The identity filter. Inbound: puts the mTLS peer's verified identity (recorded by the inbound
 * guard at handshake time) on ctx.peer for every later filter, and tells the application in
 * `x-etz-peer-identity`. On every direction it first strips any copy of the identity headers the
 * caller sent, so no client can claim an identity. Always in the chain: stripping is not optional.
 */

export const PEER_IDENTITY_HEADER = 'x-etz-peer-identity';
// The XFCC header other meshes use for the same purpose; stripped so it cannot be spoofed either.
const XFCC = 'x-forwarded-client-cert';

function isIdentityHeader(name: string): boolean {
  const n = name.length;
  if (n !== PEER_IDENTITY_HEADER.length && n !== XFCC.length) return false;
  const lower = name.toLowerCase();
  return lower === PEER_IDENTITY_HEADER || lower === XFCC;
}

/** Removes every identity header from the request as received (raw list and parsed map). */
export function stripIdentityHeaders(ctx: RequestContext): void {
  const raw = ctx.req.rawHeaders;
  let found = false;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    if (isIdentityHeader(raw[i]!)) {
      raw.splice(i, 2);
      found = true;
    }
  }
  if (found) {
    delete ctx.req.headers[PEER_IDENTITY_HEADER];
    delete ctx.req.headers[XFCC];
  }
}

const inbound: HttpFilter = Object.freeze({
  name: 'identity',
  onRequest(ctx: RequestContext) {
    stripIdentityHeaders(ctx);
    const peer = peerOfSocket(ctx.req.socket);
    if (peer !== undefined) {
      ctx.peer = peer;
      const c = ctx as Ctx;
      (c.upstreamHeaders ??= []).push(PEER_IDENTITY_HEADER, peer.spiffeId);
    }
    return undefined;
  },
});

const outbound: HttpFilter = Object.freeze({
  name: 'identity',
  onRequest(ctx: RequestContext) {
    stripIdentityHeaders(ctx);
    return undefined;
  },
});

export const identityFilter: FilterFactory = {
  name: 'identity',
  schema: {},
  compile: (_config, env) => (env.direction === 'inbound' ? inbound : outbound),
};
