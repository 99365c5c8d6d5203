import { randomUUID } from 'node:crypto';
import type { FilterFactory, HttpFilter, RequestContext } from '../filter.js';
import type { Ctx } from '../context.js';

/**
 * x-request-id: keep a valid one from the client (the listener already read it), else generate a
 * UUID. Propagated upstream by the router and reported in telemetry and access logs.
 */
const filter: HttpFilter = Object.freeze({
  name: 'request-id',
  onRequest(ctx: RequestContext) {
    if (ctx.id === '') (ctx as Ctx).id = randomUUID();
    return undefined;
  },
});

export const requestIdFilter: FilterFactory = {
  name: 'request-id',
  schema: {},
  compile: () => filter,
};
