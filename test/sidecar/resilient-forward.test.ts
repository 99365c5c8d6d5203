import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import { rawExchange, startSidecar, startUpstream, statusOf, type Upstream } from './helpers.js';

// The resilient path (a destination with a traffic policy, or a route with retries) sends the
// same request target upstream as the plain path: origin-form, whatever form the client used.

let up: Upstream;
let sc: Sidecar;
let registry: Registry;

before(async () => {
  up = await startUpstream();
  registry = createRegistry();
  sc = await startSidecar(1, {
    inbound: { enabled: false },
    registry: { ratings: { port: 9080, endpoints: [{ address: '127.0.0.1', port: up.port }] } },
    resources: {
      routes: {
        rules: [{ name: 'ratings', hosts: ['ratings'], retries: { attempts: 2, retryOn: ['reset', '503'], backoff: { baseMs: 1, maxMs: 5 } } }],
        destinations: { ratings: { loadBalancer: 'round-robin' } },
      },
    },
  }, { registry });
});

after(async () => {
  await sc.close({ drainMs: 100 });
  await up.close();
});

test('resilient path: an absolute-form request target goes upstream in origin-form', async () => {
  const res = await rawExchange(sc.ports.outbound, 'GET http://ratings:9080/abs/path?q=1 HTTP/1.1\r\nHost: something-else\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(res), 200, res);
  assert.equal(up.seen.at(-1)!.url, '/abs/path?q=1');

  const bare = await rawExchange(sc.ports.outbound, 'GET http://ratings:9080?only=query HTTP/1.1\r\nHost: ratings\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(bare), 200, bare);
  assert.equal(up.seen.at(-1)!.url, '/?only=query');

  const origin = await rawExchange(sc.ports.outbound, 'GET /plain?x=2 HTTP/1.1\r\nHost: ratings\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(origin), 200, origin);
  assert.equal(up.seen.at(-1)!.url, '/plain?x=2');
  // These requests took the resilient path: the destination's traffic metrics saw them.
  assert.match(await registry.metrics(), /destination="ratings"/);
});
