import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigHub, type Subscriber } from '../../../src/manager/pubsub/hub.js';
import { ContainmentTimer } from '../../../src/manager/zones/containment-timer.js';
import { createRegistry } from '../../../src/core/metrics.js';
import { nullLogger } from '../../../src/core/logger.js';
import type { AuditLog } from '../../../src/manager/audit.js';
import type { EngineEvent, PublicZone } from '../../../src/manager/risk/types.js';

// Measurements that cannot end in "every sidecar enforces the zone" are dropped and counted by
// outcome, and the pending set stays bounded.

function sidecar(id: string) {
  const frames: Array<{ version: number; nonce: string }> = [];
  const s: Subscriber = {
    id,
    node: { service: 'reviews', instance: id },
    send: (m) => void frames.push(JSON.parse(String(m))),
    bufferedAmount: () => 0,
  };
  return { s, last: () => frames.at(-1)! };
}

function created(id: string, over: Partial<PublicZone> = {}): EngineEvent {
  const zone: PublicZone = { id, type: 'containment', members: [{ service: 'details' }], reason: 'risk', origin: 'risk', shadow: false, pinned: false, createdAt: new Date(0).toISOString(), expiresAt: null, detectedAt: new Date(0).toISOString(), ...over };
  return { ts: zone.createdAt, event: 'zone.created', zone };
}

async function outcomes(text: Promise<string>): Promise<Record<string, number>> {
  return Object.fromEntries([...(await text).matchAll(/etz_containment_measurements_total\{outcome="(\w+)"\} (\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
}

test('NACKed, dissolved, evicted and timed-out measurements are dropped and counted; operator and shadow zones are not tracked', async () => {
  let now = 1_000_000;
  const hub = new ConfigHub({ debounceMs: 0, now: () => now });
  const metrics = createRegistry();
  const audit = { record: async () => ({}) } as unknown as AuditLog;
  const timer = new ContainmentTimer({ hub, metrics, audit, logger: nullLogger, maxPending: 2, timeoutMs: 60_000, now: () => now });
  try {
    const a = sidecar('reviews-0');
    hub.subscribe(a.s, 0);
    assert.ok(hub.ack('reviews-0', a.last().version, a.last().nonce));

    timer.onEvent(created('containment-details-1'));
    hub.set('mesh', 'zones', { zones: [{ id: 'containment-details-1' }] });
    assert.ok(hub.nack('reviews-0', a.last().version, a.last().nonce, 'bad zone'));

    timer.onEvent(created('containment-details-2'));
    timer.onEvent({ ts: '', event: 'zone.dissolved', zone: { id: 'containment-details-2', type: 'containment' }, reason: 'calm' });

    timer.onEvent(created('op', { origin: 'operator', detectedAt: undefined }));
    timer.onEvent(created('shadow', { shadow: true }));
    timer.onEvent(created('iso', { type: 'isolation' }));
    assert.equal(timer.pendingCount, 0);

    timer.onEvent(created('c3'));
    timer.onEvent(created('c4'));
    timer.onEvent(created('c5'));
    assert.equal(timer.pendingCount, 2);
    now += 61_000;
    timer.onEvent(created('c6'));
    assert.equal(timer.pendingCount, 1);

    assert.deepEqual(await outcomes(metrics.metrics()), { nacked: 1, dissolved: 1, evicted: 1, timeout: 2 });
    assert.match(await metrics.metrics(), /etz_time_to_containment_seconds_count 0/);
  } finally {
    timer.close();
    hub.close();
  }
});
