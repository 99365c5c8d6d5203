import { RESOURCE_TYPES, type ResourceType, type ResourceValue } from '../../protocol/messages.js';

interface TopicState {
  resources: Partial<Record<ResourceType, ResourceValue>>;
  versions: Partial<Record<ResourceType, number>>;
}

/**
 * The hub's resources by topic, and what a subscriber's topics make of them: the merged view of a
 * type, which topics contribute to it (the key subscribers share one serialisation by), and the
 * version of a type or of the whole view.
 */
export class TopicTable {
  private readonly topics = new Map<string, TopicState>();

  /** Genesis: every mesh type carries `version`, so no resumed sidecar trusts a previous incarnation. */
  constructor(version: number) {
    const mesh: TopicState = { resources: {}, versions: {} };
    for (const t of RESOURCE_TYPES) mesh.versions[t] = version;
    this.topics.set('mesh', mesh);
  }

  has(topic: string): boolean {
    return this.topics.has(topic);
  }

  get(topic: string, type: ResourceType): ResourceValue {
    return this.topics.get(topic)?.resources[type] ?? [];
  }

  /**
   * Replace one type on one topic; false when nothing changes (an empty value on a topic that
   * never had the type). Only the mesh topic keeps an explicit empty value.
   */
  set(topic: string, type: ResourceType, value: ResourceValue): boolean {
    let t = this.topics.get(topic);
    if (!t) this.topics.set(topic, (t = { resources: {}, versions: {} }));
    const empty = isEmpty(value);
    if (empty && !t.resources[type] && topic !== 'mesh') return false;
    t.resources[type] = empty && topic !== 'mesh' ? undefined : (Object.freeze(Array.isArray(value) ? [...value] : { ...value }) as ResourceValue);
    return true;
  }

  stamp(topic: string, type: ResourceType, version: number): void {
    this.topics.get(topic)!.versions[type] = version;
  }

  /** The non-empty value `topic` holds for `type`, if any. */
  private contribution(topic: string, type: ResourceType): ResourceValue | undefined {
    const v = this.topics.get(topic)?.resources[type];
    return v === undefined || isEmpty(v) ? undefined : v;
  }

  contributes(topics: readonly string[], type: ResourceType): boolean {
    return topics.some((t) => this.contribution(t, type) !== undefined);
  }

  /** Lists concatenate across topics; an object value comes from the most specific topic. */
  merged(topics: readonly string[], type: ResourceType): ResourceValue {
    const lists: (readonly unknown[])[] = [];
    let obj: ResourceValue | undefined;
    for (const t of topics) {
      const v = this.contribution(t, type);
      if (v === undefined) continue;
      if (Array.isArray(v)) lists.push(v);
      else obj = v;
    }
    if (obj !== undefined) return obj;
    if (lists.length === 0) return [];
    if (lists.length === 1) return lists[0] as unknown[];
    return lists.flat();
  }

  /** Which topics contribute to a type: equal keys, equal merged content. */
  contentKey(topics: readonly string[], type: ResourceType): string {
    return `${type}:${topics.map((t) => (this.contribution(t, type) !== undefined ? t : '')).join(',')}`;
  }

  typeVersion(topics: readonly string[], type: ResourceType): number {
    let v = 0;
    for (const t of topics) v = Math.max(v, this.topics.get(t)?.versions[type] ?? 0);
    return v;
  }

  viewVersion(topics: readonly string[]): number {
    let v = 0;
    for (const type of RESOURCE_TYPES) v = Math.max(v, this.typeVersion(topics, type));
    return v;
  }
}

function isEmpty(v: ResourceValue): boolean {
  return Array.isArray(v) ? v.length === 0 : v === null;
}
