import { performance } from 'node:perf_hooks';
import { EventEmitter } from 'node:events';
import {
  OPTIONAL_RESOURCE_TYPES,
  RESOURCE_TYPES,
  topicsFor,
  type ManagerMessage,
  type NodeInfo,
  type ResourceType,
  type ResourceValue,
  type Resources,
} from '../../protocol/messages.js';
import { RolloutTracker, type Rollout } from './rollout.js';
import { TopicTable } from './topics.js';

/**
 * Config distribution, after xDS state-of-the-world per resource type.
 *
 * Resources live on topics (mesh, service/<name>, instance/<name>); a sidecar's view of a type is
 * the concatenation of that type on its three topics. Every change bumps the type's version on
 * its topic. Debounce is leading-edge: after a quiet `debounceMs`, the changes of one event-loop
 * turn go out at once as one hub version (a containment zone usually comes alone and should not
 * wait); changes within `debounceMs` of a push wait until that window closes and go out together.
 * So at most one push per window follows the first, however many changes arrive.
 *
 * Per subscriber at most one push is in flight. A change that arrives while a push awaits its
 * ACK only marks the subscriber dirty; when the ACK (or NACK) comes it gets one push with the
 * latest state. So a slow or stuck sidecar costs the manager one pending message, never a queue
 * of intermediate deltas. Deltas replace whole types and are computed against the subscriber's
 * last ACKed version, so a NACKed type is simply sent again with the next change.
 *
 * Versions derive from the wall clock (max(previous + 1, now)) so that they keep increasing across
 * manager restarts without a write per publish: a sidecar ignores versions at or below the one
 * it has, and must never see the manager start again from 1.
 */

export interface Subscriber {
  readonly id: string;
  readonly node: NodeInfo;
  /** A Buffer is an already-encoded JSON text frame. */
  send(msg: ManagerMessage | string | Buffer): void;
  /** Bytes queued in the socket; a subscriber above the limit is skipped until it drains. */
  bufferedAmount(): number;
}

export type SubscriberState = 'pending' | 'acked' | 'nacked';

export interface SubscriberStatus {
  id: string;
  node: NodeInfo;
  connectedAt: number;
  lastSeen: number;
  ackedVersion: number;
  sentVersion: number;
  state: SubscriberState;
  lastError?: string;
}

export interface HubOptions {
  debounceMs?: number;
  /** Skip pushing to a subscriber whose socket holds more than this many bytes (default 4 MiB). */
  maxBufferedBytes?: number;
  /** A push not answered within this time is re-sent as a full snapshot (default 30 s). */
  ackTimeoutMs?: number;
  rolloutHistory?: number;
  now?: () => number;
}

/** What one publish cycle shares between subscribers (see push). */
interface Cycle {
  nonce?: string;
  /** Encoded message by subscriber shape and base version. */
  frames: Map<string, Buffer>;
  /** Encoded resource type by the topics that contribute to it. */
  json: Map<string, string>;
  /** Latest version of a view, by subscriber shape. */
  latest: Map<string, number>;
}

function newCycle(): Cycle {
  return { frames: new Map(), json: new Map(), latest: new Map() };
}

interface Sub {
  s: Subscriber;
  topics: string[];
  connectedAt: number;
  lastSeen: number;
  ackedVersion: number;
  sentVersion: number;
  sentNonce: string;
  sentAt: number;
  sentFull: boolean;
  inflight: boolean;
  dirty: boolean;
  /** True until the first push on this stream: it must be a full snapshot. */
  needsSnapshot: boolean;
  state: SubscriberState;
  lastError?: string;
}

export interface HubEvents {
  ack: [id: string, version: number];
  nack: [id: string, version: number, error: string];
  published: [version: number, targets: number];
  'rollout-complete': [rollout: Rollout];
}

