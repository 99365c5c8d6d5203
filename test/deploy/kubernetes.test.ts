// The Kubernetes manifests, validated offline against the Kubernetes API JSON schemas (the
// kubernetes-models package ships them, compiled for ajv), then checked for the things a schema
// cannot see: the init container's rules, the sidecar's uid and ports, and the embedded etz
// configs, which go through etz's own config loaders.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { loadSidecarConfig } from '../../src/config/sidecar-schema.js';
import { loadManagerConfig } from '../../src/manager/config.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const dir = join(root, 'deploy/kubernetes');
const cli = join(root, 'dist/src/cli/main.js');
const tmp = await mkdtemp(join(tmpdir(), 'etz-k8s-'));
after(() => rm(tmp, { recursive: true, force: true }));

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Validate one object with the model class for its apiVersion/kind; returns the error or null. */
async function schemaError(doc: Obj): Promise<string | null> {
  const [group, version] = String(doc.apiVersion).includes('/') ? String(doc.apiVersion).split('/') : [undefined, String(doc.apiVersion)];
  const mod = `kubernetes-models/${group ? `${group}/` : ''}${version}/${doc.kind}`;
  let Model: new (d: Obj) => { validate(): void };
  try {
    Model = ((await import(mod)) as Obj)[String(doc.kind)];
  } catch {
    return `no schema for ${doc.apiVersion} ${doc.kind}`;
  }
  try {
    new Model(doc).validate();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

async function loadDocs(file: string): Promise<Obj[]> {
  const docs = parseAllDocuments(await readFile(file, 'utf8'));
  for (const d of docs) assert.deepEqual(d.errors, [], `${file}: YAML errors`);
  return docs.map((d) => d.toJSON() as Obj).filter((d) => d !== null);
}

const files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).sort();
const byFile = new Map<string, Obj[]>();
for (const f of files) byFile.set(f, await loadDocs(join(dir, f)));
const docs = [...byFile.values()].flat();
const find = (kind: string, name: string) => {
  const d = docs.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(d, `${kind}/${name} exists`);
  return d;
};

test('every manifest validates against the Kubernetes schemas', async () => {
  assert.ok(files.length >= 3, 'namespace, manager and example workload');
  for (const [f, list] of byFile) {
    assert.ok(list.length > 0, `${f} has objects`);
    for (const d of list) {
      assert.equal(await schemaError(d), null, `${f}: ${d.kind}/${d.metadata?.name}`);
      assert.ok(d.metadata?.name, `${f}: ${d.kind} has a name`);
    }
  }
});

test('the schema validation is real: broken objects are refused', async () => {
  const dep = structuredClone(find('Deployment', 'etz-manager'));
  dep.spec.template.spec.containers[0].ports[0].containerPort = '15012';
  assert.match(String(await schemaError(dep)), /containerPort must be integer/);
  const noContainers = structuredClone(find('Deployment', 'etz-manager'));
  delete noContainers.spec.template.spec.containers;
  assert.match(String(await schemaError(noContainers)), /containers/);
  const svc = structuredClone(find('Service', 'etz-manager'));
  svc.spec.ports = 'all';
  assert.notEqual(await schemaError(svc), null);
});

test('zone manager: Deployment, Service and PVC fit together', () => {
  const dep = find('Deployment', 'etz-manager');
  const svc = find('Service', 'etz-manager');
  const pvc = find('PersistentVolumeClaim', 'etz-manager-data');
  const pod = dep.spec.template;
  assert.equal(dep.spec.replicas, 1, 'single writer of its data directory');
  assert.equal(dep.spec.strategy.type, 'Recreate', 'never two pods on one RWO volume');
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(pod.metadata.labels[k], v, `selector ${k}`);
  const c = pod.spec.containers[0];
  const named = c.ports.find((p: Obj) => p.name === svc.spec.ports[0].targetPort);
  assert.ok(named, 'Service targets a named container port');
  const vol = pod.spec.volumes.find((v: Obj) => v.persistentVolumeClaim?.claimName === pvc.metadata.name);
  assert.ok(vol, 'PVC mounted');
  const mount = c.volumeMounts.find((m: Obj) => m.name === vol.name);
  const dataDirArg = c.args[c.args.indexOf('--data-dir') + 1];
  assert.equal(mount.mountPath, dataDirArg, 'data dir is on the PVC');
  assert.deepEqual(pvc.spec.accessModes, ['ReadWriteOnce']);
  assert.equal(pod.spec.securityContext.runAsUser, 1337);
  assert.equal(pod.spec.securityContext.fsGroup, 1337, 'the volume is writable by uid 1337');
  assert.equal(c.args[0], 'manager');
});

test('example workload: init container with NET_ADMIN only; sidecar as uid 1337 without capabilities', async () => {
  const dep = find('Deployment', 'reviews-v1');
  const spec = dep.spec.template.spec;
  const init = spec.initContainers.find((c: Obj) => c.name === 'etz-init');
  const proxy = [...spec.initContainers, ...spec.containers].find((c: Obj) => c.name === 'etz-proxy');
  assert.equal(spec.initContainers.indexOf(init), 0, 'rules are in place before anything else starts');
  assert.equal(init.args[0], 'iptables');
  assert.deepEqual(init.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
  assert.equal(init.securityContext.runAsUser, 0);
  assert.equal(init.securityContext.privileged, false);
  assert.equal(proxy.securityContext.runAsUser, 1337);
  assert.equal(proxy.securityContext.runAsNonRoot, true);
  assert.deepEqual(proxy.securityContext.capabilities, { drop: ['ALL'] });
  assert.equal(proxy.securityContext.allowPrivilegeEscalation, false);

  // The init arguments are valid for the real CLI and exempt exactly the sidecar's uid.
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [cli, ...init.args, '--dry-run', '--ipv6', 'off', '--iptables', '/nonexistent/iptables'] /* print the rules without reading this host's */, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, stdout, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`--uid-owner ${proxy.securityContext.runAsUser} -j RETURN`));
  assert.match(r.stdout, /--dport 22 -j RETURN/);

  // Annotations document the same settings the init container applies.
  const ann = dep.spec.template.metadata.annotations as Record<string, string>;
  const argv = new Map(init.args.slice(1).map((a: string) => a.replace(/^--/, '').split('=', 2) as [string, string]));
  for (const [k, v] of Object.entries(ann)) {
    if (!k.startsWith('etz.io/') || k === 'etz.io/inject') continue;
    assert.equal(argv.get(k.slice('etz.io/'.length)), v, `annotation ${k} matches the init argument`);
  }
});

