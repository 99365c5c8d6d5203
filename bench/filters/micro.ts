import { nullLogger } from '../../src/core/logger.js';
import { createRegistry } from '../../src/core/metrics.js';
import type { CompileEnv, HttpFilter, RequestContext } from '../../src/sidecar/filter.js';
import { principalFilter } from '../../src/sidecar/principal.js';
import { rateLimitFilter } from '../../src/sidecar/filters/rate-limit.js';
import { routingFilter, routeDecision } from '../../src/sidecar/routing/filter.js';
import { destinationPolicies } from '../../src/sidecar/routing/filter.js';
import { validateResources } from '../../src/sidecar/chain.js';
import { EXTRA_RESOURCES, FILTERS } from '../../src/sidecar/filters/index.js';

/**
 * In-process cost of the traffic filters per request, free of the network and of the load
 * generator: the principal, rate-limit and routing filters' onRequest plus the router's
 * resilient-path bookkeeping (consistent-hash pick, circuit breaker, outlier record), on request
 * contexts shaped like the listener's, for `users` distinct principals. CPU time of this process,
 * so other load on a shared machine inflates it far less than wall-clock throughput.
 */

export interface MicroResult {
  requests: number;
  users: number;
  cpuMicrosPerRequest: number;
}

interface Endpoint {
  key: string;
  address: string;
  port: number;
  version: string;
}

function context(user: string, id: number): RequestContext {
  const rawHeaders = ['Host', 'reviews', 'User-Agent', 'wrk', 'Accept', '*/*', 'x-etz-principal', user];
  return {
    id: `req-${id}`,
    direction: 'outbound',
    req: { rawHeaders, url: '/reviews/0' },
    res: {},
    startedAt: 0,
    method: 'GET',
    path: '/reviews/0',
    query: '',
    host: 'reviews',
    remoteAddress: '127.0.0.1',
    destination: { service: 'reviews' },
    decision: 'allow',
    attrs: new Map(),
    mtls: false,
    bytesIn: 0,
    bytesOut: 0,
  } as unknown as RequestContext;
}

export function runMicro(resources: Record<string, unknown>, requests = 200_000, users = 10_000): MicroResult {
  const validated = validateResources(resources, FILTERS, EXTRA_RESOURCES, 'bench');
  const env = {
    logger: nullLogger,
    metrics: createRegistry(),
    version: 1,
    direction: 'outbound',
    sidecar: {},
    resources: validated,
    clusters: new Map(),
    connector: {},
  } as unknown as CompileEnv;
  const filters = [principalFilter, rateLimitFilter, routingFilter]
    .map((f) => f.compile(validated[f.resource!] as never, env))
    .filter((f): f is HttpFilter => f !== null);
  const policies = destinationPolicies(env);
  const endpoints: Endpoint[] = ['v1', 'v2', 'v3'].map((v, i) => ({ key: `127.0.0.1:${9000 + i}`, address: '127.0.0.1', port: 9000 + i, version: v }));
  const bySubset = new Map<string, Endpoint[]>(endpoints.map((e) => [e.version, [e]]));
  const names = Array.from({ length: users }, (_v, i) => `user-${i}`);
  let sink = 0;
  const one = (n: number) => {
    const ctx = context(names[(n * 7919) % users]!, n);
    for (const f of filters) if (f.onRequest(ctx) !== undefined) sink++;
    const d = routeDecision(ctx);
    if (policies && d) {
      const t = policies.get<Endpoint>('reviews');
      if (t.circuit.tryAcquire() === null) {
        const list = bySubset.get(ctx.subset?.version ?? 'v1') ?? endpoints;
        const ep = t.balancer.pick(list, d.hashKey)!;
        t.balancer.started(ep.key);
        t.outlier.record(ep.key, { kind: 'response', status: 200 }, list.length, 0);
        t.balancer.finished(ep.key);
        t.circuit.release();
        sink += ep.port;
      }
    }
  };
  for (let i = 0; i < 20_000; i++) one(i); // warm up the JIT
  const c0 = process.cpuUsage();
  for (let i = 0; i < requests; i++) one(i);
  const c1 = process.cpuUsage(c0);
  if (sink === -1) process.stdout.write('');
  return { requests, users, cpuMicrosPerRequest: Math.round(((c1.user + c1.system) / requests) * 100) / 100 };
}
