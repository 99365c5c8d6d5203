import { EtzError } from '../core/errors.js';
import { peerAuthenticationError, type ResourceType, type ResourceValue } from '../protocol/messages.js';
import type { ConfigHub } from './pubsub/hub.js';
import { COLL, type Store } from './store/store.js';

/**
 * Operator-set resources (routes, rate limits, intel lists …) per topic, kept durably and
 * re-published at start. Resources computed by the manager itself (zones, flagged principals,
 * trust bundle) are published straight to the hub and not stored here.
 */
export class ResourceService {
  constructor(private readonly store: Store, private readonly hub: ConfigHub) {}

  get(topic: string, type: ResourceType): ResourceValue {
    return this.store.get<ResourceValue>(COLL.resources, `${topic}|${type}`) ?? [];
  }

  async set(topic: string, type: ResourceType, items: ResourceValue): Promise<void> {
    // Checked here, not only by the sidecars: a value every sidecar would NACK is refused up front
    // (400) instead of being stored and pushed. An empty list clears it.
    if (type === 'peerAuthentication' && !(Array.isArray(items) && items.length === 0)) {
      const why = peerAuthenticationError(items);
      if (why !== undefined) throw new EtzError('ETZ_ERR_INVALID_INPUT', `peerAuthentication${why.startsWith('/:') ? why.slice(1) : why}`);
    }
    const key = `${topic}|${type}`;
    if (Array.isArray(items) && items.length === 0) await this.store.delete(COLL.resources, key);
    else await this.store.put(COLL.resources, key, items);
    this.hub.set(topic, type, items, `${type} on ${topic}`);
  }

  /** Push everything stored into the hub (at start). */
  publishAll(): void {
    for (const [key, items] of this.store.list<ResourceValue>(COLL.resources)) {
      const i = key.lastIndexOf('|');
      this.hub.set(key.slice(0, i), key.slice(i + 1) as ResourceType, items);
    }
  }
}