/** Load an embedded config file with etz's own loader (file, env overrides off, schema). */
async function loadEmbedded<T>(text: string, name: string, loader: (f: string, env: NodeJS.ProcessEnv) => Promise<T>): Promise<T> {
  const file = join(tmp, name);
  await writeFile(file, text);
  return loader(file, {});
}

test('example workload: sidecar config is valid for the sidecar and matches ports and probes', async () => {
  const cm = find('ConfigMap', 'reviews-etz-sidecar');
  const cfg = (await loadEmbedded(cm.data['sidecar.yaml'], 'sidecar.yaml', loadSidecarConfig)) as Obj;
  const spec = find('Deployment', 'reviews-v1').spec.template.spec;
  const proxy = spec.initContainers.find((c: Obj) => c.name === 'etz-proxy');
  const init = spec.initContainers.find((c: Obj) => c.name === 'etz-init');
  const app = spec.containers.find((c: Obj) => c.name === 'app');
  assert.equal(proxy.restartPolicy, 'Always', 'native sidecar');
  const arg = (n: string) => Number(init.args.find((a: string) => a.startsWith(`--${n}=`)).split('=')[1]);
  assert.equal(cfg.inbound.port, arg('inbound-port'));
  assert.equal(cfg.outbound.port, arg('outbound-port'));
  assert.equal(cfg.admin.port, arg('admin-port'));
  assert.equal(cfg.inbound.appPort, app.ports[0].containerPort);
  assert.equal(cfg.admin.host, '0.0.0.0', 'kubelet probes reach the admin port');
  for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe']) assert.equal(proxy[p].httpGet.port, cfg.admin.port, p);
  const mount = proxy.volumeMounts.find((m: Obj) => m.mountPath === '/etc/etz');
  const vol = spec.volumes.find((v: Obj) => v.name === mount.name);
  assert.equal(vol.configMap.name, cm.metadata.name);
  assert.equal(proxy.args[proxy.args.indexOf('--config') + 1], '/etc/etz/sidecar.yaml');

  // STRICT mTLS with the identity from enrolling with the zone manager of manager.yaml.
  assert.equal(cfg.tls?.mode, 'STRICT');
  const url = new URL(cfg.manager.url);
  const mgrSvc = find('Service', 'etz-manager');
  assert.equal(url.hostname, `${mgrSvc.metadata.name}.${mgrSvc.metadata.namespace}.svc`);
  assert.equal(Number(url.port), mgrSvc.spec.ports[0].port);
  const mgrCfg = parse(find('ConfigMap', 'etz-manager-config').data['manager.yaml']) as Obj;
  assert.equal(cfg.tls.trustDomain, mgrCfg.trustDomain, 'the manager issues identities in the trust domain the sidecar expects');
  const volumeOf = (path: string) => {
    const m = proxy.volumeMounts.find((x: Obj) => path.startsWith(`${x.mountPath}/`) || path === x.mountPath);
    assert.ok(m, `${path} is on a volume mounted in etz-proxy`);
    return { mount: m, volume: spec.volumes.find((v: Obj) => v.name === m.name) };
  };
  const token = volumeOf(cfg.manager.bootstrapTokenFile);
  assert.ok(token.volume.secret?.secretName, 'the bootstrap token comes from a Secret');
  assert.ok(volumeOf(cfg.manager.caFile).volume.configMap?.name, 'the CA bundle from a ConfigMap');
  const data = volumeOf(cfg.manager.dataDir);
  assert.notEqual(data.mount.readOnly, true, 'certificate and snapshot are written there');
  for (const c of spec.containers) {
    assert.ok(!(c.volumeMounts ?? []).some((m: Obj) => m.name === token.volume.name), `${c.name} cannot read the token`);
  }
  // The scoped token yields spiffe://<td>/ns/<namespace>/sa/<service>; peers expect the same form.
  // Registry peers are checked by SPIFFE ID in the same trust domain.
  for (const [svc, entry] of Object.entries(cfg.registry as Record<string, Obj>)) {
    assert.match(String(entry.spiffeId), new RegExp(`^spiffe://${cfg.tls.trustDomain}/ns/`), svc);
  }
});

test('zone manager config is valid for the manager', async () => {
  const cm = find('ConfigMap', 'etz-manager-config');
  const cfg = await loadEmbedded(cm.data['manager.yaml'], 'manager.yaml', loadManagerConfig);
  const c = find('Deployment', 'etz-manager').spec.template.spec.containers[0];
  assert.equal(cfg.listen.port, c.ports[0].containerPort);
  assert.equal(cfg.listen.host, '0.0.0.0', 'reachable through the Service');
  assert.equal(cfg.dataDir, c.args[c.args.indexOf('--data-dir') + 1]);
});
