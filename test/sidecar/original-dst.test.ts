// The non-privileged side of original-destination recovery; the redirected cases run in
// iptables-netns.test.ts, inside namespaces with real REDIRECT rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getOriginalDst, originalDstStatus } from '../../src/sidecar/original-dst.js';

const addonPath = fileURLToPath(new URL('../../../build/Release/etz_original_dst.node', import.meta.url));
const modulePath = fileURLToPath(new URL('../../src/sidecar/original-dst.js', import.meta.url));
const built = existsSync(addonPath);

async function acceptedPair(host: string): Promise<{ server: Socket; client: Socket; close: () => Promise<void> }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, host, r));
  const port = (srv.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const client = connect(port, host);
  await new Promise<void>((r, j) => client.once('connect', r).once('error', j));
  const server = await accepted;
  return {
    server,
    client,
    close: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

test('the addon is built at install and loads (Linux)', { skip: process.platform !== 'linux' && 'Linux only' }, () => {
  const s = originalDstStatus();
  assert.ok(built, 'build/Release/etz_original_dst.node exists (scripts/build-native.js ran)');
  assert.equal(s.available, true, s.reason);
  assert.equal(s.path, addonPath);
});

test('a connection that was not redirected has no original destination (IPv4 and IPv6)', async () => {
  for (const host of ['127.0.0.1', '::1']) {
    const pair = await acceptedPair(host).catch(() => null);
    if (!pair) continue; // no IPv6 loopback on this machine
    try {
      assert.equal(getOriginalDst(pair.server), null, host);
      assert.equal(getOriginalDst(pair.client), null, host);
    } finally {
      await pair.close();
    }
  }
});

test('a socket without a file descriptor gives null, not an exception', async () => {
  const pair = await acceptedPair('127.0.0.1');
  await pair.close();
  assert.equal(getOriginalDst(pair.server), null);
});

test('the native call validates its arguments and reports errno for a non-socket fd', { skip: !built && 'addon not built' }, () => {
  const binding = createRequire(import.meta.url)(addonPath) as { originalDst: (...a: unknown[]) => unknown };
  assert.throws(() => binding.originalDst(), TypeError);
  assert.throws(() => binding.originalDst(-1, false), TypeError);
  assert.throws(() => binding.originalDst(0, 'yes'), TypeError);
  // fd 0 of the test process is not a TCP socket: getsockopt fails and the errno comes back.
  const r = binding.originalDst(0, false);
  assert.equal(typeof r, 'number');
  assert.ok((r as number) > 0);
});

test('without the addon: status says why, and lookups return null so Host-header routing applies', async () => {
  const script = `
    const m = await import(${JSON.stringify(modulePath)});
    const net = await import('node:net');
    const srv = net.createServer((s) => { console.log(JSON.stringify({ status: m.originalDstStatus(), dst: m.getOriginalDst(s) })); s.destroy(); srv.close(); });
    srv.listen(0, '127.0.0.1', () => net.connect(srv.address().port, '127.0.0.1').on('error', () => {}));`;
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], {
      // An explicit addon path is the only one tried; this one is not an addon.
      env: { ...process.env, ETZ_ORIGINAL_DST_ADDON: modulePath },
    }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  const r = JSON.parse(out) as { status: { available: boolean; reason?: string }; dst: unknown };
  assert.equal(r.status.available, false);
  assert.match(r.status.reason ?? '', /native addon not available .*original-dst\.js.*routing by Host header/);
  assert.equal(r.dst, null);
});
