import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import { initCa, issueWorkloadCert, saveCa } from '../../src/identity/index.js';
import { startGateway } from '../../src/sidecar/gateway/gateway.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import type { RequestRecord } from '../../src/sidecar/telemetry.js';
import { listenRecording, startSidecar } from './helpers.js';
import { call, registryOf, startBackend, type Backend } from './traffic-fixtures.js';
import { makeJwt } from './routing-fixtures.js';

/**
 * `etz gateway` end to end: external clients → gateway (JWT → principal, rate limits, routes,
 * the per-principal detector) → productpage (a real app that fans each request out into three
 * calls to reviews through its own sidecar) → reviews v1/v2/v3.
 */

const SECRET = 'gateway-test-secret';
const exp = Math.floor(Date.now() / 1000) + 3600;
const token = (sub: string) => makeJwt('HS256', { sub, exp }, SECRET);

interface Productpage {
  server: Server;
  port: number;
  seen: { principal?: string; requestId?: string }[];
  close(): Promise<void>;
}

/** Bookinfo's productpage in miniature: three calls to reviews per page, headers propagated. */
async function startProductpage(outboundPort: () => number): Promise<Productpage> {
  const seen: Productpage['seen'] = [];
  const server = createServer(async (req, res) => {
    const principal = req.headers['x-etz-principal'] as string | undefined;
    const requestId = req.headers['x-request-id'] as string | undefined;
    seen.push({ principal, requestId });
    const fwd: Record<string, string> = {};
    for (const h of ['x-etz-principal', 'x-request-id', 'x-etz-suspicious']) if (req.headers[h]) fwd[h] = req.headers[h] as string;
    const versions: string[] = [];
    for (let i = 0; i < 3; i++) versions.push((await call(outboundPort(), 'reviews', { path: `/reviews/${i}`, headers: fwd })).headers['x-backend'] as string);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ principal, versions }));
  });
  return listenRecording(server, seen);
}

interface Mesh {
  gateway: Sidecar;
  productpage: Productpage;
  pageSidecar: Sidecar;
  reviews: Backend[];
  records: RequestRecord[];
}

async function withMesh(gatewayExtra: Record<string, unknown>, fn: (m: Mesh) => Promise<void>): Promise<void> {
  const reviews = await Promise.all(['v1', 'v2', 'v3'].map((v) => startBackend(v, 'ok')));
  let pageSidecar: Sidecar | undefined;
  const productpage = await startProductpage(() => pageSidecar!.ports.outbound);
  pageSidecar = await startSidecar(1, {
    service: { name: 'productpage', version: 'v1' },
    inbound: { enabled: false },
    registry: registryOf('reviews', reviews),
    resources: {
      routes: [{ name: 'reviews', hosts: ['reviews'], route: [{ subset: { version: 'v2' }, weight: 1 }, { subset: { version: 'v3' }, weight: 1 }], suspicious: { subset: { version: 'v1' } } }],
    },
  });
  const records: RequestRecord[] = [];
  const gateway = await startGateway(
    {
      service: { name: 'ingress-gateway' },
      gateway: { host: '127.0.0.1', port: 0 },
      admin: { port: 0 },
      logging: { level: 'silent' },
      telemetry: { enabled: true },
      tls: { mode: 'DISABLE' },
      registry: { productpage: { endpoints: [{ address: '127.0.0.1', port: productpage.port, version: 'v1' }] } },
      ...gatewayExtra,
      resources: {
        principal: { jwt: { keys: [{ alg: 'HS256', secret: SECRET }] } },
        routes: [{ name: 'bookinfo', hosts: ['*'], route: [{ service: 'productpage' }] }],
        ...((gatewayExtra.resources as object | undefined) ?? {}),
      },
    },
    { logger: nullLogger, registry: createRegistry(), telemetry: { record: (r) => records.push(r) } },
  );
  try {
    await fn({ gateway, productpage, pageSidecar, reviews, records });
  } finally {
    await gateway.close({ drainMs: 100 });
    await pageSidecar.close({ drainMs: 100 });
    await productpage.close();
    await Promise.all(reviews.map((b) => b.close()));
  }
}

