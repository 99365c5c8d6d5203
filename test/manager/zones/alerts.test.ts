import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { nullLogger } from '../../../src/core/logger.js';
import { createAlertSink } from '../../../src/manager/zones/alerts.js';
import { resolveEngineConfig } from '../../../src/manager/risk/index.js';

test('alerts are POSTed to the webhook as JSON, retried after a 5xx, and never block', async () => {
  const bodies: Array<Record<string, unknown>> = [];
  let calls = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      calls++;
      if (calls === 1) {
        res.writeHead(503).end();
        return;
      }
      assert.equal(req.headers['content-type'], 'application/json');
      assert.equal(req.headers['x-team'], 'sec');
      bodies.push(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const port = (server.address() as { port: number }).port;
    const cfg = resolveEngineConfig({ alerts: { webhook: { url: `http://127.0.0.1:${port}/hook`, headers: { 'x-team': 'sec' } } } });
    const sink = createAlertSink(cfg.alerts, nullLogger, { retryDelayMs: 10 });
    sink.handle({ ts: '2026-11-21T10:00:00.000Z', event: 'alert', severity: 'critical', message: 'service details risk 91', subject: { kind: 'service', service: 'details' } });
    sink.handle({ ts: '2026-11-21T10:00:00.000Z', event: 'principal.cleared', principal: 'x', reason: 'r' });
    await sink.flush();
    assert.equal(bodies.length, 1);
    assert.equal(bodies[0]!.event, 'alert');
    assert.equal(bodies[0]!.message, 'service details risk 91');
    assert.deepEqual(bodies[0]!.subject, { kind: 'service', service: 'details' });
    assert.deepEqual(sink.stats, { sent: 1, failed: 0, dropped: 0 });
  } finally {
    server.close();
  }
});

test('an unreachable webhook counts failures without throwing', async () => {
  const cfg = resolveEngineConfig({ alerts: { webhook: { url: 'http://127.0.0.1:9/none', timeoutMs: 200 } } });
  const sink = createAlertSink(cfg.alerts, nullLogger, { retryDelayMs: 1 });
  sink.handle({ ts: '2026-11-21T10:00:00.000Z', event: 'alert', severity: 'high', message: 'm', subject: null });
  await sink.flush();
  assert.deepEqual(sink.stats, { sent: 0, failed: 1, dropped: 0 });
});