export class ConfigHub extends EventEmitter<HubEvents> {
  private readonly topics: TopicTable;
  private readonly subs = new Map<string, Sub>();
  private readonly debounceMs: number;
  private readonly maxBuffered: number;
  private readonly ackTimeoutMs: number;
  private readonly now: () => number;
  private readonly rollouts: RolloutTracker;
  private version: number;
  private nonceSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  // Real time, not `now`: the debounce runs on real timers even where tests inject a clock.
  private lastPublishAt = -Infinity;
  private changed = new Map<string, Set<ResourceType>>();
  private reasons: string[] = [];
  readonly stats = { pushes: 0, snapshots: 0, deltas: 0, acks: 0, nacks: 0, staleAcks: 0, skippedSlow: 0, coalesced: 0 };

  constructor(opts: HubOptions = {}) {
    super();
    this.debounceMs = opts.debounceMs ?? 10;
    this.maxBuffered = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 30_000;
    this.now = opts.now ?? Date.now;
    this.rollouts = new RolloutTracker(opts.rolloutHistory ?? 200);
    // Genesis: every mesh type is "changed" at start, so a sidecar resuming from a previous
    // manager incarnation always gets a fresh snapshot rather than trusting stale state.
    this.version = this.now();
    this.topics = new TopicTable(this.version);
  }

  get currentVersion(): number {
    return this.version;
  }

  /**
   * Replace one resource type on one topic. Published after the debounce window. Lists on the
   * three topics of a sidecar are concatenated; an object value is taken from the most specific
   * topic that has one.
   */
  set(topic: string, type: ResourceType, value: ResourceValue, reason?: string): void {
    if (!this.topics.set(topic, type, value)) return;
    let c = this.changed.get(topic);
    if (!c) this.changed.set(topic, (c = new Set()));
    c.add(type);
    if (reason) this.reasons.push(reason);
    if (this.debounceMs <= 0) {
      this.publish();
    } else if (!this.timer && !this.immediate) {
      const since = performance.now() - this.lastPublishAt;
      if (since >= this.debounceMs) {
        this.immediate = setImmediate(() => this.publish());
        this.immediate.unref?.();
      } else {
        this.timer = setTimeout(() => this.publish(), this.debounceMs - since);
        this.timer.unref?.();
      }
    }
  }

  get(topic: string, type: ResourceType): ResourceValue {
    return this.topics.get(topic, type);
  }

  /** The merged resources a node sees now. */
  view(node: { service: string; instance: string }): Resources {
    const out = {} as Resources;
    const topics = topicsFor(node);
    for (const type of RESOURCE_TYPES) out[type] = this.topics.merged(topics, type);
    return out;
  }

  /** Publish pending changes now (the debounce timer calls this). */
  publish(): number {
    this.cancelPending();
    if (this.changed.size === 0) return this.version;
    this.lastPublishAt = performance.now();
    const version = (this.version = Math.max(this.version + 1, this.now()));
    for (const [topic, types] of this.changed) for (const type of types) this.topics.stamp(topic, type, version);
    const changedTopics = this.changed;
    this.changed = new Map();
    const reason = [...new Set(this.reasons)].join('; ') || 'config change';
    this.reasons = [];
    const targets: string[] = [];
    const cycle = newCycle();
    for (const sub of this.subs.values()) {
      if (!changedTopics.has(sub.topics[0]!) && !changedTopics.has(sub.topics[1]!) && !changedTopics.has(sub.topics[2]!)) continue;
      targets.push(sub.s.id);
      this.push(sub, cycle);
    }
    const r = this.rollouts.start(version, reason, targets, this.now());
    this.emit('published', version, targets.length);
    if (targets.length === 0) this.emit('rollout-complete', r);
    return version;
  }

