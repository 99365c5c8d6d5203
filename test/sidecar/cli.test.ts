import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startUpstream, delay, inboundPortFromLog } from './helpers.js';

// `etz sidecar` as a real child process: config errors, env overrides, SIGTERM drain, access log.

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out: etz ${args.join(' ')}\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'etz-sidecar-cli-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('an invalid config exits 2 naming the file, the field and the reason', () =>
  withDir(async (dir) => {
    const file = join(dir, 'sidecar.yaml');
    await writeFile(file, 'service:\n  name: reviews\ninbound:\n  port: 70000\n');
    const r = await run(['sidecar', '--config', file, '--check']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), `etz: invalid config: ${file}: /inbound/port: must be <= 65535 [ETZ_ERR_CONFIG_INVALID]`);

    await writeFile(file, 'service:\n  name: reviews\nlisteners: {}\n');
    const unknown = await run(['sidecar', '--config', file]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /\/listeners: is not a known field/);

    await writeFile(file, 'service: [oops\n');
    const broken = await run(['sidecar', '--config', file]);
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /cannot parse/);

    await writeFile(file, 'service:\n  name: reviews\ntls: { mode: DISABLE }\nresources:\n  bogus: 1\n');
    const res = await run(['sidecar', '--config', file]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /\/resources\/bogus: is not a known resource/);
  }));

test('ETZ_SIDECAR_* environment variables override config fields', () =>
  withDir(async (dir) => {
    const file = join(dir, 'sidecar.yaml');
    await writeFile(file, 'service:\n  name: reviews\ninbound:\n  appPort: 9080\ntls: { mode: DISABLE }\n');
    const r = await run(['sidecar', '-c', file, '--check'], { ETZ_SIDECAR_INBOUND__APP_PORT: '9999', ETZ_SIDECAR_ADMIN__TOKEN: 'a-very-secret-admin-token' });
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(r.stdout);
    assert.equal(cfg.inbound.appPort, 9999);
    assert.equal(cfg.inbound.port, 15006, 'defaults filled in');
    assert.equal(cfg.admin.token, '[redacted]');
    const bad = await run(['sidecar', '-c', file, '--check'], { ETZ_SIDECAR_INBOUND__APP_PORT: 'eighty' });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /\/inbound\/appPort: must be integer/);
  }));

test('usage errors exit 2 with a pointer to --help', async () => {
  const r = await run(['sidecar', '--nope']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Run 'etz sidecar --help' for usage/);
  const h = await run(['sidecar', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /Usage: etz sidecar/);
});

function portsFrom(stderr: string): { inbound: number; admin: number } | null {
  const m = /inbound :(\d+) outbound :(\d+) admin :(\d+)/.exec(stderr);
  return m ? { inbound: Number(m[1]), admin: Number(m[3]) } : null;
}

test('SIGTERM drains: the request in flight completes, then the process exits 0', () =>
  withDir(async (dir) => {
    const up = await startUpstream((_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('finished');
      }, 600);
    });
    const file = join(dir, 'sidecar.yaml');
    await writeFile(
      file,
      `service: { name: reviews }\ninbound: { host: 127.0.0.1, port: 0, appPort: ${up.port} }\noutbound: { port: 0 }\nadmin: { port: 0 }\nlogging: { level: warn }\ndrain: { timeoutMs: 5000 }\ntls: { mode: DISABLE }\n`,
    );
    const child: ChildProcess = spawn(process.execPath, [MAIN, 'sidecar', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c));
    try {
      let ports = null;
      for (let i = 0; i < 3000 && !(ports = portsFrom(stderr)); i++) await delay(10);
      assert.ok(ports, `sidecar did not start: ${stderr}`);
      const inflight = request(`http://127.0.0.1:${ports.inbound}/slow`).then(async (r) => ({ status: r.statusCode, text: await r.body.text() }));
      for (let i = 0; i < 200 && up.seen.length === 0; i++) await delay(5);
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const r = await inflight;
      assert.deepEqual(r, { status: 200, text: 'finished' });
      const [code] = await exited;
      assert.equal(code, 0, stderr);
      await assert.rejects(request(`http://127.0.0.1:${ports.inbound}/`), 'no longer accepting');
    } finally {
      child.kill('SIGKILL');
      await up.close();
    }
  }));

test('the access log, when on, writes one JSON line per request with its id', () =>
  withDir(async (dir) => {
    const up = await startUpstream();
    const file = join(dir, 'sidecar.yaml');
    await writeFile(
      file,
      `service: { name: reviews }\ninbound: { host: 127.0.0.1, port: 0, appPort: ${up.port} }\noutbound: { enabled: false }\nadmin: { enabled: false }\nlogging: { level: warn, accessLog: true }\ntls: { mode: DISABLE }\n`,
    );
    const child = spawn(process.execPath, [MAIN, 'sidecar', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c));
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    try {
      const port = await inboundPortFromLog(() => stderr);
      const r = await request(`http://127.0.0.1:${port}/logged?x=1`, { headers: { 'x-request-id': 'log-me-1' } });
      await r.body.text();
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
      const line = stdout.split('\n').find((l) => l.includes('log-me-1'));
      assert.ok(line, `no access log line in: ${stdout}`);
      const rec = JSON.parse(line);
      assert.equal(rec.path, '/logged');
      assert.equal(rec.status, 200);
      assert.equal(rec.direction, 'inbound');
      assert.equal(rec.method, 'GET');
    } finally {
      child.kill('SIGKILL');
      await up.close();
    }
  }));
