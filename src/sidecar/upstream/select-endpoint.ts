import type { Cluster, Endpoint } from '../clusters.js';
import type { RequestContext } from '../filter.js';

/**
 * Endpoint selection: round robin over the endpoints matching the request's subset (set by
 * routing filters as label → value; `version` matches the endpoint's version). Load-balancing
 * policies and outlier ejection replace or wrap this function.
 */

// Per-cluster cursor; clusters are rebuilt per config version, so the map empties itself.
const cursors = new WeakMap<Cluster, { next: number }>();

function matches(ep: Endpoint, subset: Record<string, string>): boolean {
  for (const k in subset) {
    const want = subset[k];
    const have = k === 'version' ? ep.version : ep.labels?.[k];
    if (have !== want) return false;
  }
  return true;
}

export function selectEndpoint(cluster: Cluster, ctx: RequestContext): Endpoint | undefined {
  const eps = cluster.endpoints;
  if (eps.length === 0) return undefined;
  let cur = cursors.get(cluster);
  if (cur === undefined) cursors.set(cluster, (cur = { next: 0 }));
  const subset = ctx.subset;
  if (subset === undefined) {
    const ep = eps[cur.next % eps.length]!;
    cur.next = (cur.next + 1) & 0x3fffffff;
    return ep;
  }
  for (let n = 0; n < eps.length; n++) {
    const ep = eps[(cur.next + n) % eps.length]!;
    if (matches(ep, subset)) {
      cur.next = (cur.next + n + 1) & 0x3fffffff;
      return ep;
    }
  }
  return undefined;
}
