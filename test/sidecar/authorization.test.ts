import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import { ConfigError } from '../../src/core/errors.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import { startSidecar, startUpstream, type Upstream } from './helpers.js';
import { compileZoneResources } from '../../src/manager/zones/compile.js';
import { RiskEngine, defaultEngineConfig } from '../../src/manager/risk/index.js';

// The authorization and network-policy filters in the real sidecar chain: real listeners on
// loopback, a real upstream, policies pushed with applyResources as the control client does.

interface LogLine {
  audit?: string;
  [k: string]: unknown;
}

function captureLogger() {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

function call(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host: 'reviews', ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A raw keep-alive connection that has carried one successful request. */
async function openKeepAlive(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.write('GET /reviews/1 HTTP/1.1\r\nHost: reviews\r\n\r\n');
  const [chunk] = (await once(s, 'data')) as [Buffer];
  assert.match(chunk.toString('latin1'), /^HTTP\/1\.1 200/);
  return s;
}

function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

const ap = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name }, spec });
const np = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'etz.io/v1', kind: 'NetworkPolicy', metadata: { name }, spec });

describe('authorization filter in the sidecar chain', () => {
  let upstream: Upstream;
  let sidecar: Sidecar;
  let registry: Registry;
  let logs: ReturnType<typeof captureLogger>;
  let version = 1;

  before(async () => {
    upstream = await startUpstream();
    registry = createRegistry();
    logs = captureLogger();
    sidecar = await startSidecar(upstream.port, {}, { logger: logs.logger, registry });
  });
  after(async () => {
    await sidecar.close({ drainMs: 0 });
    await upstream.close();
  });

  test('no policies: the filters are not in the chain and requests pass', async () => {
    const r = await call(sidecar.ports.inbound, '/reviews/1');
    assert.equal(r.status, 200);
  });

  test('a DENY rule answers 403 naming the policy and rule, never reaching the app, with an audit record and a metric', async () => {
    await sidecar.applyResources({ policies: [ap('deny-admin', { selector: { service: 'reviews' }, action: 'DENY', rules: [{ to: [{ paths: ['/admin/*'] }] }] })] }, version++);
    const seenBefore = upstream.seen.length;
    const denied = await call(sidecar.ports.inbound, '/admin/users');
    assert.equal(denied.status, 403);
    const body = JSON.parse(denied.body) as { error: string; reason: string };
    assert.equal(body.error, 'ETZ_ERR_POLICY_DENIED');
    assert.match(body.reason, /deny-admin rule 0/);
    assert.equal(upstream.seen.length, seenBefore, 'the upstream never saw the denied request');
    assert.equal((await call(sidecar.ports.inbound, '/reviews/2')).status, 200);

    const rec = logs.lines.find((l) => l.audit === 'authz.deny');
    assert.ok(rec, 'audit record written');
    assert.equal(rec.policy, 'deny-admin');
    assert.equal(rec.rule, 0);
    assert.equal(rec.path, '/admin/users');
    assert.match(String(rec.explanation), /denied by policy deny-admin rule 0/);
    assert.deepEqual(rec.trace, ['deny-admin rule 0: matched']);
    const change = logs.lines.filter((l) => l.audit === 'policy.change' && l.kind === 'authorization').at(-1);
    assert.ok(change, 'policy change recorded');
    assert.equal(change.version, version - 1);
    assert.deepEqual(change.added, ['AuthorizationPolicy/deny-admin']);

    const metric = await registry.getSingleMetric('etz_policy_decisions_total')!.get();
    const deny = metric.values.find((v) => v.labels.action === 'deny' && v.labels.policy === 'deny-admin');
    assert.equal(deny?.value, 1);
  });

  test('ALLOW policies: only matching requests pass; AUDIT matches are recorded', async () => {
    await sidecar.applyResources(
      {
        policies: [
          ap('viewer', { selector: { service: 'reviews' }, rules: [{ to: [{ methods: ['GET'] }], when: [{ header: 'x-tenant', values: ['acme'] }] }] }),
          ap('audit-reads', { selector: { service: 'reviews' }, action: 'AUDIT', rules: [{ to: [{ paths: ['/reviews/*'] }] }] }),
        ],
      },
      version++,
    );
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1', { 'x-tenant': 'acme' })).status, 200);
    const wrongTenant = await call(sidecar.ports.inbound, '/reviews/1', { 'x-tenant': 'initech' });
    assert.equal(wrongTenant.status, 403);
    assert.match(JSON.parse(wrongTenant.body).reason, /no rule of the ALLOW policies selecting reviews matched \(viewer\)/);
    const why = logs.lines.filter((l) => l.audit === 'authz.deny').at(-1)!;
    assert.deepEqual(why.trace, ['viewer rule 0: no match (rules[0].when[0].values)', 'audit-reads rule 0: matched']);
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1', { 'x-tenant': 'acme' }, 'POST')).status, 403);
    const audits = logs.lines.filter((l) => l.audit === 'authz.audit');
    assert.ok(audits.length >= 2);
    assert.deepEqual(audits[0]!.matched, [{ policy: 'audit-reads', rule: 0 }]);
    const change = logs.lines.filter((l) => l.audit === 'policy.change' && l.kind === 'authorization').at(-1)!;
    assert.deepEqual(change.removed, ['AuthorizationPolicy/deny-admin']);
  });

  test('an invalid policy push is refused with the field named and the previous version stays in force', async () => {
    const before = sidecar.configVersion;
    await assert.rejects(
      sidecar.applyResources({ policies: [ap('bad', { selector: { service: 'reviews' }, rules: [{ from: [{ ipBlocks: ['10.0.0.300/8'] }] }] })] }, version++),
      (err: unknown) => err instanceof ConfigError && /\/resources\/policies\/0\/spec\/rules\/0\/from\/0\/ipBlocks\/0/.test(err.field) && /not a valid IP/.test(err.reason),
    );
    assert.equal(sidecar.configVersion, before);
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1', { 'x-tenant': 'initech' })).status, 403, 'old policy still enforced');
  });

  test('a policy change closes the open connections it now denies, and only those', async () => {
    await sidecar.applyResources({ policies: [] }, version++);
    const doomed = await openKeepAlive(sidecar.ports.inbound);
    // A change that still allows loopback GETs leaves the connection open.
    await sidecar.applyResources({ policies: [ap('deny-writes', { action: 'DENY', rules: [{ to: [{ methods: ['POST'] }] }] })] }, version++);
    assert.equal(await closedWithin(doomed, 200), false, 'still admitted');
    // Now every request from loopback is denied: the tunnel must not stay open.
    await sidecar.applyResources({ policies: [ap('deny-loopback', { action: 'DENY', rules: [{ from: [{ ipBlocks: ['127.0.0.0/8', '::1'] }] }] })] }, version++);
    assert.equal(await closedWithin(doomed, 2000), true, 'closed by the policy change');
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1')).status, 403);
  });
});

