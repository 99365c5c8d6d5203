import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { once } from 'node:events';
import { request, Agent } from 'undici';
import { WebSocketServer, WebSocket } from 'ws';
import { startUpstream, startSidecar, rawExchange, statusOf, delay, type Upstream } from './helpers.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import type { RequestRecord } from '../../src/sidecar/telemetry.js';

// Faithful HTTP/1.1 through the inbound and outbound listeners, against a real upstream.

let up: Upstream;
let sc: Sidecar;
const records: RequestRecord[] = [];

before(async () => {
  up = await startUpstream((req, res, body) => {
    const url = req.url ?? '/';
    if (url === '/echo') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-len': String(body.length) });
      res.end(body);
    } else if (url === '/hop') {
      res.writeHead(200, {
        connection: 'keep-alive, x-up-hop',
        'x-up-hop': 'secret',
        'keep-alive': 'timeout=5',
        'proxy-authenticate': 'Basic',
        'set-cookie': ['a=1', 'b=2'],
        'x-end-to-end': 'kept',
      });
      res.end('ok');
    } else if (url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('part1;');
      res.write('part2');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
    } else if (url.startsWith('/status/')) {
      const code = Number(url.slice(8));
      res.writeHead(code, code === 304 ? { etag: '"v1"' } : {});
      res.end();
    } else if (url === '/len') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11' });
      res.end(req.method === 'HEAD' ? undefined : 'hello world');
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url, bytes: body.length }));
    }
  });
  sc = await startSidecar(
    up.port,
    {
      registry: {
        ratings: { endpoints: [{ address: '127.0.0.1', port: up.port, version: 'v2', instance: 'ratings-v2-0' }], port: 9080 },
      },
    },
    { telemetry: { record: (r) => records.push(r) } },
  );
});

after(async () => {
  await sc.close({ drainMs: 100 });
  await up.close();
});

function last() {
  return up.seen[up.seen.length - 1]!;
}

