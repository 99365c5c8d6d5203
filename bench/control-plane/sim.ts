import { mkdir, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { ControlClient } from '../../src/sidecar/control/client.js';
import {
  PROTOCOL_VERSION, STREAM_PATH, WS_SUBPROTOCOL, encode, parseManagerMessage, type ManagerMessage, type NodeInfo,
} from '../../src/protocol/messages.js';
import { checkManagerIdentity } from '../../src/protocol/server-identity.js';

/**
 * Simulated sidecars for the control-plane benchmark, in their own process. Every one enrolls for
 * real (token, CSR, its own certificate) and keeps its own WSS stream authenticated with that
 * certificate; what differs is the work per push:
 *  - `client`: the real ControlClient in front of a no-op config target (snapshot files only with
 *    ETZ_BENCH_PERSIST=1);
 *  - `light`: a bare stream that validates each push and answers hello/ACK/heartbeat as a sidecar
 *    does. Hundreds of sidecars share this process, and a mesh-wide change sends all of them the
 *    same bytes, so a frame byte-equal to the last one validated reuses that validation instead
 *    of parsing 4 KB again per sidecar: the manager sees exactly the same traffic, and the cores
 *    it shares with the simulator are not spent on a thousand copies of the same JSON.parse.
 * argv: url caPem(base64) token count offset dir mode
 * stdout: "ready" once every one has a version in force.
 */
const [url, caB64, token, countS, offsetS, dir, mode = 'client'] = process.argv.slice(2);
const caPem = Buffer.from(caB64!, 'base64').toString();
const count = Number(countS);
const offset = Number(offsetS);
const closers: Array<() => Promise<void>> = [];
await mkdir(dir!, { recursive: true });

let lastFrame: Buffer | undefined;
let lastMsg: ManagerMessage | undefined;
function parseShared(data: Buffer): ManagerMessage {
  if (lastFrame && lastMsg && data.equals(lastFrame)) return lastMsg;
  const msg = parseManagerMessage(data);
  lastFrame = Buffer.from(data);
  lastMsg = msg;
  return msg;
}

const light = new Set<WebSocket>();
// Heartbeats for all light streams from one timer, so the manager does not drop them as idle.
const hb = setInterval(() => {
  const frame = encode({ type: 'heartbeat', ts: Date.now() });
  for (const ws of light) if (ws.readyState === WebSocket.OPEN) ws.send(frame);
}, 10_000);
hb.unref();

/** A bare stream: resolves once its first version is ACKed. */
async function startLight(node: NodeInfo, dataDir: string): Promise<void> {
  const cc = ControlClient.create({ url: url!, caPem, dataDir, bootstrapToken: token!, node, persistSnapshot: false });
  const creds = await cc.ensureCredentials();
  await cc.close();
  const u = new URL(STREAM_PATH, url);
  u.protocol = 'wss:';
  const ws = new WebSocket(u, WS_SUBPROTOCOL, {
    ca: [caPem, creds.trustBundlePem], cert: creds.certPem, key: creds.keyPem,
    checkServerIdentity: checkManagerIdentity() as never, perMessageDeflate: false,
  });
  light.add(ws);
  closers.push(() => new Promise<void>((r) => {
    light.delete(ws);
    if (ws.readyState === WebSocket.CLOSED) return r();
    ws.once('close', () => r());
    ws.close(1000, 'sidecar shutting down');
  }));
  let version = 0;
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.on('open', () => ws.send(encode({ type: 'hello', protocol: PROTOCOL_VERSION, node, lastVersion: 0 })));
    ws.on('message', (data: Buffer) => {
      const msg = parseShared(data);
      if ((msg.type !== 'snapshot' && msg.type !== 'delta') || msg.version <= version) return;
      version = msg.version;
      ws.send(encode({ type: 'ack', version: msg.version, nonce: msg.nonce }));
      resolve();
    });
  });
}

async function startClient(node: NodeInfo, dataDir: string): Promise<void> {
  const c = await ControlClient.start({
    url: url!, caPem, dataDir, bootstrapToken: token!, node,
    target: { async applyResources() {} },
    telemetry: { flushMs: 60_000 },
    // Hundreds of simulated sidecars share one core here; each real sidecar writes its own
    // snapshot in its own process, after its ACK, so leaving the write out does not flatter
    // the manager-side numbers this benchmark is about.
    persistSnapshot: process.env.ETZ_BENCH_PERSIST === '1',
  });
  closers.push(() => c.close());
  await c.waitForVersion((v) => v > 0, 120_000);
}

// Enroll with bounded concurrency: the manager signs one CSR per sidecar.
let next = 0;
await Promise.all(Array.from({ length: 16 }, async () => {
  while (next < count) {
    const n = offset + next++;
    const service = `svc-${n % 20}`;
    const node = { service, instance: `${service}-${n}` };
    await (mode === 'light' ? startLight : startClient)(node, join(dir!, `s${n}`));
  }
}));
process.stdout.write('ready\n');

// stdin lines: "profile <file>" starts a CPU profile of this process, "stop" writes it and answers
// "profiled" (the bench profiles the rounds only, not enrollment and connection set-up).
let session: Session | undefined;
let profileFile = '';
let pending = '';
process.stdin.on('data', (d: Buffer) => {
  pending += d.toString();
  let nl: number;
  while ((nl = pending.indexOf('\n')) >= 0) {
    const [cmd, arg] = pending.slice(0, nl).split(' ');
    pending = pending.slice(nl + 1);
    if (cmd === 'profile' && arg && !session) {
      session = new Session();
      session.connect();
      profileFile = arg;
      void session.post('Profiler.enable').then(() => session!.post('Profiler.start')).then(() => process.stdout.write('profiling\n'));
    } else if (cmd === 'stop' && session) {
      const s = session;
      session = undefined;
      void s.post('Profiler.stop').then(async ({ profile }) => {
        await writeFile(profileFile, JSON.stringify(profile));
        s.disconnect();
        process.stdout.write('profiled\n');
      });
    }
  }
});
process.stdin.on('end', async () => {
  await Promise.all(closers.map((c) => c()));
  await rm(dir!, { recursive: true, force: true });
  process.exit(0);
});
