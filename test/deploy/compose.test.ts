// docker-compose.yaml for a mesh without Kubernetes: structure checked statically (no engine on
// the test machines), the embedded etz configs through etz's own loaders, and the init
// command through the real CLI.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadSidecarConfig } from '../../src/config/sidecar-schema.js';
import { loadManagerConfig } from '../../src/manager/config.js';

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
    assert.equal(proxy.depends_on.identities.condition, 'service_completed_successfully', 'identity before start');
    const id = proxy.volumes.find((v: Obj) => v.target === '/etc/etz/identity');
    assert.equal(id.source, 'identities');
    assert.equal(id.volume.subpath, app, "a proxy mounts only its own identity, never another's key or the CA");
    assert.equal(id.read_only, true);
    assert.equal(proxy.command[0], 'sidecar');
  }
});

test('the init command is valid for the real CLI and exempts the proxy uid', async () => {
  for (const app of apps) {
    const init = services[`${app}-init`]!;
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [cli, ...init.command, '--dry-run', '--ipv6', 'off', '--iptables', '/nonexistent/iptables'] /* print the rules without reading this host's */, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }));
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
      const src = typeof v === 'string' ? v.split(':')[0]! : String(v.source);
      if (!src.startsWith('.') && !src.startsWith('/')) assert.ok(compose.volumes?.[src] !== undefined, `${name}: volume ${src}`);
    }
    for (const d of Object.keys(s.depends_on ?? {})) assert.ok(services[d], `${name} depends on ${d}`);
    if (s.network_mode?.startsWith('service:')) assert.ok(services[s.network_mode.slice(8)], `${name}: ${s.network_mode}`);
  }
  assert.ok(services.manager, 'zone manager service');
  assert.ok(services.manager.healthcheck?.test, 'manager has its own healthcheck');
});

test("the identities step, run for real, issues each proxy the certificate its config and its peers expect", async () => {
  const script = (services.identities!.command as string[])[0]!;
  const vol = join(tmp, 'identities');
  const sh = script.replaceAll('$$', '$').replaceAll('/identities', vol).replace(/\betz /g, `"${process.execPath}" "${cli}" `)
    // chown needs root; the test runs unprivileged too, and the ownership is checked when it ran as root.
    .replace(/chown -R 1337:1337 /g, process.getuid?.() === 0 ? 'chown -R 1337:1337 ' : 'true ');
  const r = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile('sh', ['-ec', sh], { timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
  });
  assert.equal(r.code, 0, r.out);
  const idOf = (svc: string) => new X509Certificate(readFileSync(join(vol, svc, 'cert.pem'))).subjectAltName;
  for (const app of apps) {
    for (const f of ['cert.pem', 'key.pem', 'ca.pem']) assert.ok((await stat(join(vol, app, f))).isFile(), `${app}/${f}`);
    if (process.getuid?.() === 0) assert.equal((await stat(join(vol, app, 'key.pem'))).uid, 1337, 'the proxy uid owns its key');
    assert.match(idOf(app) ?? '', new RegExp(`URI:spiffe://[^/]+/ns/[^/]+/sa/${app}$`));
  }
  // Every registry entry's expected SPIFFE ID is the identity issued to that service.
  for (const app of apps) {
    const cfg = parse(compose.configs[`${app}-sidecar`].content) as Obj;
    for (const [svc, entry] of Object.entries((cfg.registry ?? {}) as Record<string, Obj>)) {
      assert.equal(`URI:${entry.spiffeId}`, idOf(svc), `${app} expects ${svc}'s certificate`);
    }
  }
});

test('embedded sidecar and manager configs are valid for etz', async () => {
  for (const app of apps) {
    const proxy = services[`${app}-proxy`]!;
    const src = proxy.configs.find((c: Obj) => c.target === '/etc/etz/sidecar.yaml').source;
    const file = join(tmp, `${app}.yaml`);
    await writeFile(file, compose.configs[src].content);
    const cfg = (await loadSidecarConfig(file, {})) as Obj;
    assert.equal(cfg.service.name, app);
    assert.equal(cfg.tls?.mode, 'STRICT');
    for (const f of ['certFile', 'keyFile', 'caFile']) assert.ok(String(cfg.tls[f]).startsWith('/etc/etz/identity/'), f);
    assert.equal(cfg.inbound.host, '0.0.0.0', 'redirected inbound traffic arrives on the pod address');
  }
  const mfile = join(tmp, 'manager.yaml');
  const mgr = services.manager!;
  await writeFile(mfile, compose.configs[mgr.configs[0].source].content);
  const cfg = await loadManagerConfig(mfile, {});
  assert.equal(cfg.dataDir, mgr.command[mgr.command.indexOf('--data-dir') + 1]);
  assert.ok(mgr.volumes.some((v: string) => v.endsWith(`:${cfg.dataDir}`)), 'manager data on a volume');
});
