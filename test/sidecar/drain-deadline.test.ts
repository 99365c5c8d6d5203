import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { startUpstream, startSidecar, delay } from './helpers.js';

// When the drain deadline passes, a request still waiting for its upstream cannot be served: its
// client is told so (503 ETZ_ERR_DRAINING, connection: close) rather than reset. A response that
// already started streaming is cut, since its status line is out.

test('drain deadline: a request still waiting upstream gets 503 ETZ_ERR_DRAINING; the upstream exchange stops', async () => {
  const aborted = new Set<string>();
  const up = await startUpstream(undefined, {
    stream: (req, res) => {
      req.resume();
      res.on('close', () => {
        if (!res.writableEnded) aborted.add(req.url!);
      });
      if (req.url === '/streaming') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial ');
      }
      // Never finishes on its own.
    },
  });
  const sc = await startSidecar(up.port);
  try {
    const waiting = connect(sc.ports.inbound, '127.0.0.1');
    await once(waiting, 'connect');
    let waitingGot = '';
    waiting.on('data', (c: Buffer) => (waitingGot += c));
    const waitingClosed = once(waiting, 'close');
    waiting.write('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');

    const streaming = connect(sc.ports.inbound, '127.0.0.1');
    await once(streaming, 'connect');
    let streamingGot = '';
    streaming.on('data', (c: Buffer) => (streamingGot += c));
    streaming.on('error', () => {});
    const streamingClosed = once(streaming, 'close');
    streaming.write('GET /streaming HTTP/1.1\r\nHost: a\r\n\r\n');

    for (let i = 0; i < 600 && (up.seen.length < 2 || !streamingGot.includes('partial')); i++) await delay(5);
    assert.equal(up.seen.length, 2, 'both requests reached the upstream');

    await sc.close({ drainMs: 200 });
    await waitingClosed;
    await streamingClosed;
    assert.match(waitingGot, /^HTTP\/1\.1 503 /);
    assert.match(waitingGot, /connection: close/i);
    assert.match(waitingGot, /ETZ_ERR_DRAINING/);
    assert.match(streamingGot, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(streamingGot, /ETZ_ERR_DRAINING/, 'a response already started is not answered twice');
    for (let i = 0; i < 400 && !aborted.has('/hang'); i++) await delay(5);
    assert.ok(aborted.has('/hang'), 'the upstream exchange of the unserved request was stopped');
  } finally {
    await sc.close();
    await up.close();
  }
});
