// docker-compose.yaml for a mesh without Kubernetes: structure checked statically (no engine on
// the test machines), the embedded etz configs through etz's own loaders, and the init
// command through the real CLI.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
// merge: true resolves the `<<: *anchor` keys the file uses, as Compose does.
const compose = parse(await readFile(join(root, 'docker-compose.yaml'), 'utf8'), { merge: true }) as Obj;
const services = compose.services as Record<string, Obj>;
const tmp = await mkdtemp(join(tmpdir(), 'etz-compose-'));
after(() => rm(tmp, { recursive: true, force: true }));

const apps = Object.keys(services).filter((n) => services[`${n}-proxy`]);

test('each application has an init and a proxy container in its network namespace', () => {
  assert.ok(apps.length >= 2, 'at least two services in the example mesh');
  for (const app of apps) {
    const init = services[`${app}-init`]!;
    const proxy = services[`${app}-proxy`]!;
    assert.ok(init, `${app}-init exists`);
    assert.equal(init.network_mode, `service:${app}`);
    assert.equal(proxy.network_mode, `service:${app}`);
    assert.equal(init.command[0], 'iptables');
    assert.deepEqual(init.cap_add, ['NET_ADMIN']);
    assert.deepEqual(init.cap_drop, ['ALL']);
    assert.equal(init.user, '0:0');
    assert.equal(init.restart, 'no');
    assert.equal(proxy.user, '1337:1337');
    assert.deepEqual(proxy.cap_drop, ['ALL']);
    assert.equal(proxy.cap_add, undefined);
    assert.equal(proxy.depends_on[`${app}-init`].condition, 'service_completed_successfully', 'rules before traffic');
    assert.equal(proxy.command[0], 'sidecar');
  }
});

test('the init command is valid for the real CLI and exempts the proxy uid', async () => {
  for (const app of apps) {
    const init = services[`${app}-init`]!;
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [cli, ...init.command, '--dry-run', '--ipv6', 'off'], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    const uid = services[`${app}-proxy`]!.user.split(':')[0];
    assert.match(r.stdout, new RegExp(`--uid-owner ${uid} -j RETURN`));
  }
});

test('every referenced config and volume is defined; depends_on names real services', () => {
  for (const [name, s] of Object.entries(services)) {
    for (const c of s.configs ?? []) assert.ok(compose.configs?.[c.source], `${name}: config ${c.source}`);
    for (const v of s.volumes ?? []) {
      const src = String(v).split(':')[0]!;
      if (!src.startsWith('.') && !src.startsWith('/')) assert.ok(compose.volumes?.[src] !== undefined, `${name}: volume ${src}`);
    }
    for (const d of Object.keys(s.depends_on ?? {})) assert.ok(services[d], `${name} depends on ${d}`);
    if (s.network_mode?.startsWith('service:')) assert.ok(services[s.network_mode.slice(8)], `${name}: ${s.network_mode}`);
  }
  assert.ok(services.manager, 'zone manager service');
  assert.ok(services.manager.healthcheck?.test, 'manager has its own healthcheck');
});

test('embedded sidecar and manager configs are valid for etz', async (t) => {
  const sidecarMod = join(root, 'dist/src/config/sidecar-schema.js');
  const managerMod = join(root, 'dist/src/manager/config.js');
  if (!existsSync(sidecarMod) || !existsSync(managerMod)) return t.skip('config loaders not built');
  const { loadSidecarConfig } = (await import(sidecarMod)) as { loadSidecarConfig: (f: string, env: object) => Promise<Obj> };
  const { loadManagerConfig } = (await import(managerMod)) as { loadManagerConfig: (f: string, env: object) => Promise<Obj> };
  for (const app of apps) {
    const proxy = services[`${app}-proxy`]!;
    const src = proxy.configs.find((c: Obj) => c.target === '/etc/etz/sidecar.yaml').source;
    const file = join(tmp, `${app}.yaml`);
    await writeFile(file, compose.configs[src].content);
    const cfg = await loadSidecarConfig(file, {});
    assert.equal(cfg.service.name, app);
    assert.equal(cfg.inbound.host, '0.0.0.0', 'redirected inbound traffic arrives on the pod address');
  }
  const mfile = join(tmp, 'manager.yaml');
  const mgr = services.manager!;
  await writeFile(mfile, compose.configs[mgr.configs[0].source].content);
  const cfg = await loadManagerConfig(mfile, {});
  assert.equal(cfg.dataDir, mgr.command[mgr.command.indexOf('--data-dir') + 1]);
  assert.ok(mgr.volumes.some((v: string) => v.endsWith(`:${cfg.dataDir}`)), 'manager data on a volume');
});
