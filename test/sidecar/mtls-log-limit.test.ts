import { test } from 'node:test';
import assert from 'node:assert/strict';
import { refusalLogger } from '../../src/sidecar/tls/log-limit.js';
import { memoryLogger } from './mtls-fixtures.js';

test('refusal logging: one line per refusal up to the per-second cap, then a summary of what was held back', async () => {
  const { logger, lines } = memoryLogger();
  const log = refusalLogger(logger, 'refused', 5);
  for (let i = 0; i < 12; i++) log('expired', { n: i });
  log('untrusted', { n: 99 });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(lines.filter((l) => l.reason === 'expired').length, 5);
  assert.equal(lines.filter((l) => l.reason === 'untrusted').length, 1, 'each reason has its own budget');
  await new Promise((r) => setTimeout(r, 1050));
  log('expired', { n: 100 });
  await new Promise((r) => setTimeout(r, 50));
  const summary = lines.find((l) => l.suppressed !== undefined);
  assert.equal(summary?.suppressed, 7);
  assert.equal(lines.at(-1)?.n, 100);
});
