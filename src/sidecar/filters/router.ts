import type { SidecarConfig } from '../../config/sidecar-schema.js';
import type { FilterFactory, RequestContext } from '../filter.js';
import type { Ctx } from '../context.js';
import { localReply } from '../local-reply.js';
import { selectEndpoint } from '../upstream/select-endpoint.js';
import { forward, type ForwardOptions } from '../upstream/forward.js';
import { noteUpstreamUse } from '../listeners/connections.js';
import { compileResilience, forwardResilient } from '../upstream/resilient-forward.js';

/**
 * The terminal filter: destination service → cluster → endpoint → pooled dispatcher → forward.
 * Everything it needs is looked up once per config version here.
 */
export const routerFilter: FilterFactory<SidecarConfig> = {
  name: 'router',
  schema: {},
  compile(config, env) {
    const clusters = env.clusters;
    const connector = env.connector;
    const opts: ForwardOptions = Object.freeze({ requestMs: config.timeouts.requestMs, maxBodyBytes: config.limits.maxBodyBytes });
    // Load balancing, retries, circuit breaking and outlier detection when routes configure them.
    const resilience = compileResilience(env);
    return {
      name: 'router',
      onRequest(rc: RequestContext) {
        const ctx = rc as Ctx;
        const dest = ctx.destination;
        const cluster = dest === undefined ? undefined : clusters.get(dest.service);
        if (cluster === undefined) {
          return localReply('ETZ_ERR_NO_ROUTE', dest === undefined ? `no service for host '${ctx.host}'` : `no cluster '${dest.service}'`);
        }
        const resilient = resilience?.(ctx, cluster);
        if (resilient !== undefined) {
          noteUpstreamUse(ctx);
          forwardResilient(ctx, cluster, connector, (ctx.req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http', opts, resilient);
          return undefined;
        }
        const ep = selectEndpoint(cluster, ctx);
        if (ep === undefined) return localReply('ETZ_ERR_UPSTREAM_UNAVAILABLE', `no endpoint of '${cluster.name}' matches`);
        ctx.endpoint = ep;
        noteUpstreamUse(ctx);
        forward(ctx, connector.dispatcher(ep, cluster), (ctx.req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http', opts);
        return undefined;
      },
    };
  },
};
