import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attachEngine } from '../../src/manager/process.js';
import { startTestManager } from './helpers.js';

// The live manager's engine: scoring in a worker, and an engine event (here a threat-intel
// principal flagged on ingest) pushed to the sidecars at once instead of on the next tick.

function flaggedNames(value: unknown): string[] {
  const list = Array.isArray(value) ? value : ((value as { flagged?: unknown[] } | undefined)?.flagged ?? []);
  return list.map((f) => (typeof f === 'string' ? f : (f as { principal: string }).principal));
}

test('an engine event is published without waiting for the next tick; close stops the worker', async () => {
  // A tick every 10 minutes: only the event itself can publish within this test.
  const t = await startTestManager({ advanceMs: 600_000 });
  let closed = false;
  try {
    const binding = attachEngine(t.manager);
    binding.ingest({ kind: 'intel', ts: Date.now(), indicators: [{ type: 'principal', value: 'mallory', severity: 'critical', source: 'test-feed' }] });
    const deadline = Date.now() + 5000;
    let names: string[] = [];
    while (Date.now() < deadline) {
      names = flaggedNames(t.manager.hub.view({ service: 'productpage', instance: 'productpage-0' }).principals);
      if (names.includes('mallory')) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(names, ['mallory']);
    // Ticks driven by hand go through the worker and come back (nothing is scored on this loop).
    await binding.tick(Date.now());
    await t.close();
    closed = true;
  } finally {
    if (!closed) await t.close();
  }
});
