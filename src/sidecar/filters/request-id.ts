import { randomBytes } from 'node:crypto';
import type { FilterFactory, HttpFilter, RequestContext } from '../filter.js';
import type { Ctx } from '../context.js';

/**
 * x-request-id: keep a valid one from the client (the listener already read it), else generate
 * one. Propagated upstream by the router and reported in telemetry and access logs.
 *
 * Generated ids have the UUID v4 layout: 92 random bits chosen per process (and again whenever
 * the counter wraps) followed by a 32-bit sequence number. They are unique, not secret, and cost
 * a counter increment instead of a call into the CSPRNG per request.
 */
let prefix = '';
let seq = 0xffffffff;

function nextId(): string {
  if (seq === 0xffffffff) {
    const h = randomBytes(12).toString('hex');
    // xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxx + 8 hex digits of sequence
    prefix = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(12, 15)}-${'89ab'[parseInt(h[15]!, 16) & 3]}${h.slice(16, 19)}-${h.slice(19, 23)}`;
    seq = 0;
  } else {
    seq++;
  }
  return prefix + (seq >>> 0).toString(16).padStart(8, '0');
}

const filter: HttpFilter = Object.freeze({
  name: 'request-id',
  onRequest(ctx: RequestContext) {
    // At the gateway an external client's id is never kept (as Envoy at the edge): the mesh counts
    // a user's requests once per id, and a reused id must not hide a scraper.
    if (ctx.id === '' || ctx.direction === 'gateway') (ctx as Ctx).id = nextId();
    return undefined;
  },
});

export const requestIdFilter: FilterFactory = {
  name: 'request-id',
  schema: {},
  compile: () => filter,
};

export { nextId as generateRequestId };
