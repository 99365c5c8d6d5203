import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { request } from 'undici';
import { ConfigError } from '../../src/core/errors.js';
import { createRegistry } from '../../src/core/metrics.js';
import type { FilterFactory, RequestContext } from '../../src/sidecar/filter.js';
import { localReply } from '../../src/sidecar/local-reply.js';
import { requestIdFilter } from '../../src/sidecar/filters/request-id.js';
import { metricsFilter } from '../../src/sidecar/filters/metrics.js';
import { routerFilter } from '../../src/sidecar/filters/router.js';
import { FILTERS } from '../../src/sidecar/filters/index.js';
import { startUpstream, startSidecar, delay, type Upstream } from './helpers.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import type { RequestRecord } from '../../src/sidecar/telemetry.js';

// The chain machinery: per-version compilation, local replies from filters, async filters,
// atomic swaps that leave in-flight requests on their chain, validation, connection admission.

let compiles = 0;

const tagFilter: FilterFactory<{ value: string } | undefined> = {
  name: 'tag',
  resource: 'tags',
  schema: { type: 'object', additionalProperties: false, required: ['value'], properties: { value: { type: 'string', minLength: 1 } } },
  compile(config) {
    compiles++;
    if (config === undefined) return null;
    const header = ['x-tag', config.value];
    return {
      name: 'tag',
      onRequest(ctx: RequestContext) {
        (ctx.upstreamHeaders ??= []).push(...header);
        return undefined;
      },
    };
  },
};

const denyFilter: FilterFactory<string[] | undefined> = {
  name: 'deny',
  resource: 'denyPaths',
  schema: { type: 'array', items: { type: 'string', pattern: '^/' } },
  compile(paths) {
    if (!paths || paths.length === 0) return null;
    const set = new Set(paths);
    return {
      name: 'deny',
      onRequest: (ctx) => (set.has(ctx.path) || set.has('/*') ? localReply('ETZ_ERR_POLICY_DENIED', `path ${ctx.path} is denied`) : undefined),
    };
  },
};

// Resolves when a request has entered the slow filter, so the test swaps versions exactly while
// that request is suspended inside its chain (no timing guess).
let enteredSlow: () => void = () => {};
const slowFilter: FilterFactory<{ ms: number } | undefined> = {
  name: 'slow',
  resource: 'slow',
  schema: { type: 'object', properties: { ms: { type: 'integer', minimum: 1, default: 150 } } },
  compile(config) {
    if (!config) return null;
    return {
      name: 'slow',
      onRequest: (ctx) => {
        if (ctx.path !== '/slow') return undefined;
        enteredSlow();
        return delay(config.ms).then(() => undefined);
      },
    };
  },
};

const boomFilter: FilterFactory<boolean | undefined> = {
  name: 'boom',
  resource: 'boom',
  schema: { type: 'boolean' },
  compile: (on) =>
    on
      ? {
          name: 'boom',
          onRequest: (ctx) => {
            if (ctx.path === '/boom') throw new Error('filter bug');
            return undefined;
          },
        }
      : null,
};

const cutFilter: FilterFactory<{ closeAll: boolean } | undefined> = {
  name: 'cut',
  resource: 'cut',
  schema: { type: 'object', properties: { closeAll: { type: 'boolean' } } },
  compile: (c) =>
    c
      ? Object.assign({ name: 'cut', onRequest: () => undefined }, { admitsConnection: () => !c.closeAll })
      : null,
};

let up: Upstream;
let sc: Sidecar;
const registry = createRegistry();
const records: RequestRecord[] = [];

before(async () => {
  up = await startUpstream();
  sc = await startSidecar(up.port, {}, {
    registry,
    telemetry: { record: (r) => records.push(r) },
    filters: [requestIdFilter, metricsFilter, tagFilter, slowFilter, boomFilter, cutFilter, denyFilter, routerFilter],
  });
});

after(async () => {
  await sc.close({ drainMs: 100 });
  await up.close();
});

async function get(path: string) {
  const r = await request(`http://127.0.0.1:${sc.ports.inbound}${path}`);
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text };
}

function chainNames(): string[] {
  return ((sc.configDump().chains as Record<string, string[]>).inbound) ?? [];
}

test('the default registry runs request-id, metrics and router, in that order, with access-log off', () => {
  assert.deepEqual(
    FILTERS.map((f) => f.name).filter((n) => ['request-id', 'access-log', 'metrics', 'router'].includes(n)),
    ['request-id', 'access-log', 'metrics', 'router'],
  );
  assert.equal(FILTERS[FILTERS.length - 1]!.name, 'router', 'the router is the terminal filter');
});