  /** A sidecar's stream opened (or it re-sent hello). It gets a snapshot unless already current. */
  subscribe(s: Subscriber, lastVersion: number): void {
    const old = this.subs.get(s.id);
    const sub: Sub = {
      s,
      topics: topicsFor(s.node),
      connectedAt: old?.s === s ? old.connectedAt : this.now(),
      lastSeen: this.now(),
      ackedVersion: 0,
      sentVersion: 0,
      sentNonce: '',
      sentAt: 0,
      sentFull: false,
      inflight: false,
      dirty: false,
      needsSnapshot: true,
      state: 'pending',
    };
    this.subs.set(s.id, sub);
    // Resume: a sidecar that already ACKed everything its topics hold needs no push at all.
    if (lastVersion > 0 && lastVersion <= this.version && lastVersion >= this.topics.viewVersion(sub.topics)) {
      sub.ackedVersion = sub.sentVersion = lastVersion;
      sub.needsSnapshot = false;
      sub.state = 'acked';
      return;
    }
    this.push(sub, newCycle());
  }

  unsubscribe(id: string, s?: Subscriber): void {
    const sub = this.subs.get(id);
    if (sub && (!s || sub.s === s)) this.subs.delete(id);
  }

  seen(id: string): void {
    const sub = this.subs.get(id);
    if (sub) sub.lastSeen = this.now();
  }

  /** Returns false when the ACK is stale or unknown (ignored). */
  ack(id: string, version: number, nonce: string): boolean {
    const sub = this.subs.get(id);
    if (!sub || !sub.inflight || version !== sub.sentVersion || nonce !== sub.sentNonce) {
      this.stats.staleAcks++;
      return false;
    }
    this.stats.acks++;
    sub.inflight = false;
    sub.ackedVersion = version;
    sub.needsSnapshot = false;
    sub.state = 'acked';
    sub.lastError = undefined;
    sub.lastSeen = this.now();
    const done = this.rollouts.ack(id, version);
    this.emit('ack', id, version);
    for (const r of done) this.emit('rollout-complete', r);
    if (sub.dirty) this.push(sub, newCycle());
    return true;
  }

  nack(id: string, version: number, nonce: string, error: string): boolean {
    const sub = this.subs.get(id);
    if (!sub || !sub.inflight || version !== sub.sentVersion || nonce !== sub.sentNonce) {
      this.stats.staleAcks++;
      return false;
    }
    this.stats.nacks++;
    sub.inflight = false;
    sub.state = 'nacked';
    sub.lastError = error;
    sub.lastSeen = this.now();
    // The sidecar keeps what it had: a snapshot NACKed on a fresh stream leaves it on its own
    // (disk) version, so the next push must again be a full snapshot.
    if (sub.ackedVersion === 0) sub.needsSnapshot = true;
    for (const r of this.rollouts.nack(id, version, sub.ackedVersion, error)) this.emit('rollout-complete', r);
    this.emit('nack', id, version, error);
    // Re-pushing the same failing version would loop; wait for the next change.
    if (sub.dirty && this.topics.viewVersion(sub.topics) > version) this.push(sub, newCycle());
    else sub.dirty = false;
    return true;
  }

  /** Periodic upkeep: retry subscribers skipped as slow, re-send timed-out pushes. */
  tick(): void {
    const now = this.now();
    const cycle = newCycle();
    for (const sub of this.subs.values()) {
      if (sub.inflight && now - sub.sentAt > this.ackTimeoutMs) {
        sub.inflight = false;
        sub.needsSnapshot = true;
        sub.dirty = true;
      }
      if (sub.dirty && !sub.inflight) this.push(sub, cycle);
    }
  }

  status(): SubscriberStatus[] {
    return [...this.subs.values()].map((sub) => ({
      id: sub.s.id,
      node: sub.s.node,
      connectedAt: sub.connectedAt,
      lastSeen: sub.lastSeen,
      ackedVersion: sub.ackedVersion,
      sentVersion: sub.sentVersion,
      state: sub.inflight ? 'pending' : sub.state,
      ...(sub.lastError ? { lastError: sub.lastError } : {}),
    }));
  }

  subscriberCount(): number {
    return this.subs.size;
  }