describe('network-policy filter in the sidecar chain', () => {
  let upstream: Upstream;
  let ratings: Upstream;
  let sidecar: Sidecar;
  let logs: ReturnType<typeof captureLogger>;
  let version = 1;

  before(async () => {
    upstream = await startUpstream();
    ratings = await startUpstream();
    logs = captureLogger();
    sidecar = await startSidecar(
      upstream.port,
      { registry: { ratings: { endpoints: [{ address: '127.0.0.1', port: ratings.port }] }, details: { endpoints: [{ address: '127.0.0.1', port: ratings.port }] } } },
      { logger: logs.logger, registry: createRegistry() },
    );
  });
  after(async () => {
    await sidecar.close({ drainMs: 0 });
    await upstream.close();
    await ratings.close();
  });

  test('ingress: an isolating policy admits only the listed sources and ports', async () => {
    const port = sidecar.ports.inbound;
    await sidecar.applyResources({ networkPolicies: [np('reviews-in', { target: { service: 'reviews' }, ingress: [{ from: [{ ipBlocks: ['127.0.0.0/8'] }], ports: [{ port }] }] })] }, version++);
    assert.equal((await call(port, '/reviews/1')).status, 200);
    await sidecar.applyResources({ networkPolicies: [np('reviews-in', { target: { service: 'reviews' }, ingress: [{ from: [{ ipBlocks: ['10.0.0.0/8'] }] }] })] }, version++);
    const r = await call(port, '/reviews/1');
    assert.equal(r.status, 403);
    const body = JSON.parse(r.body) as { error: string; reason: string };
    assert.equal(body.error, 'ETZ_ERR_NETWORK_POLICY_DENIED');
    assert.match(body.reason, /ingress denied.*reviews-in/);
    assert.ok(logs.lines.some((l) => l.audit === 'netpol.deny' && l.direction === 'ingress'));
  });

  test('egress: in-mesh services by name, hosts outside the mesh denied unless allow-listed', async () => {
    const out = sidecar.ports.outbound;
    await sidecar.applyResources({ networkPolicies: [np('reviews-out', { target: { service: 'reviews' }, egress: [{ to: [{ services: ['ratings'] }] }, { to: [{ hosts: ['api.partner.example'] }], ports: [{ port: 443 }] }] })] }, version++);
    const seen = ratings.seen.length;
    assert.equal((await call(out, '/ratings/1', { host: 'ratings' })).status, 200);
    assert.equal(ratings.seen.length, seen + 1);
    const details = await call(out, '/details/1', { host: 'details' });
    assert.equal(details.status, 403);
    assert.match(JSON.parse(details.body).reason, /egress denied/);
    const evil = await call(out, '/', { host: 'exfil.example' });
    assert.equal(evil.status, 403);
    assert.equal(JSON.parse(evil.body).error, 'ETZ_ERR_NETWORK_POLICY_DENIED');
    // Allow-listed host and port: the policy lets it through (the router then has no route for it).
    const partner = await call(out, '/', { host: 'api.partner.example:443' });
    assert.notEqual(partner.status, 403);
    assert.equal(ratings.seen.length, seen + 1, 'nothing denied reached an upstream');
  });

  test('without any network policy, egress outside the mesh is not filtered (the filter is off)', async () => {
    await sidecar.applyResources({}, version++);
    const r = await call(sidecar.ports.outbound, '/', { host: 'exfil.example' });
    assert.notEqual(JSON.parse(r.body).error, 'ETZ_ERR_NETWORK_POLICY_DENIED');
  });
});

