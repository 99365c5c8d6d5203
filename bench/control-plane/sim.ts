import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ControlClient } from '../../src/sidecar/control/client.js';

/**
 * Simulated sidecars for the control-plane benchmark, in their own process: each is the real
 * ControlClient (real enrollment, CSR, certificate, WSS with that certificate, ACKs and snapshot
 * handling) in front of a no-op config target; snapshot files only with ETZ_BENCH_PERSIST=1.
 * argv: url caPem(base64) token count offset dir
 * stdout: "enrolled" when all have certificates, "ready" once every one has a version in force.
 */
const [url, caB64, token, countS, offsetS, dir] = process.argv.slice(2);
const caPem = Buffer.from(caB64!, 'base64').toString();
const count = Number(countS);
const offset = Number(offsetS);
const clients: ControlClient[] = [];
await mkdir(dir!, { recursive: true });

// Enroll with bounded concurrency: the manager signs one CSR per sidecar.
let next = 0;
await Promise.all(Array.from({ length: 16 }, async () => {
  while (next < count) {
    const i = next++;
    const n = offset + i;
    const service = `svc-${n % 20}`;
    const c = await ControlClient.start({
      url: url!, caPem, dataDir: join(dir!, `s${n}`), bootstrapToken: token!,
      node: { service, instance: `${service}-${n}` },
      target: { async applyResources() {} },
      telemetry: { flushMs: 60_000 },
      // Hundreds of simulated sidecars share one core here; each real sidecar writes its own
      // snapshot in its own process, after its ACK, so leaving the write out does not flatter
      // the manager-side numbers this benchmark is about.
      persistSnapshot: process.env.ETZ_BENCH_PERSIST === '1',
    });
    clients.push(c);
    await c.waitForVersion((v) => v > 0, 120_000);
  }
}));
process.stdout.write('ready\n');

process.stdin.on('data', () => {});
process.stdin.on('end', async () => {
  await Promise.all(clients.map((c) => c.close()));
  await rm(dir!, { recursive: true, force: true });
  process.exit(0);
});
