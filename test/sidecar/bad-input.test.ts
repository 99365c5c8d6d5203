import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { request } from 'undici';
import { startUpstream, startSidecar, rawExchange, statusOf, delay, type Upstream } from './helpers.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';

// Malformed and hostile input at the inbound listener: every case gets a response with the
// right status and a stable error code, and the upstream application sees nothing.

let up: Upstream;
let sc: Sidecar;

before(async () => {
  up = await startUpstream();
  sc = await startSidecar(up.port, { limits: { maxHeaderBytes: 4096, maxHeaders: 20, maxBodyBytes: 1000 } });
  // Warm the upstream pool: with an idle keep-alive connection ready, a forwarded head would
  // reach the upstream at once, so "saw nothing" below really tests the sidecar.
  const r = await request(`http://127.0.0.1:${sc.ports.inbound}/warm`);
  await r.body.text();
  up.seen.length = 0;
});

after(async () => {
  await sc.close({ drainMs: 100 });
  await up.close();
});

const smuggling: [string, string][] = [
  ['Content-Length together with Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG'],
  ['two different Content-Length values', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde'],
  ['invalid chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'],
  ['obs-fold header continuation', 'GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n'],
  ['bare LF line ending in the head', 'GET / HTTP/1.1\nHost: a\nX-A: b\n\n'],
  ['invalid header name character', 'GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n'],
  ['invalid header value character', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n'],
  ['Transfer-Encoding other than chunked last', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
  ['space before the header colon', 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n'],
];

for (const [name, raw] of smuggling) {
  test(`refuses ${name} with 400 and forwards nothing`, async () => {
    const before = up.seen.length;
    const res = await rawExchange(sc.ports.inbound, raw);
    assert.equal(statusOf(res), 400, `response was: ${JSON.stringify(res.slice(0, 200))}`);
    assert.match(res, /"error":"ETZ_ERR_BAD_REQUEST"/);
    assert.match(res, /x-etz-reason: /i);
    await delay(50);
    assert.equal(up.seen.length, before, 'upstream saw the request');
  });
}

test('oversized request headers get 431 and are not forwarded', async () => {
  const before = up.seen.length;
  const res = await rawExchange(sc.ports.inbound, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`);
  assert.equal(statusOf(res), 431);
  assert.match(res, /ETZ_ERR_HEADERS_TOO_LARGE/);
  assert.equal(up.seen.length, before);
});

test('too many request headers get 431 and are not forwarded', async () => {
  const before = up.seen.length;
  let head = 'GET / HTTP/1.1\r\nHost: a\r\n';
  for (let i = 0; i < 30; i++) head += `X-H${i}: v\r\n`;
  const res = await rawExchange(sc.ports.inbound, `${head}\r\n`);
  assert.equal(statusOf(res), 431);
  assert.match(res, /too many request headers/);
  await delay(30);
  assert.equal(up.seen.length, before);
});

test('a Content-Length over the body limit gets 413 before anything is forwarded', async () => {
  const before = up.seen.length;
  const res = await rawExchange(sc.ports.inbound, `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n${'x'.repeat(100)}`);
  assert.equal(statusOf(res), 413);
  assert.match(res, /ETZ_ERR_BODY_TOO_LARGE/);
  await delay(30);
  assert.equal(up.seen.length, before);
});

test('a chunked body that grows past the limit gets 413 and the upstream request is aborted', async () => {
  const before = up.seen.length;
  const sock = connect(sc.ports.inbound, '127.0.0.1');
  await once(sock, 'connect');
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  sock.on('error', () => {});
  const closed = once(sock, 'close');
  sock.write('POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n');
  for (let i = 0; i < 5 && !sock.destroyed; i++) {
    sock.write(`190\r\n${'y'.repeat(400)}\r\n`);
    await delay(5);
  }
  await Promise.race([closed, delay(3000)]);
  sock.destroy();
  const res = Buffer.concat(chunks).toString('latin1');
  assert.equal(statusOf(res), 413, res.slice(0, 200));
  // Whatever reached the upstream never completed: its body never got past the limit.
  const forwarded = up.seen.slice(before);
  for (const s of forwarded) assert.ok(s.body.length <= 1000);
  assert.ok(!forwarded.some((s) => s.body.length > 0 && s.body.length === 2000));
});

test('upstream refusing connections gives 503 with a stable code', async () => {
  const probe = createNetServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const deadPort = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const dead = await startSidecar(deadPort);
  try {
    const r = await request(`http://127.0.0.1:${dead.ports.inbound}/x`);
    const body = (await r.body.json()) as { error: string };
    assert.equal(r.statusCode, 503);
    assert.equal(body.error, 'ETZ_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal(r.headers['x-etz-reason'], 'upstream connection refused');
  } finally {
    await dead.close({ drainMs: 50 });
  }
});

test('an upstream that does not answer in time gives 504', async () => {
  const sockets: Socket[] = [];
  const silent = createNetServer((s) => sockets.push(s)); // accepts, reads, never answers
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const slow = await startSidecar((silent.address() as { port: number }).port, { timeouts: { firstByteMs: 200 } });
  try {
    const r = await request(`http://127.0.0.1:${slow.ports.inbound}/slow`);
    const body = (await r.body.json()) as { error: string };
    assert.equal(r.statusCode, 504);
    assert.equal(body.error, 'ETZ_ERR_UPSTREAM_TIMEOUT');
  } finally {
    await slow.close({ drainMs: 50 });
    for (const s of sockets) s.destroy();
    silent.close();
  }
});

test('the whole-request timeout gives 504 even while the upstream trickles', async () => {
  const trickle = await startUpstream(undefined, {
    stream: (_req, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write('.'), 20);
      res.on('close', () => clearInterval(t));
    },
  });
  const sc2 = await startSidecar(trickle.port, { timeouts: { requestMs: 300 } });
  try {
    const r = await request(`http://127.0.0.1:${sc2.ports.inbound}/`);
    assert.equal(r.statusCode, 200);
    // Headers were already sent: the only honest signal left is a truncated body.
    await assert.rejects(r.body.text());
  } finally {
    await sc2.close({ drainMs: 50 });
    await trickle.close();
  }
});

test('a client disconnecting mid-upload aborts the upstream request and leaks no socket', async () => {
  let upstreamAborted = false;
  let received = 0;
  const sink = await startUpstream(undefined, {
    stream: (req) => {
      req.on('data', (c: Buffer) => (received += c.length));
      req.on('aborted', () => (upstreamAborted = true));
      req.on('error', () => (upstreamAborted = true));
    },
  });
  // A short keep-alive so that idle pooled connections go away quickly too: at the end no
  // connection to the upstream may remain.
  const sc2 = await startSidecar(sink.port, { upstream: { keepAliveMs: 200 } });
  try {
    const sock = connect(sc2.ports.inbound, '127.0.0.1');
    await once(sock, 'connect');
    sock.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n');
    sock.write(Buffer.alloc(64 * 1024, 1));
    for (let i = 0; i < 100 && received < 64 * 1024; i++) await delay(10);
    assert.equal(received, 64 * 1024, 'the upload started streaming upstream');
    sock.destroy();
    for (let i = 0; i < 200 && !upstreamAborted; i++) await delay(10);
    assert.ok(upstreamAborted, 'upstream request was aborted');
    // The sidecar holds no downstream or upstream connection for the dead request.
    for (let i = 0; i < 300; i++) {
      const n = await new Promise<number>((r) => sink.server.getConnections((_e, c) => r(c)));
      if (n === 0) break;
      await delay(10);
    }
    assert.equal(await new Promise<number>((r) => sink.server.getConnections((_e, c) => r(c))), 0);
  } finally {
    await sc2.close({ drainMs: 50 });
    await sink.close();
  }
});

test('CONNECT is answered 400, not tunnelled', async () => {
  const before = up.seen.length;
  const res = await rawExchange(sc.ports.inbound, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
  assert.equal(statusOf(res), 400);
  assert.match(res, /CONNECT is not supported/);
  assert.equal(up.seen.length, before);
});

test('an upstream that stalls mid-body past the idle timeout ends the response early', async () => {
  const staller = await startUpstream(undefined, {
    stream: (_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part');
    },
  });
  const sc2 = await startSidecar(staller.port, { timeouts: { idleMs: 300 } });
  try {
    const r = await request(`http://127.0.0.1:${sc2.ports.inbound}/`);
    assert.equal(r.statusCode, 200);
    await assert.rejects(r.body.text(), 'a truncated body, not a hang');
  } finally {
    await sc2.close({ drainMs: 50 });
    await staller.close();
  }
});

test('a client that never finishes its request head gets 408', async () => {
  const sc2 = await startSidecar(up.port, { timeouts: { headersMs: 300 } });
  try {
    const before = up.seen.length;
    const res = await rawExchange(sc2.ports.inbound, 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ', 5000);
    assert.equal(statusOf(res), 408, res);
    assert.match(res, /ETZ_ERR_REQUEST_TIMEOUT/);
    assert.equal(up.seen.length, before);
  } finally {
    await sc2.close({ drainMs: 50 });
  }
});
