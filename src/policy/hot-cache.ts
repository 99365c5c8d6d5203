import { sourceNamespace } from './clauses.js';
import type { KeyPlan } from './compile.js';
import type { PolicyRequest } from './types.js';

/**
 * The first tier of the decision cache: nested Maps, one level per attribute the destination's
 * policies read, keyed by the request's own strings. A concatenated key must be flattened and
 * hashed on every lookup; here each level hashes one short string whose hash the engine caches in
 * the string itself (the peer's SPIFFE ID is the same string for every request of a connection),
 * several times faster. Bounded: when it holds `max` decisions it starts over empty (the second
 * tier, the version-keyed LRU, still has them). One per policy version, so it never outlives the
 * policies it was filled from.
 */

type Get = (r: PolicyRequest) => unknown;
const NONE = Symbol('none');

function headerGet(name: string): Get {
  return (r) => {
    const v = r.headers?.[name];
    return v === undefined ? NONE : Array.isArray(v) ? v.join(',') : v;
  };
}

// Destinations with the same plan share one set of level functions: the lookup loop then sees
// few distinct closures and stays fast. Bounded by the distinct plans of a policy set.
const shared = new Map<string, Get[]>();

/** The levels of a destination's trie, in a fixed order (the same attributes as the LRU key). */
export function levelsOf(plan: KeyPlan): Get[] {
  const sig = `${[...plan.attrs].sort().join(',')}|${plan.headers.join(',')}`;
  let levels = shared.get(sig);
  if (levels === undefined) {
    levels = buildLevels(plan);
    if (shared.size < 1024) shared.set(sig, levels);
  }
  return levels;
}

function buildLevels(plan: KeyPlan): Get[] {
  const a = plan.attrs;
  const out: Get[] = [(r) => r.destService];
  if (a.has('sourcePrincipal')) out.push((r) => r.sourcePrincipal ?? NONE);
  if (a.has('sourceNamespace')) out.push((r) => sourceNamespace(r) ?? NONE);
  if (a.has('sourceIp')) out.push((r) => r.sourceIp ?? NONE);
  if (a.has('sourceZones')) out.push((r) => (r.sourceZones ? r.sourceZones.join(',') : NONE));
  if (a.has('requestPrincipal')) out.push((r) => r.requestPrincipal ?? NONE);
  if (a.has('destVersion')) out.push((r) => r.destVersion ?? NONE);
  if (a.has('destNamespace')) out.push((r) => r.destNamespace ?? NONE);
  if (a.has('destZones')) out.push((r) => (r.destZones ? r.destZones.join(',') : NONE));
  if (a.has('method')) out.push((r) => r.method ?? NONE);
  if (a.has('path')) out.push((r) => r.path ?? NONE);
  if (a.has('port')) out.push((r) => r.port ?? NONE);
  if (a.has('host')) out.push((r) => r.host ?? NONE);
  for (const h of plan.headers) out.push(headerGet(h));
  return out;
}

type Node = Map<unknown, unknown>;

export class DecisionTrie<V> {
  readonly #max: number;
  #roots = new Map<object, Node>();
  #size = 0;

  constructor(max: number) {
    this.#max = max;
  }

  get size(): number {
    return this.#size;
  }

  get(owner: object, levels: readonly Get[], r: PolicyRequest): V | undefined {
    let node = this.#roots.get(owner);
    const last = levels.length - 1;
    for (let i = 0; i < last; i++) {
      if (node === undefined) return undefined;
      node = node.get(levels[i]!(r)) as Node | undefined;
    }
    return node === undefined ? undefined : (node.get(levels[last]!(r)) as V | undefined);
  }

  set(owner: object, levels: readonly Get[], r: PolicyRequest, value: V): void {
    if (this.#size >= this.#max) {
      this.#roots = new Map();
      this.#size = 0;
    }
    let node = this.#roots.get(owner);
    if (node === undefined) this.#roots.set(owner, (node = new Map()));
    const last = levels.length - 1;
    for (let i = 0; i < last; i++) {
      const k = levels[i]!(r);
      let next = node.get(k) as Node | undefined;
      if (next === undefined) node.set(k, (next = new Map()));
      node = next;
    }
    const k = levels[last]!(r);
    if (!node.has(k)) this.#size++;
    node.set(k, value);
  }
}
