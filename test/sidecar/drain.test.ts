import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { startUpstream, startSidecar, delay } from './helpers.js';

// Sidecar.close(): idle keep-alive connections close at once, the request in flight finishes
// (its response tells the client to close), then close() resolves well before the deadline.

test('drain closes idle connections, lets the in-flight request finish, and returns early', async () => {
  const up = await startUpstream((req, res) => {
    const wait = req.url === '/slow' ? 400 : 0;
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`done ${req.url}`);
    }, wait);
  });
  const sc = await startSidecar(up.port);
  try {
    const idle = connect(sc.ports.inbound, '127.0.0.1');
    await once(idle, 'connect');
    let idleGot = '';
    idle.on('data', (c: Buffer) => (idleGot += c));
    idle.write('GET /first HTTP/1.1\r\nHost: a\r\n\r\n');
    for (let i = 0; i < 400 && !idleGot.includes('done /first'); i++) await delay(5);
    const idleClosed = once(idle, 'close');

    const busy = connect(sc.ports.inbound, '127.0.0.1');
    await once(busy, 'connect');
    let busyGot = '';
    busy.on('data', (c: Buffer) => (busyGot += c));
    const busyClosed = once(busy, 'close');
    busy.write('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n');
    for (let i = 0; i < 400 && up.seen.length < 2; i++) await delay(5);

    const t0 = performance.now();
    const closing = sc.close({ drainMs: 10_000 });
    await idleClosed; // the idle keep-alive connection goes first
    assert.equal(busyGot, '', 'the slow response is still on its way');
    await busyClosed;
    assert.match(busyGot, /^HTTP\/1\.1 200[\s\S]*connection: close[\s\S]*done \/slow/i);
    await closing;
    assert.ok(performance.now() - t0 < 5000, 'close() did not wait for the whole deadline');
    const refused = connect(sc.ports.inbound, '127.0.0.1');
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
  } finally {
    await sc.close();
    await up.close();
  }
});
