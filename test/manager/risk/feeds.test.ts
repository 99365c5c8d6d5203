import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IntelIndex, parseBlocklist, parseFeedText, parseStixBundle, parseTrivyReport } from '../../../src/manager/risk/feeds.js';
import { RiskEngine } from '../../../src/manager/risk/index.js';

const T = Date.UTC(2026, 10, 21, 10);

test('a Trivy JSON report maps onto vuln findings with the best CVSS', () => {
  const report = {
    SchemaVersion: 2,
    ArtifactName: 'registry.local/details:1.4',
    Results: [
      { Target: 'os', Vulnerabilities: [{ VulnerabilityID: 'CVE-2024-0001', PkgName: 'openssl', Severity: 'CRITICAL', FixedVersion: '3.0.9', CVSS: { nvd: { V3Score: 9.8, V2Score: 7 }, redhat: { V3Score: 8.1 } } }] },
      { Target: 'node', Vulnerabilities: [{ VulnerabilityID: 'CVE-2023-1', PkgName: 'x', Severity: 'UNKNOWN' }] },
      { Target: 'empty', Vulnerabilities: null },
    ],
  };
  const rec = parseTrivyReport(report, 'details', T);
  assert.equal(rec.image, 'registry.local/details:1.4');
  assert.deepEqual(rec.findings[0], { id: 'CVE-2024-0001', severity: 'CRITICAL', cvss: 9.8, package: 'openssl', fixedVersion: '3.0.9' });
  assert.equal(rec.findings[1]!.severity, 'LOW');
  // Sniffed from text: the service comes from the image name.
  const sniffed = parseFeedText(JSON.stringify(report), { ts: T });
  assert.equal(sniffed.kind, 'vuln');
  assert.equal((sniffed as { service: string }).service, 'details');
  assert.throws(() => parseTrivyReport({ Results: [{ Vulnerabilities: [{ VulnerabilityID: 'X' }] }] }, 'd', T), /Results\[0\]\.Vulnerabilities\[0\]\.severity: is required/);
});

test('plain blocklists: IPs and CIDRs, comments, bad lines named', () => {
  const rec = parseBlocklist('# feed\n203.0.113.7\n198.51.100.0/24  # a range\n\n2001:db8::1\n', { ts: T, source: 'abuse' });
  assert.deepEqual(rec.indicators.map((i) => [i.type, i.value]), [['ip', '203.0.113.7'], ['cidr', '198.51.100.0/24'], ['ip', '2001:db8::1']]);
  assert.throws(() => parseBlocklist('1.2.3.4\nnot-an-ip\n', { ts: T }), /line 2: 'not-an-ip' is not an IP address/);
});

test('STIX 2.1 bundles: ipv4 patterns, revoked and expired indicators skipped', () => {
  const bundle = {
    type: 'bundle',
    id: 'bundle--1',
    objects: [
      { type: 'indicator', id: 'indicator--a', name: 'c2', pattern_type: 'stix', pattern: "[ipv4-addr:value = '192.0.2.10'] OR [ipv4-addr:value = '192.0.2.0/28']", confidence: 90 },
      { type: 'indicator', id: 'indicator--b', pattern_type: 'stix', pattern: "[ipv4-addr:value = '192.0.2.99']", revoked: true },
      { type: 'indicator', id: 'indicator--c', pattern_type: 'stix', pattern: "[ipv4-addr:value = '192.0.2.98']", valid_until: '2020-01-01T00:00:00Z' },
      { type: 'malware', id: 'malware--x' },
    ],
  };
  const rec = parseStixBundle(bundle, T);
  assert.deepEqual(rec.indicators.map((i) => [i.type, i.value, i.severity]), [['ip', '192.0.2.10', 'critical'], ['cidr', '192.0.2.0/28', 'critical']]);
  const ix = new IntelIndex();
  for (const i of rec.indicators) ix.add(i);
  assert.equal(ix.matchIp('192.0.2.10', T)?.value, '192.0.2.10');
  assert.equal(ix.matchIp('::ffff:192.0.2.14', T)?.value, '192.0.2.0/28');
  assert.equal(ix.matchIp('192.0.2.16', T), undefined);
  assert.throws(() => parseStixBundle({ type: 'x' }, T), /STIX 2\.1 bundle/);
});

test('intel in the engine: a blocklisted client IP blocks its user; a listed principal is blocked at once', () => {
  const engine = new RiskEngine();
  const events: Array<{ event: string; principal?: string; action?: string }> = [];
  engine.on((e) => events.push(e as never));
  engine.advance(T);
  engine.loadFeed('203.0.113.0/24\n', { ts: T });
  engine.ingestJson({ ts: T + 1000, source: { service: 'ingress', ip: '203.0.113.50' }, destination: { service: 'productpage' }, principal: 'mallory', method: 'GET', path: '/', status: 200, durationMs: 1 });
  engine.ingestJson({ kind: 'intel', ts: T + 2000, indicators: [{ type: 'principal', value: 'trudy', severity: 'critical' }] });
  const flagged = events.filter((e) => e.event === 'principal.flagged');
  assert.deepEqual(flagged.map((e) => [e.principal, e.action]), [['mallory', 'block'], ['trudy', 'block']]);
  assert.equal(engine.explain('principal:mallory')?.reasons[0]?.detector, 'intel');
});

test('vulnerability priors raise a service score and are explained', () => {
  const engine = new RiskEngine();
  engine.ingestJson({ kind: 'vuln', ts: T, service: 'details', findings: [{ id: 'CVE-2024-0001', severity: 'CRITICAL', cvss: 9.8 }] });
  engine.ingestJson({ ts: T + 1, source: { service: 'productpage' }, destination: { service: 'details' }, method: 'GET', path: '/', status: 200, durationMs: 1 });
  engine.advance(T + 20_000);
  const e = engine.explain('details');
  assert.ok(e);
  assert.equal(e.level, 'medium');
  assert.equal(e.reasons[0]!.detector, 'vuln');
  assert.match(e.reasons[0]!.detail, /CVE-2024-0001 \(CRITICAL, CVSS 9\.8\)/);
  assert.ok(e.score > 25 && e.score < 50);
});