test('gateway: JWT principal, one count per user request despite fan-out, reroute travels into the mesh', async () => {
  await withMesh({}, async ({ gateway, productpage, reviews, records }) => {
    const port = gateway.ports.gateway;
    assert.ok(port > 0);
    const page = async (user: string) => JSON.parse((await call(port, 'bookinfo.example', { path: '/productpage', headers: { authorization: `Bearer ${token(user)}` } })).body) as { principal: string; versions: string[] };
    // Five pages for jason: fifteen calls to reviews inside the mesh, still only five requests.
    for (let i = 0; i < 5; i++) {
      const p = await page('jason');
      assert.equal(p.principal, 'jason');
      assert.ok(p.versions.every((v) => v === 'v2' || v === 'v3'), `page ${i}: ${p.versions.join()}`);
    }
    assert.equal(reviews[0]!.hits.total, 0);
    // The sixth request within the minute: flagged at the gateway, served by v1 inside the mesh.
    for (let i = 0; i < 3; i++) assert.deepEqual((await page('jason')).versions, ['v1', 'v1', 'v1']);
    for (let i = 0; i < 4; i++) assert.ok((await page('alice')).versions.every((v) => v === 'v2' || v === 'v3'));
    assert.equal(reviews[0]!.hits.total, 9);
    // Gateway telemetry: source ingress at the client's address, destination productpage.
    const rec = records.find((r) => r.principal === 'alice')!;
    assert.equal(rec.source.service, 'ingress');
    assert.equal(rec.source.ip, '127.0.0.1');
    assert.equal(rec.destination.service, 'productpage');
    assert.equal(rec.status, 200);
    assert.equal(productpage.seen.length, 12);
  });
});

test('gateway: a client cannot name itself or reuse a request id; bad tokens never reach the mesh', async () => {
  await withMesh({}, async ({ gateway, productpage }) => {
    const port = gateway.ports.gateway;
    const r = await call(port, 'bookinfo.example', { headers: { authorization: `Bearer ${token('jason')}`, 'x-etz-principal': 'alice', 'x-request-id': 'fixed-id-123' } });
    assert.equal(JSON.parse(r.body).principal, 'jason');
    assert.notEqual(productpage.seen.at(-1)!.requestId, 'fixed-id-123');
    const spoof = await call(port, 'bookinfo.example', { headers: { 'x-etz-principal': 'alice' } });
    assert.equal(JSON.parse(spoof.body).principal, undefined, 'without a token there is no principal');
    const before = productpage.seen.length;
    const bad = await call(port, 'bookinfo.example', { headers: { authorization: `Bearer ${makeJwt('HS256', { sub: 'jason', exp }, 'wrong')}` } });
    assert.equal(bad.status, 401);
    assert.equal(JSON.parse(bad.body).error, 'ETZ_ERR_JWT_INVALID');
    assert.match(String(bad.headers['www-authenticate']), /invalid_token/);
    assert.equal(productpage.seen.length, before);
  });
});

