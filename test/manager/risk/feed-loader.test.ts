import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nullLogger } from '../../../src/core/logger.js';
import { RiskEngine, resolveEngineConfig, startFeedReloader, type EngineEvent } from '../../../src/manager/risk/index.js';

const T = Date.UTC(2026, 10, 21, 10);

test('feed files are loaded, reloaded when they change, and a broken file keeps the previous content', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-feeds-'));
  try {
    const list = join(dir, 'blocklist.txt');
    await writeFile(list, '# bad actors\n203.0.113.0/24\n');
    const cfg = resolveEngineConfig({ risk: { feeds: { files: [{ file: list, source: 'abuse' }] } } });
    const engine = new RiskEngine(cfg);
    const events: EngineEvent[] = [];
    engine.on((e) => events.push(e));
    const loader = startFeedReloader(engine, cfg.risk.feeds, nullLogger, { now: () => T });
    try {
      await loader.reload();
      const req = (i: number, ip: string) => engine.ingestJson({ ts: T + i, source: { service: 'ingress', ip }, destination: { service: 'productpage' }, principal: `u${i}`, method: 'GET', path: '/', status: 200, durationMs: 1 });
      req(1, '203.0.113.9');
      assert.deepEqual(events.filter((e) => e.event === 'principal.flagged').map((e) => (e as { principal: string }).principal), ['u1']);

      await writeFile(list, '198.51.100.7\n');
      await utimes(list, new Date(T / 1000 + 10), new Date(Date.now() + 10_000));
      const [st] = await loader.reload();
      assert.deepEqual(st, { file: list, ok: true, kind: 'intel', count: 1 });
      req(2, '203.0.113.9');
      req(3, '198.51.100.7');
      assert.deepEqual(events.filter((e) => e.event === 'principal.flagged').map((e) => (e as { principal: string }).principal), ['u1', 'u3']);

      await writeFile(list, '198.51.100.7\nnot-an-address\n');
      await utimes(list, new Date(), new Date(Date.now() + 20_000));
      const [bad] = await loader.reload();
      assert.equal(bad!.ok, false);
      assert.match(bad!.error!, /line 2: 'not-an-address'/);
      req(4, '198.51.100.7');
      assert.ok(events.some((e) => e.event === 'principal.flagged' && (e as { principal: string }).principal === 'u4'), 'the previous list is still in force');
    } finally {
      loader.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
