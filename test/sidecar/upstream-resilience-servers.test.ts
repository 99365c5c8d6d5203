import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import { startSidecar, delay } from './helpers.js';
import { call, registryOf, startBackend, type Backend } from './traffic-fixtures.js';

/**
 * The router's resilience against real faulty upstreams: servers that reset, hang, crash in the
 * middle of a response, or answer 5xx. Each test runs a sidecar whose outbound listener routes
 * `reviews` to a set of such servers.
 */

async function withMesh(
  behaviours: Backend['behaviour'][],
  routes: unknown,
  fn: (ctx: { sidecar: Sidecar; port: number; backends: Backend[]; registry: Registry }) => Promise<void>,
): Promise<void> {
  const backends = await Promise.all(behaviours.map((b, i) => startBackend(`b${i}`, b)));
  const registry = createRegistry();
  const sidecar = await startSidecar(
    1,
    { inbound: { enabled: false }, registry: registryOf('reviews', backends), resources: { routes }, timeouts: { firstByteMs: 5000 } },
    { logger: nullLogger, registry },
  );
  try {
    await fn({ sidecar, port: sidecar.ports.outbound, backends, registry });
  } finally {
    await sidecar.close({ drainMs: 100 });
    await Promise.all(backends.map((b) => b.close()));
  }
}

