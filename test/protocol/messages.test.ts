import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseManagerMessage, parseSidecarMessage, parseEnrollRequest, ProtocolError, topicsFor } from '../../src/protocol/messages.js';
import { checkRecord } from '../../src/protocol/telemetry.js';

test('valid sidecar frames parse', () => {
  assert.equal(parseSidecarMessage('{"type":"hello","protocol":1,"node":{"service":"reviews","instance":"reviews-v1-0"},"lastVersion":0}').type, 'hello');
  assert.equal(parseSidecarMessage(Buffer.from('{"type":"ack","version":5,"nonce":"a"}')).type, 'ack');
  const n = parseSidecarMessage('{"type":"nack","version":5,"nonce":"a","error":"bad"}');
  assert.equal(n.type === 'nack' && n.error, 'bad');
  assert.equal(parseSidecarMessage('{"type":"telemetry","records":[{"ts":1}]}').type, 'telemetry');
});

test('malformed sidecar frames are refused with a reason naming the problem', () => {
  const bad: Array<[string, RegExp]> = [
    ['not json', /not JSON/],
    ['[]', /invalid/],
    ['{"type":"ack","version":-1,"nonce":"a"}', /invalid sidecar frame 'ack'/],
    ['{"type":"ack","version":1}', /invalid/],
    ['{"type":"hello","protocol":1,"node":{"service":"../x","instance":"i"},"lastVersion":0}', /invalid/],
    ['{"type":"ack","version":1,"nonce":"a","extra":true}', /invalid/],
    ['{"type":"bogus"}', /invalid sidecar frame 'bogus'/],
    ['{"type":"telemetry","records":[1,2]}', /invalid/],
  ];
  for (const [text, re] of bad) assert.throws(() => parseSidecarMessage(text), (e: Error) => e instanceof ProtocolError && re.test(e.message), text);
});

test('manager frames: snapshots need every resource type, deltas any subset; unknown fields tolerated', () => {
  const full = { policies: [], zones: [], routes: [], rateLimits: [], intel: [], principals: [], trustBundle: [] };
  assert.equal(parseManagerMessage(JSON.stringify({ type: 'snapshot', version: 1, nonce: 'n', resources: full, future: 1 })).type, 'snapshot');
  assert.throws(() => parseManagerMessage(JSON.stringify({ type: 'snapshot', version: 1, nonce: 'n', resources: { zones: [] } })), ProtocolError);
  assert.equal(parseManagerMessage(JSON.stringify({ type: 'delta', version: 2, nonce: 'n', baseVersion: 1, resources: { zones: [{ id: 'z' }] } })).type, 'delta');
  assert.throws(() => parseManagerMessage(JSON.stringify({ type: 'delta', version: 2, nonce: 'n', baseVersion: 1, resources: { nope: [] } })), ProtocolError);
});

test('enroll requests are validated', () => {
  assert.equal(parseEnrollRequest({ csr: 'x', service: 'a', instance: 'a-0' }).service, 'a');
  assert.throws(() => parseEnrollRequest({ csr: 'x', service: 'a' }), /instance/);
});

test('topics are mesh, service and instance in merge order', () => {
  assert.deepEqual(topicsFor({ service: 's', instance: 'i' }), ['mesh', 'service/s', 'instance/i']);
});

test('telemetry records: required fields and types are checked and named', () => {
  const ok = { ts: '2026-11-21T10:00:00.000Z', source: { service: 'ingress' }, destination: { service: 'p' }, method: 'GET', path: '/', status: 200, durationMs: 1.5, unknownField: 1 };
  assert.equal(checkRecord(ok).ok, true);
  const cases: Array<[unknown, string]> = [
    [{ ...ok, ts: undefined }, 'ts'],
    [{ ...ok, ts: 'yesterday' }, 'ts'],
    [{ ...ok, status: '200' }, 'status'],
    [{ ...ok, durationMs: undefined }, 'durationMs'],
    [{ ...ok, destination: {} }, 'destination.service'],
    [{ ...ok, source: { service: 'a', version: 2 } }, 'source.version'],
    [{ ...ok, mtls: 'yes' }, 'mtls'],
    [{ kind: 'log', ts: 1, service: 's', level: 'loud', message: 'm' }, 'level'],
    [{ kind: 'vuln', ts: 1, service: 's' }, 'findings'],
    [{ kind: 'other', ts: 1 }, 'kind'],
  ];
  for (const [rec, field] of cases) {
    const r = checkRecord(rec);
    assert.equal(r.ok, false, field);
    assert.equal(!r.ok && r.field, field);
  }
});
