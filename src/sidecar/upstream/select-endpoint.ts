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
  const avoid = ctx.avoidEndpoints;
  if (subset === undefined && avoid === undefined) {
    const ep = eps[cur.next % eps.length]!;
    cur.next = (cur.next + 1) & 0x3fffffff;
    return ep;
  }
  for (let pass = 0; pass < 2; pass++) {
    for (let n = 0; n < eps.length; n++) {
      const ep = eps[(cur.next + n) % eps.length]!;
      if (avoid !== undefined && avoid.has(ep.key)) continue;
      // Second pass: every endpoint of the subset is contained — route away from it to the rest
      // of the cluster rather than fail the caller for the contained workload's sake.
      if (pass === 0 && subset !== undefined && !matches(ep, subset)) continue;
      cur.next = (cur.next + n + 1) & 0x3fffffff;
      return ep;
    }
    if (avoid === undefined) break;
  }
  return undefined;
}

/** `list` without the endpoints a containment zone routes around; the cluster's others when none is left. */
export function awayFromContained(list: readonly Endpoint[], cluster: Cluster, avoid: ReadonlySet<string>): readonly Endpoint[] {
  const kept = list.filter((ep) => !avoid.has(ep.key));
  if (kept.length > 0) return kept;
  const rest = cluster.endpoints.filter((ep) => !avoid.has(ep.key));
  return rest.length > 0 ? rest : list;
}