test('gateway: per-user rate limit answers 429 with Retry-After and RateLimit headers', async () => {
  await withMesh({ resources: { rateLimits: [{ name: 'per-user', key: 'principal', requests: 3, per: 'minute' }] } }, async ({ gateway, productpage, records }) => {
    const port = gateway.ports.gateway;
    const statuses: number[] = [];
    let limited;
    for (let i = 0; i < 5; i++) {
      const r = await call(port, 'bookinfo.example', { headers: { authorization: `Bearer ${token('bob')}` } });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    assert.equal(JSON.parse(limited!.body).error, 'ETZ_ERR_RATE_LIMITED');
    assert.ok(Number(limited!.headers['retry-after']) >= 1);
    assert.equal(limited!.headers['ratelimit-limit'], '3');
    assert.equal(limited!.headers['ratelimit-remaining'], '0');
    assert.ok(Number(limited!.headers['ratelimit-reset']) >= 1);
    assert.equal(productpage.seen.length, 3);
    assert.equal((await call(port, 'bookinfo.example', { headers: { authorization: `Bearer ${token('carol')}` } })).status, 200);
    assert.equal(records.filter((r) => r.decision === 'ratelimited').length, 2);
  });
});

test('gateway: HTTPS with a certificate issued by the etz CA', async () => {
  const ca = await initCa({ trustDomain: 'etz.local' });
  const cert = await issueWorkloadCert(ca, 'spiffe://etz.local/ns/edge/sa/ingress-gateway');
  const dir = await mkdtemp(join(tmpdir(), 'etz-gw-'));
  try {
    await writeFile(join(dir, 'gw.crt'), cert.certChainPem);
    await writeFile(join(dir, 'gw.key'), cert.keyPem, { mode: 0o600 });
    await withMesh({ gateway: { host: '127.0.0.1', port: 0, tls: { certFile: join(dir, 'gw.crt'), keyFile: join(dir, 'gw.key') } } }, async ({ gateway }) => {
      const body = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: gateway.ports.gateway,
            path: '/productpage',
            headers: { host: 'bookinfo.example', authorization: `Bearer ${token('dana')}` },
            ca: ca.trustBundlePem,
            // The workload certificate names a SPIFFE ID, not a DNS name: check the chain only.
            checkServerIdentity: () => undefined,
            agent: false,
          },
          (res) => {
            let b = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (b += c));
            res.on('end', () => resolve(b));
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(JSON.parse(body).principal, 'dana');
      // Plain HTTP to the HTTPS port is not served.
      await assert.rejects(
        new Promise((resolve, reject) => {
          const req = httpRequest({ host: '127.0.0.1', port: gateway.ports.gateway, path: '/', agent: false }, resolve);
          req.on('error', reject);
          req.setTimeout(3000, () => req.destroy(new Error('timeout')));
          req.end();
        }),
      );
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

function runCli(args: string[], env: Record<string, string> = {}): { child: ReturnType<typeof spawn>; out: Promise<{ code: number; stderr: string; stdout: string }> } {
  const child = spawn(process.execPath, [new URL('../../src/cli/main.js', import.meta.url).pathname, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c));
  child.stdout!.on('data', (c: Buffer) => (stdout += c));
  return { child, out: once(child, 'exit').then(([code]) => ({ code: code as number, stderr, stdout })) };
}

test('etz gateway: a real process serves, drains on SIGTERM; a bad config exits 2 naming the field', async () => {
  const app = await startBackend('app', 'ok');
  const dir = await mkdtemp(join(tmpdir(), 'etz-gw-cli-'));
  try {
    const cfg = join(dir, 'gateway.yaml');
    await writeFile(
      cfg,
      [
        'gateway: { host: 127.0.0.1, port: 0 }',
        'admin: { enabled: false }',
        'logging: { level: warn }',
        'tls: { mode: DISABLE }',
        'registry:',
        `  web: { endpoints: [{ address: 127.0.0.1, port: ${app.port} }] }`,
        'resources:',
        '  routes: [{ name: all, route: [{ service: web }] }]',
      ].join('\n'),
    );
    const { child, out } = runCli(['gateway', '--config', cfg]);
    const port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      child.stderr!.on('data', (c: Buffer) => {
        buf += c;
        const m = /http :(\d+)/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', () => reject(new Error(`gateway exited: ${buf}`)));
    });
    const r = await call(port, 'www.example', { path: '/hello' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-backend'], 'app');
    child.kill('SIGTERM');
    assert.equal((await out).code, 0);

    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'resources:\n  rateLimits: [{ name: x, key: cookie, requests: 1 }]\n');
    const res = await runCli(['gateway', '--config', bad]).out;
    assert.equal(res.code, 2);
    assert.match(res.stderr, /invalid config: .*bad\.yaml.*\/resources\/rateLimits\/0\/key/);
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('gateway → mTLS → sidecar: the gateway forwards into the mesh with its own SPIFFE identity', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-gw-mtls-'));
  const seen: (string | undefined)[] = [];
  const app = createServer((req, res) => {
    seen.push(req.headers['x-etz-peer-identity'] as string | undefined);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`principal ${req.headers['x-etz-principal'] ?? 'none'}`);
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  let sidecar: Sidecar | undefined;
  let gateway: Sidecar | undefined;
  try {
    await saveCa(join(dir, 'ca'), await initCa({ trustDomain: 'etz.local' }));
    const tls = { caDir: join(dir, 'ca') };
    sidecar = await startSidecar((app.address() as { port: number }).port, { service: { name: 'productpage' }, tls });
    gateway = await startGateway(
      {
        service: { name: 'ingress-gateway' },
        tls,
        gateway: { host: '127.0.0.1', port: 0 },
        admin: { port: 0 },
        logging: { level: 'silent' },
        registry: { productpage: { endpoints: [{ address: '127.0.0.1', port: sidecar.ports.inbound }], spiffeId: 'spiffe://etz.local/ns/default/sa/productpage' } },
        resources: { principal: { jwt: { keys: [{ alg: 'HS256', secret: SECRET }] } }, routes: [{ name: 'all', route: [{ service: 'productpage' }] }] },
      },
      { logger: nullLogger, registry: createRegistry() },
    );
    const r = await call(gateway.ports.gateway, 'bookinfo.example', { headers: { authorization: `Bearer ${token('erin')}` } });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'principal erin');
    assert.equal(seen.at(-1), 'spiffe://etz.local/ns/default/sa/ingress-gateway');
    // The sidecar refuses plaintext: only the gateway's mTLS hop gets in.
    const direct = await call(sidecar.ports.inbound, 'productpage').catch(() => ({ status: 0 }));
    assert.notEqual(direct.status, 200);
  } finally {
    await gateway?.close({ drainMs: 100 });
    await sidecar?.close({ drainMs: 100 });
    await new Promise<void>((resolve) => {
      app.close(() => resolve());
      app.closeAllConnections();
    });
    await rm(dir, { recursive: true, force: true });
  }
});
