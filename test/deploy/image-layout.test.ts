// The image cannot be built here (no container engine), so this test replays the Dockerfile's
// steps that matter on the host: the deps stage's COPY and RUN lines as written (a real
// `npm ci --omit=dev` that compiles the addon), then the runtime stage's COPY lines into a
// directory laid out like /opt/etz. The result must run as uid 1337 with production
// dependencies only, and the image's HEALTHCHECK command must pass against a live sidecar and
// fail without one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const text = await readFile(join(root, 'Dockerfile'), 'utf8');

// Logical lines per stage (continuations joined, comments dropped).
const stages: Array<{ name: string; lines: string[] }> = [];
{
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (cur === '' && line === '')) continue;
    if (line.endsWith('\\')) {
      cur += line.slice(0, -1) + ' ';
      continue;
    }
    const full = (cur + line).trim();
    cur = '';
    const from = /^FROM\s+\S+\s+AS\s+(\S+)$/i.exec(full);
    if (from) stages.push({ name: from[1]!, lines: [] });
    else if (stages.length) stages.at(-1)!.lines.push(full);
  }
}
const stage = (n: string) => stages.find((s) => s.name === n)!;
const runtime = stages.at(-1)!;

let work = '';
let deps = '';
let rt = '';
const asProxy = process.getuid?.() === 0 ? ['setpriv', '--reuid=1337', '--regid=1337', '--clear-groups'] : [];
const children: ChildProcess[] = [];

function run(argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, timeout: 240_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: String(stdout) + String(stderr) }));
  });
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'etz-image-'));
  await chmod(work, 0o755);
  deps = join(work, 'deps');
  rt = join(work, 'opt-etz');
  await mkdir(deps);
  await mkdir(rt);
  // deps stage, as written: COPY from the context, ENV, RUN.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  for (const line of stage('deps').lines) {
    const [op, ...rest] = line.split(/\s+/);
    if (op === 'COPY') {
      const dest = rest.at(-1)!;
      for (const src of rest.slice(0, -1)) {
        const target = dest.endsWith('/') ? join(deps, dest, src.split('/').pop()!) : join(deps, dest);
        await cp(join(root, src), target, { recursive: true });
      }
    } else if (op === 'ENV') {
      const [k, v] = rest.join(' ').split('=');
      env[k!] = v;
    } else if (op === 'RUN') {
      const cmd = line.slice(4).replace(/npm ci /, 'npm ci --prefer-offline ');
      const r = await run(['sh', '-c', cmd], { cwd: deps, env });
      assert.equal(r.code, 0, `deps stage: ${cmd}\n${r.out}`);
    }
  }
  // runtime stage COPY lines: --from=deps from the replayed stage, --from=build from this
  // checkout's compiled output (the build stage runs the same tsc).
  for (const line of runtime.lines.filter((l) => l.startsWith('COPY '))) {
    const parts = line.split(/\s+/).slice(1);
    const from = /^--from=(\S+)$/.exec(parts[0]!)![1]!;
    const [src, dest] = [parts[1]!.replace(/^\/src\//, ''), parts[2]!.replace(/^\.\//, '')];
    await cp(join(from === 'deps' ? deps : root, src), join(rt, dest), { recursive: true });
  }
  for (const d of ['', 'dist', 'dist/src', 'build']) await chmod(join(rt, d), 0o755).catch(() => undefined);
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (work) await rm(work, { recursive: true, force: true });
});

test('the deps stage compiles the addon and installs no dev dependency', async () => {
  assert.ok(existsSync(join(rt, 'build/Release/etz_original_dst.node')));
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
  for (const dev of Object.keys(pkg.devDependencies)) assert.ok(!existsSync(join(rt, 'node_modules', dev)), `${dev} is not in the image`);
});

test('the runtime layout runs as uid 1337 with production dependencies only', async () => {
  const main = join(rt, 'dist/src/cli/main.js');
  const v = await run([...asProxy, process.execPath, main, 'version'], { cwd: '/' });
  assert.equal(v.code, 0, v.out);
  assert.match(v.out, /^etz \d+\.\d+\.\d+/);
  const ipt = await run([...asProxy, process.execPath, main, 'iptables', '--dry-run', '--ipv6=off', '--iptables=/nonexistent/iptables'], { cwd: '/' });
  assert.equal(ipt.code, 0, ipt.out);
  assert.match(ipt.out, /--uid-owner 1337 -j RETURN/);
  // The addon loads from its place in the image layout.
  const probe = `import(${JSON.stringify(join(rt, 'dist/src/sidecar/original-dst.js'))}).then((m) => console.log(JSON.stringify(m.originalDstStatus())))`;
  const s = await run([...asProxy, process.execPath, '-e', probe], { cwd: '/' });
  assert.equal(JSON.parse(s.out).path, join(rt, 'build/Release/etz_original_dst.node'));
});

test("the image's HEALTHCHECK passes against a live sidecar and fails without one", async () => {
  const hc = runtime.lines.find((l) => l.startsWith('HEALTHCHECK'))!;
  const cmd = JSON.parse(hc.slice(hc.indexOf('CMD ') + 4)) as string[];
  assert.equal(cmd[0], 'node');
  const cfg = join(work, 'sidecar.json');
  await writeFile(cfg, JSON.stringify({ service: { name: 'hc' }, inbound: { port: 0, appPort: 9 }, outbound: { port: 0 }, admin: { port: 0 }, logging: { level: 'warn' }, tls: { mode: 'DISABLE' } }), { mode: 0o644 });
  const child = spawn(asProxy[0] ?? process.execPath, [...asProxy.slice(1), ...(asProxy.length ? [process.execPath] : []), join(rt, 'dist/src/cli/main.js'), 'sidecar', '--config', cfg], { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const admin = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`sidecar did not start: ${out}`)), 20_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /admin :(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`sidecar exited ${code}: ${out}`)));
  });
  const env = { ...process.env, ETZ_HEALTHCHECK_URL: `http://127.0.0.1:${admin}/healthz` };
  const healthy = spawnSync(process.execPath, cmd.slice(1), { env, timeout: 10_000 });
  assert.equal(healthy.status, 0, String(healthy.stderr));
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  const down = spawnSync(process.execPath, cmd.slice(1), { env, timeout: 10_000 });
  assert.equal(down.status, 1, 'a dead sidecar is unhealthy');
});
