import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ERRORS, EtzError, ConfigError } from '../../src/core/errors.js';

// The registry and docs/errors.md are one contract; this fails as soon as either side changes alone.
test('docs/errors.md lists exactly the codes in src/core/errors.ts, with the same statuses', async () => {
  const doc = await readFile(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map<string, string>();
  for (const line of doc.split('\n')) {
    const m = /^\|\s*(ETZ_ERR_[A-Z0-9_]+)\s*\|\s*([^|]+?)\s*\|/.exec(line);
    if (m) {
      assert.ok(!rows.has(m[1]!), `${m[1]} is listed twice in docs/errors.md`);
      rows.set(m[1]!, m[2]!);
    }
  }
  const code = new Set(Object.keys(ERRORS));
  const missingInDocs = [...code].filter((c) => !rows.has(c));
  const missingInCode = [...rows.keys()].filter((c) => !code.has(c));
  assert.deepEqual(missingInDocs, [], 'codes missing from docs/errors.md');
  assert.deepEqual(missingInCode, [], 'codes in docs/errors.md that src/core/errors.ts lacks');
  for (const [c, status] of rows) {
    const want = ERRORS[c as keyof typeof ERRORS].status;
    assert.equal(status, want === 0 ? '–' : String(want), `status of ${c} differs`);
  }
});

test('EtzError carries its code and the registry status', () => {
  const e = new EtzError('ETZ_ERR_UPSTREAM_TIMEOUT', 'slow');
  assert.equal(e.code, 'ETZ_ERR_UPSTREAM_TIMEOUT');
  assert.equal(e.status, 504);
  const c = new ConfigError('a.yaml', '/inbound/port', 'must be <= 65535');
  assert.equal(c.message, 'a.yaml: /inbound/port: must be <= 65535');
  assert.equal(c.code, 'ETZ_ERR_CONFIG_INVALID');
});