function metric(text: string, name: string, labels: string): number {
  const m = new RegExp(`^${name}\\{${labels}\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

test('GETs are retried past a resetting endpoint; a POST is never sent twice', async () => {
  await withMesh(
    ['reset', 'ok'],
    { rules: [{ name: 'r', hosts: ['reviews'], retries: { attempts: 2, retryOn: ['reset', 'connect-failure', '503'], backoff: { baseMs: 1, maxMs: 5 } } }], destinations: { reviews: { loadBalancer: 'round-robin' } } },
    async ({ port, backends, registry }) => {
      for (let i = 0; i < 10; i++) {
        const r = await call(port, 'reviews', { path: `/reviews/${i}` });
        assert.equal(r.status, 200, `GET ${i}`);
        assert.equal(r.headers['x-backend'], 'b1');
      }
      assert.ok(backends[0]!.hits.total >= 1, 'the resetting endpoint was tried');
      const before = backends[0]!.hits.byMethod.POST ?? 0;
      const posts: number[] = [];
      for (let i = 0; i < 6; i++) posts.push((await call(port, 'reviews', { method: 'POST', path: '/reviews', body: '{"stars":5}', headers: { 'content-type': 'application/json' } })).status);
      const resetPosts = (backends[0]!.hits.byMethod.POST ?? 0) - before;
      const okPosts = backends[1]!.hits.byMethod.POST ?? 0;
      // Every POST reached exactly one server once: none was duplicated by a retry.
      assert.equal(resetPosts + okPosts, 6);
      assert.equal(posts.filter((s) => s === 502).length, resetPosts, 'a POST that hit the reset endpoint fails instead of being resent');
      assert.ok(metric(await registry.metrics(), 'etz_upstream_retries_total', 'destination="reviews",reason="reset"') >= 1);
    },
  );
});

test('consecutive 5xx eject an endpoint; it comes back after the ejection time, then stays out longer', async () => {
  await withMesh(
    ['503', 'ok'],
    {
      rules: [{ name: 'r', hosts: ['reviews'] }],
      destinations: { reviews: { loadBalancer: 'round-robin', outlierDetection: { consecutive5xx: 3, baseEjectionTimeMs: 1000, maxEjectionPercent: 50 } } },
    },
    async ({ port, backends, registry }) => {
      const bad = backends[0]!;
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await call(port, 'reviews')).status);
      assert.equal(bad.hits.total, 3, 'ejected after 3 consecutive 503s');
      assert.equal(statuses.filter((s) => s === 503).length, 3);
      assert.equal(metric(await registry.metrics(), 'etz_upstream_ejected_endpoints', 'destination="reviews"'), 1);
      // Back after the ejection time (1 s); three more failures eject it again, now for 2 s.
      await delay(1100);
      for (let i = 0; i < 20 && bad.hits.total < 6; i++) await call(port, 'reviews');
      assert.equal(bad.hits.total, 6, 'returned, then ejected again after 3 more');
      await delay(1100);
      for (let i = 0; i < 6; i++) await call(port, 'reviews');
      assert.equal(bad.hits.total, 6, 'still out: the second ejection lasts twice as long');
      await delay(1100);
      bad.behaviour = 'ok';
      for (let i = 0; i < 6; i++) assert.equal((await call(port, 'reviews')).status, 200);
      assert.ok(bad.hits.total > 6, 'back in rotation once healthy');
      const text = await registry.metrics();
      assert.equal(metric(text, 'etz_upstream_ejections_total', 'destination="reviews"'), 2);
      assert.equal(metric(text, 'etz_upstream_ejection_returns_total', 'destination="reviews"'), 2);
    },
  );
});

test('the retry budget caps extra load when every endpoint fails', async () => {
  await withMesh(
    ['503', '503'],
    {
      rules: [{ name: 'r', hosts: ['reviews'], retries: { attempts: 3, retryOn: ['503'], backoff: { baseMs: 0, maxMs: 0 } } }],
      destinations: { reviews: { retryBudget: { percent: 20, minRetriesPerSec: 0 }, outlierDetection: { consecutive5xx: 0 } } },
    },
    async ({ port, backends, registry }) => {
      for (let i = 0; i < 50; i++) assert.equal((await call(port, 'reviews')).status, 503);
      const total = backends[0]!.hits.total + backends[1]!.hits.total;
      // Without a budget 3 retries each would make 200 tries; the budget allows 20% extra.
      assert.ok(total >= 50 && total <= 60, `50 requests made ${total} tries`);
      assert.ok(metric(await registry.metrics(), 'etz_upstream_retry_budget_exhausted_total', 'destination="reviews"') > 0);
    },
  );
});

test('a hanging endpoint: per-try timeout moves on, the route timeout answers 504', async () => {
  await withMesh(
    ['hang', 'ok'],
    {
      rules: [
        { name: 'retrying', hosts: ['reviews'], match: { path: { prefix: '/retry' } }, retries: { attempts: 1, perTryTimeoutMs: 150, retryOn: ['timeout'] } },
        { name: 'strict', hosts: ['reviews'], timeoutMs: 200 },
      ],
      destinations: { reviews: { loadBalancer: 'round-robin', outlierDetection: { consecutive5xx: 0 } } },
    },
    async ({ port, backends }) => {
      for (let i = 0; i < 4; i++) {
        const r = await call(port, 'reviews', { path: '/retry' });
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-backend'], 'b1');
      }
      assert.ok(backends[0]!.hits.total >= 1);
      let timeouts = 0;
      for (let i = 0; i < 4; i++) {
        const r = await call(port, 'reviews', { path: '/strict' });
        if (r.status === 504) {
          timeouts++;
          assert.equal(JSON.parse(r.body).error, 'ETZ_ERR_UPSTREAM_TIMEOUT');
        } else assert.equal(r.status, 200);
      }
      assert.equal(timeouts, 2, 'round robin sends every other request to the hanging endpoint');
    },
  );
});

test('circuit breaking: requests over the pending limit get 503 at once, never queue', async () => {
  await withMesh(
    ['hang'],
    { rules: [{ name: 'r', hosts: ['reviews'], timeoutMs: 3000 }], destinations: { reviews: { pool: { maxConnections: 1, maxPendingRequests: 1 } } } },
    async ({ port, backends, registry }) => {
      const started = Date.now();
      const all = Promise.all(
        Array.from({ length: 6 }, async (_v, i) => {
          await delay(i * 20);
          const r = await call(port, 'reviews');
          return { status: r.status, overflow: r.headers['x-etz-overflow'], at: Date.now() - started, body: r.body };
        }),
      );
      for (let i = 0; i < 50 && backends[0]!.hits.total === 0; i++) await delay(50);
      await delay(200);
      // While the first request hangs, the second waits for the one connection; no third.
      assert.equal(backends[0]!.hits.total, 1, 'one request in flight, one waited for the connection');
      const results = await all;
      const overflow = results.filter((r) => r.status === 503);
      assert.equal(overflow.length, 4, JSON.stringify(results));
      for (const r of overflow) {
        assert.equal(r.overflow, 'pending');
        assert.equal(JSON.parse(r.body).error, 'ETZ_ERR_UPSTREAM_OVERFLOW');
        assert.ok(r.at < 2500, 'answered at once, not after the route timeout');
      }
      assert.equal(results.filter((r) => r.status === 504).length, 2);
      assert.equal(metric(await registry.metrics(), 'etz_upstream_overflow_total', 'destination="reviews",limit="pending"'), 4);
    },
  );
});

test('maxRequestsPerConnection recycles upstream connections; without it one keep-alive connection serves all', async () => {
  await withMesh(['ok', 'ok'], { destinations: { reviews: { loadBalancer: 'round-robin', pool: { maxRequestsPerConnection: 2 } } } }, async ({ port, backends }) => {
    for (let i = 0; i < 12; i++) assert.equal((await call(port, 'reviews')).status, 200);
    for (const b of backends) {
      assert.equal(b.hits.total, 6);
      assert.equal(b.hits.connections, 3, `${b.name}: ${b.hits.connections} connections for 6 requests`);
    }
  });
  await withMesh(['ok'], { destinations: { reviews: { pool: { maxRequestsPerConnection: 1 } } } }, async ({ port, backends }) => {
    for (let i = 0; i < 4; i++) assert.equal((await call(port, 'reviews')).status, 200);
    assert.equal(backends[0]!.hits.connections, 4);
  });
  await withMesh(['ok'], { destinations: { reviews: { loadBalancer: 'round-robin' } } }, async ({ port, backends }) => {
    for (let i = 0; i < 6; i++) assert.equal((await call(port, 'reviews')).status, 200);
    assert.equal(backends[0]!.hits.connections, 1);
  });
});

test('a crash in the middle of a response is not retried and the client sees the cut', async () => {
  await withMesh(
    ['crash-mid-body'],
    { rules: [{ name: 'r', hosts: ['reviews'], retries: { attempts: 3, retryOn: ['reset', '5xx'] } }] },
    async ({ port, backends }) => {
      const r = await call(port, 'reviews');
      assert.equal(r.status, 200);
      assert.equal(r.truncated || r.body.length < 1000, true);
      assert.equal(backends[0]!.hits.total, 1, 'a response already streaming is never retried');
    },
  );
});

test('intermittent 5xx are absorbed by retries for GET', async () => {
  await withMesh(
    ['flaky', 'flaky'],
    { rules: [{ name: 'r', hosts: ['reviews'], retries: { attempts: 2, retryOn: ['5xx'], backoff: { baseMs: 1, maxMs: 2 } } }], destinations: { reviews: { outlierDetection: { consecutive5xx: 0 } } } },
    async ({ port }) => {
      for (let i = 0; i < 20; i++) assert.equal((await call(port, 'reviews')).status, 200, `request ${i}`);
    },
  );
});
