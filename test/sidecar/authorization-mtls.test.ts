import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { initCa, issueWorkloadCert, saveCa, type CaMaterial } from '../../src/identity/index.js';
import { createRegistry } from '../../src/core/metrics.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import { startSidecar, startUpstream, type Upstream } from './helpers.js';

// Authorization on the verified SPIFFE identity of the peer: two client sidecars with different
// identities call one server sidecar over real mTLS with certificates from etz's own CA.

const PP = 'spiffe://etz.local/ns/default/sa/productpage';
const RT = 'spiffe://etz.local/ns/default/sa/ratings';
const RV = 'spiffe://etz.local/ns/default/sa/reviews';

let dir: string;
let ca: CaMaterial;
let app: Upstream;
let reviews: Sidecar;
let productpage: Sidecar;
let ratings: Sidecar;

const policy = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name }, spec });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-authz-mtls-'));
  ca = await initCa({ trustDomain: 'etz.local' });
  await saveCa(join(dir, 'ca'), ca);
  app = await startUpstream();
  const tls = { caDir: join(dir, 'ca') };
  reviews = await startSidecar(app.port, { service: { name: 'reviews' }, tls }, { registry: createRegistry() });
  const registry = { reviews: { endpoints: [{ address: '127.0.0.1', port: reviews.ports.inbound }], spiffeId: RV } };
  productpage = await startSidecar(1, { service: { name: 'productpage' }, tls, registry }, { registry: createRegistry() });
  ratings = await startSidecar(1, { service: { name: 'ratings' }, tls, registry }, { registry: createRegistry() });
  await reviews.applyResources(
    {
      policies: [
        policy('reviews-viewer', { selector: { service: 'reviews' }, rules: [{ from: [{ principals: [PP] }], to: [{ methods: ['GET'], paths: ['/reviews/*'] }] }] }),
      ],
    },
    1,
  );
});

after(async () => {
  await productpage?.close({ drainMs: 0 });
  await ratings?.close({ drainMs: 0 });
  await reviews?.close({ drainMs: 0 });
  await app?.close();
  await rm(dir, { recursive: true, force: true });
});

async function via(sidecar: Sidecar, path: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number; body: string }> {
  const res = await request(`http://127.0.0.1:${sidecar.ports.outbound}${path}`, { method, headers: { host: 'reviews' } });
  return { status: res.statusCode, body: await res.body.text() };
}

test('the policy sees the mTLS identity: productpage may GET, ratings may not, POST is refused', async () => {
  const seen = app.seen.length;
  assert.equal((await via(productpage, '/reviews/1')).status, 200);
  assert.equal(app.seen.length, seen + 1);
  const fromRatings = await via(ratings, '/reviews/1');
  assert.equal(fromRatings.status, 403);
  const body = JSON.parse(fromRatings.body) as { error: string; reason: string };
  assert.equal(body.error, 'ETZ_ERR_POLICY_DENIED');
  assert.match(body.reason, /no rule of the ALLOW policies selecting reviews matched \(reviews-viewer\)/);
  assert.equal((await via(productpage, '/reviews/1', 'POST')).status, 403);
  assert.equal(app.seen.length, seen + 1, 'denied requests never reached the app');
});

test('revoking the caller closes its open mTLS connection', async () => {
  await reviews.applyResources({ policies: [policy('open', { selector: { service: 'reviews' }, rules: [{}] })] }, 2);
  const cert = await issueWorkloadCert(ca, PP);
  const sock: TLSSocket = tlsConnect({ host: '127.0.0.1', port: reviews.ports.inbound, ca: ca.trustBundlePem, cert: cert.certChainPem, key: cert.keyPem, checkServerIdentity: () => undefined });
  await once(sock, 'secureConnect');
  sock.write('GET /reviews/1 HTTP/1.1\r\nHost: reviews\r\n\r\n');
  const [first] = (await once(sock, 'data')) as [Buffer];
  assert.match(first.toString('latin1'), /^HTTP\/1\.1 200/);
  const closed = new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), 3000);
    sock.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
  // Denying another identity leaves this connection alone; denying productpage closes it.
  await reviews.applyResources({ policies: [policy('deny-ratings', { selector: { service: 'reviews' }, action: 'DENY', rules: [{ from: [{ principals: [RT] }] }] })] }, 3);
  assert.equal(sock.destroyed, false);
  await reviews.applyResources({ policies: [policy('deny-productpage', { selector: { service: 'reviews' }, action: 'DENY', rules: [{ from: [{ principals: [PP] }] }] })] }, 4);
  assert.equal(await closed, true, 'the connection carrying productpage was closed by the policy change');
});
