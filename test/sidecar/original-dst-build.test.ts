// The install step for the addon, run for real on copies of the sources: it builds from source
// without any download; a failed build is reported and does not fail the install (Host-header
// fallback) unless ETZ_NATIVE_REQUIRED=1 asks for it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const linux = process.platform === 'linux';
let dir = '';

function install(cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    // No npm_config_* from an enclosing npm run: the script must find node-gyp and headers itself.
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
    execFile(process.execPath, [join(cwd, 'scripts/build-native.js')], { cwd, env: { ...clean, ...env }, timeout: 180_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
}

async function copyPackage(name: string): Promise<string> {
  const d = join(dir, name);
  for (const p of ['binding.gyp', 'native', 'scripts/build-native.js']) await cp(join(root, p), join(d, p), { recursive: true });
  await writeFile(join(d, 'package.json'), '{"name":"etz-addon-copy","version":"0.0.0","type":"module"}\n');
  return d;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-native-'));
});
after(() => rm(dir, { recursive: true, force: true }));

test('builds the addon from source and the result loads', { skip: !linux && 'Linux only' }, async () => {
  const d = await copyPackage('good');
  const r = await install(d);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /native addon built/);
  const built = join(d, 'build/Release/etz_original_dst.node');
  assert.ok(existsSync(built));
  const b = createRequire(import.meta.url)(built) as { originalDst: unknown };
  assert.equal(typeof b.originalDst, 'function');
});

test('a failed build is reported and does not fail the install; required mode fails it', { skip: !linux && 'Linux only' }, async () => {
  const d = await copyPackage('broken');
  await writeFile(join(d, 'native/original_dst.c'), 'this is not C;\n');
  const tolerant = await install(d);
  assert.equal(tolerant.code, 0, 'npm ci goes on');
  assert.match(tolerant.out, /native addon NOT built .*routed by Host header/);
  assert.ok(!existsSync(join(d, 'build/Release/etz_original_dst.node')));
  const strict = await install(d, { ETZ_NATIVE_REQUIRED: '1' });
  assert.equal(strict.code, 1, 'the image build stops');
  assert.match(strict.out, /native addon NOT built/);
});
