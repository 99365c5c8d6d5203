import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer, connect as netConnect, type Server as NetServer, type Socket } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { loadSidecarConfig } from '../../src/config/sidecar-schema.js';
import { startManagedSidecar } from '../../src/sidecar/control/bootstrap.js';
import { createRegistry, type Registry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import { STREAM_PATH, WS_SUBPROTOCOL } from '../../src/protocol/messages.js';

/** Pieces of the revocation tests: managed sidecars enrolled for real, a relay, metric reads. */

export type Managed = Awaited<ReturnType<typeof startManagedSidecar>> & { registry: Registry; dir: string };

/** A managed sidecar of `service`, enrolled with the manager at `m` through a real config file. */
export async function startPeer(m: { url: string; caFile: string; token: string }, service: string, appPort: number, registry: Record<string, unknown>): Promise<Managed> {
  const dir = await mkdtemp(join(tmpdir(), `etz-revoke-${service}-`));
  const file = join(dir, 'sidecar.json');
  await writeFile(file, JSON.stringify({
    service: { name: service, version: 'v1', instance: `${service}-0` },
    inbound: { host: '127.0.0.1', port: 0, appPort },
    outbound: { port: 0 },
    admin: { enabled: false },
    logging: { level: 'silent' },
    registry,
    manager: { url: m.url, caFile: m.caFile, bootstrapToken: m.token, dataDir: join(dir, 'data') },
  }));
  const config = await loadSidecarConfig(file);
  assert.ok(config.manager);
  const reg = createRegistry();
  const s = await startManagedSidecar({ ...config, manager: config.manager }, { logger: nullLogger, registry: reg });
  return Object.assign(s, { registry: reg, dir });
}

export async function stopPeer(p: Managed | undefined): Promise<void> {
  if (!p) return;
  await p.close();
  await rm(p.dir, { recursive: true, force: true });
}

/** A TCP relay on an ephemeral port whose target is set later (the registry is static config). */
export async function startRelay(): Promise<{ port: number; target: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const relay = { port: 0, target: 0, close: async () => {} };
  const server: NetServer = createNetServer((down) => {
    const up = netConnect(relay.target, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    down.pipe(up).pipe(down);
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  relay.port = (server.address() as { port: number }).port;
  relay.close = () => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    server.close(() => r());
  });
  return relay;
}

export async function failures(reg: Registry, direction: string, reason: string): Promise<number> {
  const m = reg.getSingleMetric('etz_tls_handshake_failures_total');
  if (!m) return 0;
  const { values } = await m.get();
  return values.filter((v) => v.labels.direction === direction && v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
}

export async function get(port: number, host: string): Promise<number> {
  try {
    const r = await request(`http://127.0.0.1:${port}/hello`, { headers: { host }, headersTimeout: 10_000, bodyTimeout: 10_000 });
    await r.body.dump();
    return r.statusCode;
  } catch {
    return 599;
  }
}

/** The control-stream upgrade with a client certificate: the status the manager answers. */
export function streamUpgrade(url: string, ca: string, cert: string, key: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(STREAM_PATH, url), {
      ca, cert, key, checkServerIdentity: () => undefined,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-protocol': WS_SUBPROTOCOL },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 101, body: '' });
    });
    req.on('error', reject);
    req.end();
  });
}

