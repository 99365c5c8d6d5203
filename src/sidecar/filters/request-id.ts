import { randomUUID } from 'node:crypto';
import type { FilterFactory, HttpFilter, RequestContext } from '../filter.js';
import type { Ctx } from '../context.js';

/**
 * x-request-id: keep a valid one from the client (the listener already read it), else generate a
 * UUID. Propagated upstream by the router and reported in telemetry and access logs. At the
 * gateway an external client's id is never kept (as Envoy at the edge): the mesh counts a user's
 * requests once per id, and a reused id must not hide a scraper.
 */
const filter: HttpFilter = Object.freeze({
  name: 'request-id',
  onRequest(ctx: RequestContext) {
    if (ctx.id === '' || ctx.direction === 'gateway') (ctx as Ctx).id = randomUUID();
    return undefined;
  },
});

export const requestIdFilter: FilterFactory = {
  name: 'request-id',
  schema: {},
  compile: () => filter,
};
