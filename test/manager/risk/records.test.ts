import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecordError, parseRecord, parseRecordLine } from '../../../src/manager/risk/records.js';

const base = { ts: '2026-11-21T10:00:00.123Z', source: { service: 'productpage' }, destination: { service: 'reviews' }, method: 'GET', path: '/r', status: 200, durationMs: 1.5 };

test('request records: RFC 3339 or epoch ms, optional fields kept, unknown fields ignored', () => {
  const r = parseRecord({ ...base, principal: 'jason', requestId: 'abc', bytesOut: 10, mtls: true, future: 'x' });
  assert.equal(r.kind, 'request');
  assert.equal(r.ts, Date.UTC(2026, 10, 21, 10, 0, 0, 123));
  assert.equal((r as { principal: string }).principal, 'jason');
  assert.equal(!('future' in r), true);
  assert.equal(parseRecord({ ...base, ts: 1795255200000 }).ts, 1795255200000);
  // An absent source is traffic from outside the mesh.
  const { source: _s, ...noSource } = base;
  assert.equal((parseRecord(noSource) as { source: { service: string } }).source.service, 'ingress');
});

test('invalid records name the field', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ ...base, ts: undefined }, /^ts: is required/],
    [{ ...base, ts: '21/11/2026' }, /^ts: must be an RFC 3339/],
    [{ ...base, status: '200' }, /^status: must be a number/],
    [{ ...base, status: 200.5 }, /^status: must be an integer/],
    [{ ...base, durationMs: -1 }, /^durationMs: must not be negative/],
    [{ ...base, destination: { version: 'v1' } }, /^destination\.service: is required/],
    [{ ...base, source: 'x' }, /^source: must be an object/],
    [{ ...base, mtls: 'yes' }, /^mtls: must be a boolean/],
    [{ ...base, kind: 'metric' }, /^kind: must be one of/],
    [{ kind: 'log', ts: 1, service: 's', level: 'loud', message: 'm' }, /^level: must be one of/],
    [{ kind: 'vuln', ts: 1, service: 's', findings: [{ id: 'CVE-1', severity: 'HIGH', cvss: 11 }] }, /^findings\[0\]\.cvss: must be between 0 and 10/],
    [{ kind: 'intel', ts: 1, indicators: [{ type: 'url', value: 'x', severity: 'high' }] }, /^indicators\[0\]\.type: must be one of/],
    [{ kind: 'intel', ts: 1 }, /^indicators: is required/],
  ];
  for (const [rec, re] of cases) {
    assert.throws(() => parseRecord(rec), (e: unknown) => e instanceof RecordError && re.test(e.message), JSON.stringify(rec));
  }
  assert.throws(() => parseRecordLine('{"ts":'), /not valid JSON/);
  assert.throws(() => parseRecordLine('[1]'), /must be a JSON object/);
});

test('engine config: defaults, and errors naming the field', async () => {
  const { resolveEngineConfig, defaultEngineConfig } = await import('../../../src/manager/risk/config.js');
  const d = defaultEngineConfig();
  assert.equal(d.risk.windowMs, 10_000);
  assert.equal(d.zones.containment.enterScore, 80);
  assert.equal(d.zones.isolation.enterScore, 50);
  assert.deepEqual(d.risk.levels, { medium: 25, high: 50, critical: 80 });
  assert.throws(() => resolveEngineConfig({ detectors: { controlChart: { detector: 'magic' } } }, 'm.yaml'), /m\.yaml: \/detectors\/controlChart\/detector: must be one of/);
  assert.throws(() => resolveEngineConfig({ zones: { isolation: { exitScore: 70 } } }, 'm.yaml'), /\/zones\/isolation\/exitScore: must not exceed enterScore/);
  assert.throws(() => resolveEngineConfig({ risk: { windowMs: 'ten' } }, 'm.yaml'), /\/risk\/windowMs: must be integer/);
  assert.throws(() => resolveEngineConfig({ zones: { bogus: 1 } }, 'm.yaml'), /\/zones\/bogus: is not a known field/);
});
