// No container engine runs on the test machines, so the Dockerfile is checked statically: the
// stages, what the runtime image contains and how it runs. The image's one hard dependency —
// that dist/src runs with production dependencies alone — is checked against the real sources.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtinModules } from 'node:module';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface Instr {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instrs: Instr[];
}

/** Parse a Dockerfile into stages: line continuations joined, comments dropped. */
function parseDockerfile(text: string): { args: Instr[]; stages: Stage[] } {
  const logical: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (cur === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // comment inside a continued instruction
    if (line.endsWith('\\')) {
      cur += line.slice(0, -1) + ' ';
      continue;
    }
    logical.push((cur + line).trim());
    cur = '';
  }
  const args: Instr[] = [];
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(l);
    assert.ok(m, `unparsable line: ${l}`);
    const op = m[1]!.toUpperCase();
    const rest = m[2]!;
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest.trim());
      assert.ok(f, `bad FROM: ${rest}`);
      stages.push({ from: f[1]!, ...(f[2] ? { name: f[2] } : {}), instrs: [] });
    } else if (stages.length === 0) {
      assert.equal(op, 'ARG', `only ARG may precede the first FROM (got ${op})`);
      args.push({ op, args: rest });
    } else {
      stages.at(-1)!.instrs.push({ op, args: rest });
    }
  }
  return { args, stages };
}

const dockerfile = parseDockerfile(await readFile(join(root, 'Dockerfile'), 'utf8'));
const runtime = dockerfile.stages.at(-1)!;
const all = (s: Stage, op: string) => s.instrs.filter((i) => i.op === op);
const one = (s: Stage, op: string) => {
  const list = all(s, op);
  assert.equal(list.length, 1, `exactly one ${op} in stage ${s.name}`);
  return list[0]!;
};
const nodeVersion = /ARG NODE_VERSION=(\d+)/.exec(dockerfile.args.map((a) => `ARG ${a.args}`).join('\n'))?.[1];

test('multi-stage: named build stages, then a slim Node 20 runtime', () => {
  assert.ok(dockerfile.stages.length >= 2, 'at least two stages');
  assert.equal(nodeVersion, '20');
  for (const s of dockerfile.stages) assert.ok(s.name, `stage FROM ${s.from} is named`);
  assert.match(runtime.from, /^node:\$\{NODE_VERSION\}-[a-z]+-slim$/);
  for (const s of dockerfile.stages.slice(0, -1)) assert.doesNotMatch(s.from, /slim/, 'build stages have the compilers');
});

test('runtime copies only build outputs and production dependencies from earlier stages', () => {
  const names = new Set(dockerfile.stages.slice(0, -1).map((s) => s.name));
  const copies = all(runtime, 'COPY');
  assert.ok(copies.length > 0);
  for (const c of copies) {
    const from = /--from=(\S+)/.exec(c.args)?.[1];
    assert.ok(from && names.has(from), `runtime COPY takes from a build stage, not the context: ${c.args}`);
  }
  const srcOf = (pattern: RegExp) => copies.find((c) => pattern.test(c.args));
  const nm = srcOf(/node_modules/);
  assert.ok(nm, 'node_modules copied');
  const depsStage = dockerfile.stages.find((s) => s.name === /--from=(\S+)/.exec(nm.args)![1])!;
  const install = all(depsStage, 'RUN').map((r) => r.args).join('\n');
  assert.match(install, /npm ci\b[^\n]*--omit=dev/, 'node_modules come from an npm ci --omit=dev');
  assert.doesNotMatch(install, /--ignore-scripts/, 'install scripts run there: they build the addon');
  assert.ok(all(depsStage, 'ENV').some((e) => /ETZ_NATIVE_REQUIRED=1/.test(e.args)), 'a failed addon build fails the image');
  assert.ok(srcOf(/build\/Release\/etz_original_dst\.node/), 'the compiled addon is in the image');
  assert.ok(srcOf(/dist\/src\b/), 'compiled sources are in the image');
  assert.ok(!copies.some((c) => /dist\/(test|bench)|\bsrc\/\w+\.ts/.test(c.args)), 'no tests, benchmarks or TypeScript sources');
  // The stage that compiles TypeScript is not the one whose node_modules ship.
  const tsc = dockerfile.stages.find((s) => all(s, 'RUN').some((r) => /\btsc\b/.test(r.args)));
  assert.ok(tsc && tsc !== depsStage);
});