describe('authorization follows the zones the zone-rules filter puts on the request', () => {
  let upstream: Upstream;
  let sidecar: Sidecar;

  before(async () => {
    upstream = await startUpstream();
    sidecar = await startSidecar(upstream.port, {}, { registry: createRegistry() });
  });
  after(async () => {
    await sidecar.close({ drainMs: 0 });
    await upstream.close();
  });

  test('a zone-selected policy applies exactly while the destination is in the zone', async () => {
    const policies = [ap('performance-read-only', { selector: { zone: 'performance' }, action: 'DENY', rules: [{ to: [{ notMethods: ['GET', 'HEAD'] }] }] })];
    const engine = new RiskEngine(defaultEngineConfig());
    const outside = compileZoneResources(engine.zoneRecords(), engine.flaggedPrincipals()).zones;
    await sidecar.applyResources({ policies, zones: outside }, 1);
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1', {}, 'POST')).status, 200, 'not in a zone: the policy does not select it');

    engine.createZone({ type: 'performance', members: [{ service: 'reviews' }], reason: 'test' }, Date.UTC(2026, 10, 21, 10));
    const inside = compileZoneResources(engine.zoneRecords(), engine.flaggedPrincipals()).zones;
    await sidecar.applyResources({ policies, zones: inside }, 2);
    const denied = await call(sidecar.ports.inbound, '/reviews/1', {}, 'POST');
    assert.equal(denied.status, 403);
    assert.match(JSON.parse(denied.body).reason, /performance-read-only rule 0/);
    assert.equal((await call(sidecar.ports.inbound, '/reviews/1')).status, 200);
  });
});
