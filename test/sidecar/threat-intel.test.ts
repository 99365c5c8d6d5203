import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { ConfigError } from '../../src/core/errors.js';
import { createRegistry } from '../../src/core/metrics.js';
import { validateConfig } from '../../src/config/load.js';
import { ipv4ToInt, ipv6ToHex } from '../../src/sidecar/filters/intel-index.js';
import { INTEL_ATTR, compileIntel, intelSchema, threatIntelFilter, type IntelMatch, type IntelResource } from '../../src/sidecar/filters/threat-intel.js';
import type { LocalReply } from '../../src/sidecar/filter.js';
import { delay, startSidecar, startUpstream } from './helpers.js';
import { fakeCtx, fakeEnv } from './routing-fixtures.js';

function get(port: number, headers: Record<string, string> = {}, agent?: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/x', headers, ...(agent ? { agent } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function intel(cfg: unknown): IntelResource {
  return validateConfig('resources', intelSchema, cfg) as IntelResource;
}

test('IPv4 and IPv6 prefixes: longest live prefix wins, mapped IPv4 and expiry are honoured', () => {
  const now = 1_000_000;
  const ix = compileIntel(
    [
      { type: 'cidr', value: '10.0.0.0/8', severity: 'low' },
      { type: 'cidr', value: '10.1.0.0/16', severity: 'critical' },
      { type: 'cidr', value: '2001:db8::/32', severity: 'high' },
      { type: 'ip', value: '2001:db8:0:0::7', severity: 'medium' },
      { type: 'ip', value: '192.0.2.1', severity: 'high', expiresAt: now + 10 },
      { type: 'ip', value: '192.0.2.2', severity: 'high', expiresAt: new Date(now - 1).toISOString() },
    ],
    now,
  );
  assert.equal(ix.size, 5, 'the indicator expired before compile is dropped');
  assert.equal(ix.matchIp('10.1.2.3', now)?.severity, 'critical');
  assert.equal(ix.matchIp('10.2.2.3', now)?.severity, 'low');
  assert.equal(ix.matchIp('::ffff:10.1.9.9', now)?.severity, 'critical');
  assert.equal(ix.matchIp('11.0.0.1', now), undefined);
  assert.equal(ix.matchIp('2001:db8:1::5', now)?.severity, 'high');
  assert.equal(ix.matchIp('2001:db8::7', now)?.severity, 'medium', 'exact address in another text form');
  assert.equal(ix.matchIp('2001:db9::1', now), undefined);
  assert.equal(ix.matchIp('192.0.2.1', now)?.severity, 'high');
  assert.equal(ix.matchIp('192.0.2.1', now + 10), undefined, 'expired at request time');
  assert.equal(ipv6ToHex('::ffff:1.2.3.4'), '00000000000000000000ffff01020304');
  assert.equal(ipv6ToHex('1::2::3'), null);
  assert.equal(ipv4ToInt('10.0.0.256'), null);
  assert.equal(ipv4ToInt('1.2.3'), null);
  assert.equal(ipv4ToInt('255.255.255.255'), 0xffffffff);
  // A prefix that ends inside a hex digit (/30 cuts the 8th digit).
  const odd = compileIntel([{ type: 'cidr', value: '2001:db8::/30', severity: 'low' }], now);
  assert.ok(odd.matchIp('2001:dbb::1', now));
  assert.equal(odd.matchIp('2001:dbc::1', now), undefined);
});

test('bad indicators are refused with the field named', () => {
  assert.throws(() => compileIntel([{ type: 'cidr', value: '10.0.0.0/40', severity: 'high' }], 0), (e: unknown) => e instanceof ConfigError && e.field === '/resources/intel/0/value');
  assert.throws(() => compileIntel([{ type: 'ip', value: 'example.com', severity: 'high' }], 0), ConfigError);
  assert.throws(() => compileIntel([{ type: 'ip', value: '1.2.3.4', severity: 'high', expiresAt: 'soon' }], 0), ConfigError);
  assert.throws(() => validateConfig('resources', intelSchema, [{ type: 'ip', value: '1.2.3.4', severity: 'severe' }]), ConfigError);
});

