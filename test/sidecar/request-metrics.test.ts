import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../../src/core/metrics.js';
import { RequestMetrics, type RequestLabels } from '../../src/sidecar/request-metrics.js';

const L: RequestLabels = {
  reporter: 'source',
  source_workload: 'a',
  source_version: 'v1',
  destination_workload: 'b',
  destination_version: 'v2',
  response_code: '200',
};

test('request metrics expose a counter and a cumulative histogram in the Prometheus text format', async () => {
  const registry = createRegistry();
  const m = new RequestMetrics(registry);
  const s = m.add('k', L);
  assert.equal(m.get('k'), s);
  for (const ms of [0.2, 0.7, 3, 3, 40, 99999999]) s.observe(ms);
  const text = await registry.metrics();
  const labels = 'reporter="source",source_workload="a",source_version="v1",destination_workload="b",destination_version="v2",response_code="200"';
  assert.match(text, new RegExp(`etz_requests_total\\{${labels}\\} 6\\n`));
  assert.match(text, new RegExp(`_bucket\\{le="0.5",${labels}\\} 1\\n`));
  assert.match(text, new RegExp(`_bucket\\{le="1",${labels}\\} 2\\n`));
  assert.match(text, new RegExp(`_bucket\\{le="5",${labels}\\} 4\\n`));
  assert.match(text, new RegExp(`_bucket\\{le="50",${labels}\\} 5\\n`));
  assert.match(text, new RegExp(`_bucket\\{le="3600000",${labels}\\} 5\\n`));
  assert.match(text, new RegExp(`_bucket\\{le="\\+Inf",${labels}\\} 6\\n`));
  assert.match(text, new RegExp(`_count\\{${labels}\\} 6\\n`));
  const sum = Number(new RegExp(`_sum\\{${labels}\\} (\\S+)\\n`).exec(text)![1]);
  assert.ok(Math.abs(sum - (0.2 + 0.7 + 3 + 3 + 40 + 99999999)) < 1e-6);
});

test('the number of series is capped: extra label sets share one overflow series', () => {
  const m = new RequestMetrics(createRegistry());
  for (let i = 0; i < 5000; i++) m.add(`k${i}`, { ...L, response_code: String(i) }).observe(1);
  const over = m.add('another', L);
  assert.equal(over.labels.reporter, 'overflow');
  assert.ok(over.count >= 5000 - 4096);
});