test('a filter whose resource is absent is not in the chain; it joins when the resource arrives', async () => {
  assert.deepEqual(chainNames(), ['request-id', 'metrics', 'router']);
  const before = compiles;
  await sc.applyResources({ tags: { value: 'blue' } }, 2);
  assert.equal(sc.configVersion, 2);
  assert.ok(compiles > before, 'compiled once per listener for the new version');
  assert.deepEqual(chainNames(), ['request-id', 'metrics', 'tag', 'router']);
  const n = compiles;
  for (let i = 0; i < 5; i++) await get('/t');
  assert.equal(compiles, n, 'never compiled per request');
  assert.equal(up.seen[up.seen.length - 1]!.headers['x-tag'], 'blue');
});

test('a filter ends a request with a local reply: status, JSON body, x-etz-reason, metric, telemetry decision', async () => {
  await sc.applyResources({ denyPaths: ['/secret'] }, 3);
  records.length = 0;
  const before = up.seen.length;
  const r = await get('/secret');
  assert.equal(r.status, 403);
  assert.deepEqual(JSON.parse(r.text), { error: 'ETZ_ERR_POLICY_DENIED', reason: 'path /secret is denied' });
  assert.equal(r.headers['x-etz-reason'], 'path /secret is denied');
  assert.equal(up.seen.length, before, 'denied request never reached the upstream');
  assert.equal((await get('/open')).status, 200);
  const metrics = await registry.metrics();
  assert.match(metrics, /etz_local_replies_total\{reason="ETZ_ERR_POLICY_DENIED"\} 1/);
  assert.match(metrics, /etz_requests_total\{reporter="destination",source_workload="unknown",source_version="unknown",destination_workload="reviews",destination_version="v1",response_code="403"\} 1/);
  for (let i = 0; i < 100 && records.length < 2; i++) await delay(5);
  assert.equal(records.find((x) => x.path === '/secret')?.decision, 'deny');
  assert.equal(records.find((x) => x.path === '/open')?.decision, 'allow');
});

test('an invalid resource push is refused with the field path and changes nothing', async () => {
  await sc.applyResources({ denyPaths: ['/secret'] }, 4);
  await assert.rejects(sc.applyResources({ denyPaths: ['no-slash'] }, 5), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.field, '/resources/denyPaths/0');
    assert.match(err.reason, /pattern/);
    return true;
  });
  await assert.rejects(sc.applyResources({ nonsense: 1 }, 5), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.field, '/resources/nonsense');
    assert.match(err.reason, /not a known resource/);
    return true;
  });
  assert.equal(sc.configVersion, 4);
  assert.equal((await get('/secret')).status, 403, 'the previous version is still in force');
});

test('a request in flight finishes on the chain it started with; new requests use the new one', async () => {
  await sc.applyResources({ slow: { ms: 200 } }, 6);
  const entered = new Promise<void>((resolve) => (enteredSlow = resolve));
  const inflight = get('/slow');
  await entered;
  await sc.applyResources({ slow: { ms: 200 }, denyPaths: ['/slow'] }, 7);
  const late = await get('/slow');
  assert.equal(late.status, 403, 'the new chain denies');
  assert.equal((await inflight).status, 200, 'the request that started on version 6 was not denied');
});

test('a throwing filter gives 500 ETZ_ERR_INTERNAL and the sidecar keeps serving', async () => {
  await sc.applyResources({ boom: true }, 8);
  const r = await get('/boom');
  assert.equal(r.status, 500);
  assert.equal(JSON.parse(r.text).error, 'ETZ_ERR_INTERNAL');
  assert.equal((await get('/fine')).status, 200);
});

test('a new version closes live connections that an admission filter refuses', async () => {
  await sc.applyResources({}, 9);
  const sock = connect(sc.ports.inbound, '127.0.0.1');
  await once(sock, 'connect');
  let got = '';
  sock.on('data', (c: Buffer) => (got += c.toString()));
  sock.write('GET /keep HTTP/1.1\r\nHost: a\r\n\r\n');
  for (let i = 0; i < 200 && !got.includes('\r\n\r\n'); i++) await delay(5);
  assert.match(got, /^HTTP\/1\.1 200/);
  const closed = once(sock, 'close');
  await sc.applyResources({ cut: { closeAll: false } }, 10);
  await delay(50);
  assert.equal(sock.destroyed, false, 'an admitted connection stays open');
  await sc.applyResources({ cut: { closeAll: true } }, 11);
  await Promise.race([closed, delay(2000).then(() => assert.fail('connection was not closed'))]);
  await sc.applyResources({}, 12);
});