test('identity, principal and a trusted x-forwarded-for hop at the gateway; medium is marked, not denied', () => {
  const res = intel({
    indicators: [
      { type: 'identity', value: 'spiffe://etz.local/ns/default/sa/evil', severity: 'high', source: 'feed-a' },
      { type: 'principal', value: 'mallory', severity: 'medium' },
      { type: 'ip', value: '198.51.100.9', severity: 'critical' },
    ],
    trustForwardedFor: true,
  });
  const f = threatIntelFilter.compile(res, fakeEnv('gateway'))!;
  const denied = fakeCtx({ direction: 'gateway', peer: 'spiffe://etz.local/ns/default/sa/evil' });
  assert.equal((f.onRequest(denied) as LocalReply).code, 'ETZ_ERR_THREAT_INTEL_BLOCKED');
  const marked = fakeCtx({ direction: 'gateway', principal: 'mallory' });
  assert.equal(f.onRequest(marked), undefined);
  assert.deepEqual(marked.attrs.get(INTEL_ATTR) as IntelMatch, { on: 'principal', type: 'principal', value: 'mallory', severity: 'medium', action: 'mark' });
  const xff = fakeCtx({ direction: 'gateway', headers: { 'X-Forwarded-For': '198.51.100.9, 10.0.0.1' } });
  assert.equal((f.onRequest(xff) as LocalReply | undefined)?.status, 403);
  // Only the first hop counts, and only where trusted.
  assert.equal(f.onRequest(fakeCtx({ direction: 'gateway', headers: { 'x-forwarded-for': '10.0.0.1, 198.51.100.9' } })), undefined);
  const untrusting = threatIntelFilter.compile(intel({ indicators: [{ type: 'ip', value: '198.51.100.9', severity: 'critical' }] }), fakeEnv('gateway'))!;
  assert.equal(untrusting.onRequest(fakeCtx({ direction: 'gateway', headers: { 'x-forwarded-for': '198.51.100.9' } })), undefined);
  // Actions per severity are configurable.
  const lenient = threatIntelFilter.compile(intel({ indicators: [{ type: 'principal', value: 'mallory', severity: 'critical' }], actions: { critical: 'mark' } }), fakeEnv('gateway'))!;
  assert.equal(lenient.onRequest(fakeCtx({ direction: 'gateway', principal: 'mallory' })), undefined);
  // Nothing live: not in the chain.
  assert.equal(threatIntelFilter.compile(undefined, fakeEnv('inbound')), null);
  assert.equal(threatIntelFilter.compile(intel([{ type: 'ip', value: '1.2.3.4', severity: 'high', expiresAt: Date.now() - 1 }]), fakeEnv('inbound')), null);
});

test('through a real sidecar: deny, mark, request-time expiry, closing a banned keep-alive connection, bad push refused', async (t) => {
  const up = await startUpstream();
  const registry = createRegistry();
  const sc = await startSidecar(up.port, { resources: { intel: [{ type: 'principal', value: 'mallory', severity: 'critical' }, { type: 'principal', value: 'trudy', severity: 'low' }] } }, { registry });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(async () => {
    agent.destroy();
    await sc.close({ drainMs: 100 });
    await up.close();
  });
  const port = sc.ports.inbound;
  assert.ok((sc.configDump().chains as Record<string, string[]>).inbound!.includes('threat-intel'));

  const before = up.seen.length;
  const denied = await get(port, { 'x-etz-principal': 'mallory' });
  assert.equal(denied.status, 403);
  assert.equal(JSON.parse(denied.body).error, 'ETZ_ERR_THREAT_INTEL_BLOCKED');
  assert.equal(up.seen.length, before, 'a denied request is never forwarded');
  assert.equal((await get(port, { 'x-etz-principal': 'trudy' })).status, 200);
  assert.equal((await get(port, { 'x-etz-principal': 'alice' })).status, 200);
  const text = await registry.metrics();
  assert.match(text, /etz_threat_intel_matches_total\{type="principal",severity="critical",action="deny"\} 1/);
  assert.match(text, /etz_threat_intel_matches_total\{type="principal",severity="low",action="mark"\} 1/);

  // A live keep-alive connection from an address that becomes critical is closed by the new version.
  assert.equal((await get(port, {}, agent)).status, 200);
  const sock = Object.values(agent.freeSockets).flat()[0]!;
  assert.ok(sock, 'the keep-alive socket is pooled');
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  await sc.applyResources({ intel: { indicators: [{ type: 'cidr', value: '127.0.0.0/8', severity: 'high', expiresAt: Date.now() + 1500 }] } }, 2);
  await closed;
  assert.equal((await get(port)).status, 403);

  // A bad push changes nothing: the version and the ban stay in force.
  await assert.rejects(sc.applyResources({ intel: [{ type: 'cidr', value: '127.0.0.0/99', severity: 'high' }] }, 3), (e: unknown) => e instanceof ConfigError && /\/resources\/intel\/0\/value/.test(e.field));
  assert.equal(sc.configVersion, 2);
  assert.equal((await get(port)).status, 403);

  // The indicator expires while the version is in force: checked per request, not per version.
  await delay(1700);
  assert.equal((await get(port)).status, 200);
});