  listRollouts(): Rollout[] {
    return this.rollouts.list();
  }

  getRollout(version: number): Rollout | undefined {
    return this.rollouts.get(version);
  }

  close(): void {
    this.cancelPending();
    this.subs.clear();
  }

  // ---- internals ----
  private cancelPending(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  /**
   * One push. `cycle` lives for one publish: subscribers of the same shape (same topics holding
   * resources, same base version) would be sent byte-for-byte the same message, so they share
   * one encoded Buffer and one nonce — unique per stream, since a stream gets at most one push
   * per cycle. A mesh-wide change to a thousand sidecars encodes one message, and each further
   * subscriber costs two map lookups, not a walk over its topics and types.
   */
  private push(sub: Sub, cycle: Cycle): void {
    if (sub.inflight) {
      sub.dirty = true;
      this.stats.coalesced++;
      return;
    }
    if (sub.s.bufferedAmount() > this.maxBuffered) {
      sub.dirty = true;
      this.stats.skippedSlow++;
      return;
    }
    const shape = this.shapeOf(sub);
    let latest = cycle.latest.get(shape);
    if (latest === undefined) cycle.latest.set(shape, (latest = this.topics.viewVersion(sub.topics)));
    if (!sub.needsSnapshot && latest <= sub.ackedVersion) {
      sub.dirty = false;
      return;
    }
    const full = sub.needsSnapshot;
    const key = full ? `S|${shape}` : `D${sub.ackedVersion}|${shape}`;
    let frame = cycle.frames.get(key);
    if (frame === undefined) cycle.frames.set(key, (frame = this.encode(sub, full, cycle)));
    sub.s.send(frame);
    sub.inflight = true;
    sub.dirty = false;
    sub.sentVersion = this.version;
    sub.sentNonce = cycle.nonce!;
    sub.sentAt = this.now();
    sub.sentFull = full;
    sub.state = 'pending';
    this.stats.pushes++;
    if (full) this.stats.snapshots++;
    else this.stats.deltas++;
  }

  /** Which of the subscriber's own topics exist: with the mesh topic, they decide its view. */
  private shapeOf(sub: Sub): string {
    const svc = this.topics.has(sub.topics[1]!) ? sub.topics[1]! : '';
    const inst = this.topics.has(sub.topics[2]!) ? sub.topics[2]! : '';
    return svc || inst ? `${svc}|${inst}` : '';
  }

  private encode(sub: Sub, full: boolean, cycle: Cycle): Buffer {
    const nonce = (cycle.nonce ??= (++this.nonceSeq).toString(36));
    const parts: string[] = [];
    for (const type of RESOURCE_TYPES) {
      if (!full && this.topics.typeVersion(sub.topics, type) <= sub.ackedVersion) continue;
      // An unset optional type is left out of snapshots (absent means empty to the sidecar), so a
      // sidecar that predates the type keeps accepting snapshots until an operator first uses it.
      if (full && OPTIONAL_RESOURCE_TYPES.includes(type) && !this.topics.contributes(sub.topics, type)) continue;
      parts.push(`"${type}":${this.encoded(sub, type, cycle)}`);
    }
    const head = full
      ? `{"type":"snapshot","version":${this.version},"nonce":"${nonce}"`
      : `{"type":"delta","version":${this.version},"nonce":"${nonce}","baseVersion":${sub.ackedVersion}`;
    return Buffer.from(`${head},"resources":{${parts.join(',')}}}`);
  }

  // Subscribers sharing the same topic contents for a type share one serialisation per publish:
  // with a mesh-wide change and 1000 sidecars that is one JSON.stringify, not a thousand.
  private encoded(sub: Sub, type: ResourceType, cycle: Cycle): string {
    const key = this.topics.contentKey(sub.topics, type);
    let s = cycle.json.get(key);
    if (s === undefined) cycle.json.set(key, (s = JSON.stringify(this.topics.merged(sub.topics, type))));
    return s;
  }
}
