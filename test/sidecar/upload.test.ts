import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { startUpstream, inboundPortFromLog } from './helpers.js';

// A 1 GiB upload streams through a sidecar process whose memory stays flat: bodies are never
// buffered whole, and backpressure holds the client when the upstream is slower.

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const GiB = 1024 * 1024 * 1024;

async function peakRssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]);
}

test('a 1 GiB upload passes with flat sidecar memory', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
  let received = 0;
  const up = await startUpstream(undefined, {
    stream: (req, res) => {
      req.on('data', (c: Buffer) => (received += c.length));
      req.on('end', () => res.end(String(received)));
    },
  });
  const dir = await mkdtemp(join(tmpdir(), 'etz-upload-'));
  const file = join(dir, 'sidecar.yaml');
  await writeFile(file, `service: { name: sink }\ninbound: { host: 127.0.0.1, port: 0, appPort: ${up.port} }\noutbound: { enabled: false }\nadmin: { port: 0 }\nlogging: { level: warn }\ntls: { mode: DISABLE }\n`);
  const child = spawn(process.execPath, [MAIN, 'sidecar', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  try {
    const port = await inboundPortFromLog(() => stderr);
    assert.ok(port > 0, stderr);
    const warm = await request(`http://127.0.0.1:${port}/`, { method: 'POST', body: 'x' });
    await warm.body.text();
    const baseline = await peakRssKiB(child.pid!);
    const chunk = Buffer.alloc(1024 * 1024, 7);
    async function* body() {
      for (let i = 0; i < 1024; i++) yield chunk;
    }
    received = 0;
    const r = await request(`http://127.0.0.1:${port}/upload`, { method: 'PUT', body: Readable.from(body()), headers: { 'content-length': String(GiB) } });
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), String(GiB));
    assert.equal(received, GiB);
    const peak = await peakRssKiB(child.pid!);
    // Streaming adds socket buffers plus garbage the collector has not reclaimed yet (more on a
    // busy machine); buffering the body would add a gigabyte. 192 MiB separates the two clearly.
    assert.ok(peak - baseline < 192 * 1024, `sidecar peak RSS grew by ${Math.round((peak - baseline) / 1024)} MiB (baseline ${Math.round(baseline / 1024)} MiB)`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await up.close();
    await rm(dir, { recursive: true, force: true });
  }
});