test('inbound: forwards method, path and query, generates x-request-id and sets x-forwarded-*', async () => {
  const r = await request(`http://127.0.0.1:${sc.ports.inbound}/a/b?x=1&y=2`, { method: 'DELETE', headers: { 'x-custom': 'v' } });
  await r.body.text();
  assert.equal(r.statusCode, 200);
  const seen = last();
  assert.equal(seen.method, 'DELETE');
  assert.equal(seen.url, '/a/b?x=1&y=2');
  assert.equal(seen.headers['x-custom'], 'v');
  assert.match(String(seen.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
});

test('propagates a client x-request-id and appends to x-forwarded-for', async () => {
  const r = await request(`http://127.0.0.1:${sc.ports.inbound}/`, { headers: { 'x-request-id': 'abc-123', 'x-forwarded-for': '203.0.113.7' } });
  await r.body.text();
  assert.equal(last().headers['x-request-id'], 'abc-123');
  assert.equal(last().headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  const r2 = await request(`http://127.0.0.1:${sc.ports.inbound}/`, { headers: { 'x-request-id': 'x'.repeat(300) } });
  await r2.body.text();
  assert.notEqual(last().headers['x-request-id'], 'x'.repeat(300), 'an oversized id is replaced');
});

test('removes request hop-by-hop headers, including those named by Connection', async () => {
  const res = await rawExchange(
    sc.ports.inbound,
    'GET /plain HTTP/1.1\r\nHost: reviews\r\nConnection: close, x-hop-a\r\nX-Hop-A: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n' +
      'Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n',
  );
  assert.equal(statusOf(res), 200);
  const h = last().headers;
  for (const name of ['x-hop-a', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection']) assert.equal(h[name], undefined, `${name} was forwarded`);
  assert.equal(h['x-kept'], 'yes');
  assert.equal(h.host, 'reviews');
});

test('removes response hop-by-hop headers and keeps repeated end-to-end ones', async () => {
  const res = await rawExchange(sc.ports.inbound, 'GET /hop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(res), 200);
  const head = res.split('\r\n\r\n')[0]!.toLowerCase();
  assert.doesNotMatch(head, /x-up-hop/);
  assert.doesNotMatch(head, /proxy-authenticate/);
  assert.doesNotMatch(head, /keep-alive: timeout=5/);
  assert.match(head, /set-cookie: a=1\r\nset-cookie: b=2/);
  assert.match(head, /x-end-to-end: kept/);
});

test('streams a large request body both ways unchanged', async () => {
  const payload = randomBytes(8 * 1024 * 1024);
  const r = await request(`http://127.0.0.1:${sc.ports.inbound}/echo`, { method: 'POST', body: payload });
  const got = Buffer.from(await r.body.arrayBuffer());
  assert.equal(r.statusCode, 200);
  assert.equal(got.length, payload.length);
  assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(payload).digest('hex'));
});

test('streams a chunked request body (no Content-Length) as it arrives', async () => {
  const sock = connect(sc.ports.inbound, '127.0.0.1');
  await once(sock, 'connect');
  let got = '';
  sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
  const closed = once(sock, 'close');
  const before = up.seen.length;
  sock.write('PUT /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nalpha-\r\n');
  // The head must reach the upstream while the body is still open: nothing waits for the end.
  for (let i = 0; i < 200 && up.seen.length === before; i++) await delay(5);
  assert.equal(up.seen.length, before + 1, 'upstream got the request before its body ended');
  sock.write('5\r\nbeta-\r\n5\r\ngamma\r\n0\r\n\r\n');
  await closed;
  assert.equal(statusOf(got), 200);
  assert.match(got, /alpha-[\s\S]*beta-[\s\S]*gamma/);
  assert.equal(last().body.toString(), 'alpha-beta-gamma');
  assert.equal(last().headers['transfer-encoding'], 'chunked');
});

test('passes response trailers through', async () => {
  const res = await rawExchange(sc.ports.inbound, 'GET /trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(res), 200);
  assert.match(res, /transfer-encoding: chunked/i);
  assert.match(res, /part1;/);
  assert.match(res, /\r\n0\r\nx-checksum: abc123\r\n\r\n$/);
});

test('HEAD keeps Content-Length and sends no body; 204 and 304 have no body', async () => {
  const head = await rawExchange(sc.ports.inbound, 'HEAD /len HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(head), 200);
  assert.match(head, /content-length: 11\r\n/i);
  assert.ok(head.endsWith('\r\n\r\n'), 'no body after a HEAD response');
  for (const code of [204, 304]) {
    const res = await rawExchange(sc.ports.inbound, `GET /status/${code} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    assert.equal(statusOf(res), code);
    assert.ok(res.endsWith('\r\n\r\n'), `no body after ${code}`);
    assert.doesNotMatch(res, /transfer-encoding/i);
  }
});

test('Expect: 100-continue gets the interim response, then the body is forwarded', async () => {
  const sock = connect(sc.ports.inbound, '127.0.0.1');
  await once(sock, 'connect');
  let got = '';
  sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
  sock.write('POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n');
  for (let i = 0; i < 200 && !got.includes('100 Continue'); i++) await delay(5);
  assert.match(got, /^HTTP\/1\.1 100 Continue/);
  sock.write('hello');
  await once(sock, 'close');
  assert.match(got, /HTTP\/1\.1 200 OK[\s\S]*hello/);
});

test('outbound: resolves the destination from the Host header in every usual form', async () => {
  for (const host of ['ratings', 'ratings:9080', 'ratings.default', 'ratings.default.svc.cluster.local', 'RATINGS.default.svc.cluster.local.:9080']) {
    const res = await rawExchange(sc.ports.outbound, `GET /via HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    assert.equal(statusOf(res), 200, host);
    assert.equal(last().url, '/via');
  }
  const miss = await rawExchange(sc.ports.outbound, 'GET / HTTP/1.1\r\nHost: unknown-svc\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(miss), 404);
  assert.match(miss, /"error":"ETZ_ERR_NO_ROUTE"/);
});

test('outbound: an absolute-form request target routes by its authority and goes upstream in origin-form', async () => {
  const res = await rawExchange(sc.ports.outbound, 'GET http://ratings:9080/abs/path?q=1 HTTP/1.1\r\nHost: something-else\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(res), 200);
  assert.equal(last().url, '/abs/path?q=1');
  const star = await rawExchange(sc.ports.inbound, 'OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  assert.equal(statusOf(star), 400);
  assert.match(star, /ETZ_ERR_BAD_REQUEST/);
});

test('reuses upstream keep-alive connections', async () => {
  const conns = new Set<number>();
  const onConn = (s: { remotePort?: number }): void => void conns.add(s.remotePort ?? 0);
  up.server.on('connection', onConn);
  const agent = new Agent({ connections: 1 });
  try {
    for (let i = 0; i < 20; i++) {
      const r = await request(`http://127.0.0.1:${sc.ports.inbound}/k${i}`, { dispatcher: agent });
      await r.body.text();
    }
  } finally {
    up.server.off('connection', onConn);
    await agent.close();
  }
  assert.ok(conns.size <= 1, `20 sequential requests opened ${conns.size} new upstream connections`);
});

test('Upgrade: websocket passes through end to end', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.headers['x-request-id'] ? 'with-id' : 'no-id'}`);
    ws.on('message', (m) => ws.send(`echo:${m.toString()}`));
  });
  const wsc = await startSidecar((wss.address() as { port: number }).port);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${wsc.ports.inbound}/chat`);
    const messages: string[] = [];
    ws.on('message', (m) => messages.push(m.toString()));
    await once(ws, 'open');
    ws.send('ping');
    for (let i = 0; i < 200 && messages.length < 2; i++) await delay(5);
    assert.deepEqual(messages, ['hello with-id', 'echo:ping']);
    ws.close();
    await once(ws, 'close');
  } finally {
    await wsc.close({ drainMs: 50 });
    wss.close();
  }
});

test('reports one telemetry record per request in the telemetry-record shape', async () => {
  records.length = 0;
  const r = await request(`http://127.0.0.1:${sc.ports.outbound}/reviews/1?q=2`, { method: 'POST', body: 'abc', headers: { host: 'ratings' } });
  await r.body.text();
  for (let i = 0; i < 100 && records.length === 0; i++) await delay(5);
  assert.equal(records.length, 1);
  const rec = records[0]!;
  assert.match(rec.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(rec.source, { service: 'reviews', version: 'v1', instance: 'reviews-0' });
  assert.deepEqual(rec.destination, { service: 'ratings', version: 'v2', instance: 'ratings-v2-0' });
  assert.equal(rec.method, 'POST');
  assert.equal(rec.path, '/reviews/1');
  assert.equal(rec.status, 200);
  assert.equal(rec.bytesIn, 3);
  assert.ok(rec.bytesOut! > 0);
  assert.equal(rec.decision, 'allow');
  assert.equal(rec.mtls, false);
  assert.equal(typeof rec.durationMs, 'number');
  assert.equal(rec.requestId, last().headers['x-request-id']);
});

test('Upgrade refused by the upstream: its answer reaches the client and the connection closes', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', verifyClient: () => false });
  await once(wss, 'listening');
  const wsc = await startSidecar((wss.address() as { port: number }).port);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${wsc.ports.inbound}/chat`);
    ws.on('error', () => {});
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
    assert.equal(res.statusCode, 401);
  } finally {
    await wsc.close({ drainMs: 50 });
    wss.close();
  }
});