test('runs as uid 1337, entrypoint etz, sidecar by default, healthcheck on the admin port', () => {
  assert.match(one(runtime, 'USER').args, /^1337(:1337)?$/);
  const useradd = all(runtime, 'RUN').map((r) => r.args).join('\n');
  assert.match(useradd, /useradd[^\n]*--uid 1337/);
  assert.deepEqual(JSON.parse(one(runtime, 'ENTRYPOINT').args), ['etz']);
  assert.match(useradd, /ln -s \/opt\/etz\/dist\/src\/cli\/main\.js \/usr\/local\/bin\/etz/);
  const cmd = JSON.parse(one(runtime, 'CMD').args) as string[];
  assert.equal(cmd[0], 'sidecar');
  const hc = one(runtime, 'HEALTHCHECK').args;
  assert.match(hc, /CMD /);
  assert.match(hc, /127\.0\.0\.1:15000\/healthz/);
  assert.match(hc, /--interval=\d+s/);
  const expose = one(runtime, 'EXPOSE').args.split(/\s+/);
  for (const p of ['15000', '15001', '15006']) assert.ok(expose.includes(p), `EXPOSE ${p}`);
  // The USER switch comes after every step that needs root (apt, useradd, chown).
  const idx = runtime.instrs.findIndex((i) => i.op === 'USER');
  assert.ok(runtime.instrs.slice(idx).every((i) => i.op !== 'RUN'), 'no RUN after USER');
});

test('init mode: the runtime has iptables, so `etz iptables` works with NET_ADMIN alone', () => {
  const runs = all(runtime, 'RUN').map((r) => r.args).join('\n');
  assert.match(runs, /apt-get install -y --no-install-recommends iptables/);
  assert.match(runs, /rm -rf \/var\/lib\/apt\/lists/);
});

test('.dockerignore keeps local builds, dependencies and the repository out of the context', async () => {
  const ignore = (await readFile(join(root, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim());
  for (const p of ['node_modules', 'dist', 'build', '.git', 'test']) assert.ok(ignore.includes(p), p);
  // …but never what the Dockerfile copies from the context.
  const copied = dockerfile.stages.flatMap((s) => all(s, 'COPY')).filter((c) => !c.args.includes('--from'))
    .flatMap((c) => c.args.split(/\s+/).slice(0, -1));
  for (const c of copied) assert.ok(!ignore.includes(c) && !ignore.includes(c.split('/')[0]!), `${c} is copied but ignored`);
});

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative import specifiers of a TypeScript file (static, re-export and dynamic). */
function relativeImports(text: string): string[] {
  return [
    ...[...text.matchAll(/^\s*(?:import|export)\s+[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)].map((m) => m[1]!),
    ...[...text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)].map((m) => m[1]!),
  ];
}

test('the build stage copies every directory that the compiled sources import from', async () => {
  const build = dockerfile.stages.find((s) => all(s, 'RUN').some((r) => /\btsc\b/.test(r.args)))!;
  const copied = all(build, 'COPY').filter((c) => !c.args.includes('--from'))
    .map((c) => c.args.split(/\s+/)[0]!).filter((p) => !p.includes('.json'));
  assert.ok(copied.includes('src'));
  const missing: string[] = [];
  for (const dir of copied) {
    for (const file of await tsFiles(join(root, dir))) {
      for (const spec of relativeImports(await readFile(file, 'utf8'))) {
        const target = join(file, '..', spec).slice(root.length);
        if (!copied.some((d) => target.startsWith(`${d}/`))) missing.push(`${file.slice(root.length)} imports ${target}`);
      }
    }
  }
  assert.deepEqual(missing, [], 'imports from outside what the build stage copies break the image build');
  const runtimeCopies = all(runtime, 'COPY').map((c) => c.args).join('\n');
  for (const dir of copied) assert.match(runtimeCopies, new RegExp(`dist/${dir}\\b`), `dist/${dir} reaches the runtime image`);
});

test('every package imported by src/ is a production dependency (the image has no others)', async () => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const builtins = new Set(builtinModules);
  const offenders: string[] = [];
  for (const file of await tsFiles(join(root, 'src'))) {
    const text = await readFile(file, 'utf8');
    // Static imports and exports (not `import type`), and dynamic import('…').
    const specs = [
      ...[...text.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
      ...[...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
      ...[...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!),
    ];
    for (const s of specs) {
      if (s.startsWith('.') || s.startsWith('node:') || builtins.has(s)) continue;
      const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!;
      if (!pkg.dependencies[name]) offenders.push(`${file.slice(root.length)} imports ${name}`);
    }
  }
  assert.deepEqual(offenders, []);
});
