import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startUpstream, startSidecar, type Upstream } from './helpers.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';

// The admin listener: open health and metrics on loopback, token-guarded config dump with
// secrets redacted.

const TOKEN = 'test-admin-token-0123456789';
let up: Upstream;
let sc: Sidecar;

before(async () => {
  up = await startUpstream();
  sc = await startSidecar(up.port, {
    registry: { ratings: { endpoints: [{ address: '127.0.0.1', port: up.port, version: 'v2' }] } },
    resources: {},
  });
});

after(async () => {
  await sc.close({ drainMs: 50 });
  await up.close();
});

async function admin(path: string, headers: Record<string, string> = {}) {
  const r = await request(`http://127.0.0.1:${sc.ports.admin}${path}`, { headers });
  return { status: r.statusCode, text: await r.body.text(), headers: r.headers };
}

test('healthz and ready answer 200', async () => {
  assert.equal((await admin('/healthz')).status, 200);
  assert.equal((await admin('/ready')).status, 200);
  assert.equal((await admin('/nope')).status, 404);
});

test('metrics expose Istio-style request metrics and pool gauges', async () => {
  for (let i = 0; i < 3; i++) await (await request(`http://127.0.0.1:${sc.ports.outbound}/x`, { headers: { host: 'ratings' } })).body.text();
  const m = await admin('/metrics');
  assert.equal(m.status, 200);
  assert.match(m.headers['content-type'] as string, /text\/plain/);
  assert.match(
    m.text,
    /etz_requests_total\{reporter="source",source_workload="reviews",source_version="v1",destination_workload="ratings",destination_version="v2",response_code="200"\} 3/,
  );
  assert.match(m.text, /etz_request_duration_milliseconds_bucket\{le="0.5",reporter="source"/);
  assert.match(m.text, new RegExp(`etz_upstream_pool_connections\\{direction="outbound",cluster="ratings",endpoint="127.0.0.1:${up.port}"\\} 1`));
});

test('config_dump needs the bearer token and redacts secrets', async () => {
  assert.equal((await admin('/config_dump')).status, 401);
  assert.equal((await admin('/config_dump', { authorization: 'Bearer wrong-token-wrong-token' })).status, 401);
  const ok = await admin('/config_dump', { authorization: `Bearer ${TOKEN}` });
  assert.equal(ok.status, 200);
  const dump = JSON.parse(ok.text);
  assert.equal(dump.config.service.name, 'reviews');
  assert.equal(dump.config.admin.token, '[redacted]');
  assert.ok(!ok.text.includes(TOKEN), 'the token never appears in the dump');
  assert.equal(dump.chains.inbound[0], 'request-id');
  assert.equal(dump.chains.inbound.at(-1), 'router');
});

test('config_dump is refused when no admin token is configured', async () => {
  const bare = await startSidecar(up.port, { admin: { port: 0, token: undefined } });
  try {
    const r = await request(`http://127.0.0.1:${bare.ports.admin}/config_dump`, { headers: { authorization: 'Bearer anything-anything' } });
    const body = JSON.parse(await r.body.text());
    assert.equal(r.statusCode, 403);
    assert.equal(body.error, 'ETZ_ERR_FORBIDDEN');
  } finally {
    await bare.close({ drainMs: 50 });
  }
});
