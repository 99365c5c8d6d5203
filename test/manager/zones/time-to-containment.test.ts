import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachEngine } from '../../../src/manager/process.js';
import { ControlClient, type ApplyTarget } from '../../../src/sidecar/control/client.js';
import { mulberry32 } from '../../../src/scoring/index.js';
import { MIN, Trace, mesh } from '../../scenarios/trace.js';
import { startTestManager, until } from '../helpers.js';

// The live manager, its risk engine in a worker, and a real enrolled control client that ACKs:
// telemetry of a compromised `details` makes the engine contain it, and the time from the first
// anomalous window to the last ACK is exported on the manager's /metrics and in the audit log.

class Acking implements ApplyTarget {
  zones: string[] = [];
  async applyResources(resources: Record<string, unknown>): Promise<void> {
    this.zones = ((resources.zones as { zones?: Array<{ id: string }> } | undefined)?.zones ?? []).map((z) => z.id);
  }
}

/** Six quiet minutes (the baseline warm-up), then `details` calls services it never called. */
function compromised(attackStart: number, end: number): Trace {
  const t = new Trace();
  mesh(t, { from: attackStart - 6 * MIN, to: end, rate: 5 });
  const rng = mulberry32(99);
  const targets = ['ratings', 'accounts', 'reviews'];
  for (let ts = attackStart; ts < end; ts += 150) {
    t.add({ ts, source: { service: 'details', version: 'v1', instance: 'details-v1-0' }, destination: { service: targets[Math.floor(rng() * 3)]! }, method: 'GET', path: '/admin/export', status: 200, durationMs: 5, bytesOut: 800, mtls: true });
  }
  return t;
}

function metric(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

test('time to containment is measured from the first anomalous window to the last sidecar ACK and exported', async () => {
  // Ticks only by hand, so the whole trace is in the engine before its windows close.
  const t = await startTestManager({ advanceMs: 600_000 });
  const dir = await mkdtemp(join(tmpdir(), 'etz-ttc-'));
  const target = new Acking();
  let client: ControlClient | undefined;
  try {
    const binding = attachEngine(t.manager);
    client = await ControlClient.start({ url: t.manager.url, caPem: t.caPem, dataDir: dir, node: { service: 'reviews', instance: 'reviews-0' }, target, bootstrapToken: await t.token({ service: 'reviews' }) });
    await client.waitForVersion((v) => v > 0);

    // Windows are 10 s and aligned to the epoch; the trace ends where the next tick can close it.
    const end = Math.floor((Date.now() - 6_000) / 10_000) * 10_000;
    const attackStart = end - 40_000;
    // Window by window, as live telemetry would arrive: novelty is judged against the windows
    // already closed, so feeding everything before the first close would hide the new edges.
    const records = compromised(attackStart, end).sorted();
    let i = 0;
    for (let w = attackStart - 6 * MIN; w < end; w += 10_000) {
      while (i < records.length && records[i]!.ts < w + 10_000) binding.ingest(records[i++]!);
      const closed = new Date(w + 10_000).toISOString();
      await until(async () => {
        await binding.tick(w + 15_000);
        return (await t.admin.call<{ at: string }>('GET', '/v1/risk/service:details')).at === closed;
      }, 10_000, `window ending ${closed} scored`);
    }

    await until(async () => metric(await t.admin.call<string>('GET', '/metrics'), 'etz_time_to_containment_seconds_count') === 1, 20_000, 'time to containment observed');
    const text = await t.admin.call<string>('GET', '/metrics');
    const zone = t.manager.zones.list().find((z) => z.type === 'containment' && z.origin === 'risk');
    assert.ok(zone, 'a risk containment zone');
    assert.equal(zone.detectedAt, attackStart, 'measured from the start of the first anomalous window');
    assert.ok(target.zones.includes(zone.id), 'the sidecar holds the zone');

    const ttc = metric(text, 'etz_time_to_containment_seconds_sum')!;
    const push = metric(text, 'etz_containment_push_seconds_sum')!;
    assert.equal(metric(text, 'etz_containment_push_seconds_count'), 1);
    assert.equal(metric(text, 'etz_last_time_to_containment_seconds'), ttc);
    assert.match(text, /etz_containment_measurements_total\{outcome="enforced"\} 1/);
    assert.ok(push >= 0 && push < 20, `push ${push} s`);
    // The anomaly began 40 s before the trace ended, and the trace ended before now.
    assert.ok(ttc >= push && ttc >= 40 && ttc < 120, `time to containment ${ttc} s, push ${push} s`);

    type Audit = { entries: Array<{ target?: string; details?: { timeToContainmentSeconds: number; pushSeconds: number } }> };
    let audit: Audit = { entries: [] };
    await until(async () => (audit = await t.admin.call<Audit>('GET', '/v1/audit?action=zone.enforced')).entries.length > 0, 5000, 'zone.enforced audited');
    assert.equal(audit.entries.length, 1);
    assert.equal(audit.entries[0]!.target, zone.id);
    assert.equal(audit.entries[0]!.details!.timeToContainmentSeconds, ttc);
  } finally {
    await client?.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  }
});
