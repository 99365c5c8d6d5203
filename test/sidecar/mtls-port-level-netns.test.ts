// Per-port mTLS modes under transparent interception: a real `etz sidecar` in a throw-away network
// namespace behind the rules of `etz iptables`. Every inbound port is redirected to the one
// inbound listener, so only the original destination port (SO_ORIGINAL_DST) can tell 9090
// (PERMISSIVE) and 9091 (DISABLE) from 9080 (the workload's STRICT). Needs root, as CI runs it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Netns, netnsSkipReason, sh, startIn, stopAll, vethPair, type Child } from '../e2e/netns-lib.js';

const skip = netnsSkipReason();
const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const appJs = join(root, 'dist/test/e2e/netns-app.js');
const S4 = '10.213.21.1'; // the pod with the sidecar
const C4 = '10.213.21.2'; // a client pod without one
const TD = 'etz.local';
const SERVER_ID = `spiffe://${TD}/ns/default/sa/reviews`;
const CLIENT_ID = `spiffe://${TD}/ns/default/sa/productpage`;

describe('per-port mTLS modes decided by the original destination port', { skip }, () => {
  let pod: Netns;
  let clientPod: Netns;
  let dir = '';
  const children: Child[] = [];

  async function curl(url: string, extra: string[] = []): Promise<{ code: number; status: number; body: string; stderr: string }> {
    const r = await clientPod.exec(['curl', '-sS', '--max-time', '10', '-w', '\n%{http_code}', ...extra, url]);
    const nl = r.stdout.lastIndexOf('\n');
    return { code: r.code, status: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl), stderr: r.stderr };
  }
  const mtls = () => ['--cert', join(dir, 'client', 'cert.pem'), '--key', join(dir, 'client', 'key.pem'), '--cacert', join(dir, 'client', 'ca.pem'), '-k'];
  const identityAtApp = (body: string) => (JSON.parse(body) as { headers: Record<string, string> }).headers['x-etz-peer-identity'];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'etz-port-level-'));
    const etz = async (...args: string[]) => {
      const r = await sh([process.execPath, cli, ...args]);
      assert.equal(r.code, 0, `etz ${args.join(' ')}: ${r.stderr}`);
    };
    await etz('ca', 'init', '--trust-domain', TD, '--out', join(dir, 'ca'));
    await etz('ca', 'issue', '--spiffe', SERVER_ID, '--ca', join(dir, 'ca'), '--out', join(dir, 'server'));
    await etz('ca', 'issue', '--spiffe', CLIENT_ID, '--ca', join(dir, 'ca'), '--out', join(dir, 'client'));
    await writeFile(join(dir, 'sidecar.json'), JSON.stringify({
      service: { name: 'reviews' },
      inbound: { host: '0.0.0.0', port: 15006, appHost: '127.0.0.1', appPort: 8080 },
      outbound: { enabled: false },
      admin: { host: '127.0.0.1', port: 15000 },
      logging: { level: 'warn' },
      tls: {
        mode: 'STRICT',
        portLevel: { 9090: 'PERMISSIVE', 9091: 'DISABLE' },
        certFile: join(dir, 'server', 'cert.pem'), keyFile: join(dir, 'server', 'key.pem'), caFile: join(dir, 'server', 'ca.pem'),
      },
    }));

    pod = await Netns.create('etzPL');
    clientPod = await Netns.create('etzPLc');
    await vethPair(pod, clientPod, { a4: S4, b4: C4 });
    // The sidecar runs as root here, so root's own traffic is the exempted one.
    await pod.must([process.execPath, cli, 'iptables', '--proxy-uid=0', '--proxy-gid=none', '--ipv6=off']);
    children.push(await startIn(pod, [process.execPath, appJs, 'app', '8080'], { ready: 'READY', uid: 65534, gid: 65534 }));
    children.push(await startIn(pod, [process.execPath, cli, 'sidecar', '--config', join(dir, 'sidecar.json')], { ready: 'etz sidecar' }));
  });

  after(async () => {
    await stopAll(children);
    await pod?.del();
    await clientPod?.del();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('9080 (workload STRICT): plaintext refused, mTLS reaches the app with the identity', async () => {
    const plain = await curl(`http://${S4}:9080/strict`);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.status, 400, plain.body);
    assert.match(plain.body, /ETZ_ERR_MTLS_REQUIRED/);
    const secure = await curl(`https://${S4}:9080/strict`, mtls());
    assert.equal(secure.status, 200, secure.stderr);
    assert.equal(identityAtApp(secure.body), CLIENT_ID);
  });

  test('9090 (PERMISSIVE): plaintext served without an identity (forged one stripped), mTLS with it', async () => {
    const plain = await curl(`http://${S4}:9090/metrics`, ['-H', `x-etz-peer-identity: spiffe://${TD}/ns/default/sa/admin`]);
    assert.equal(plain.status, 200, `${plain.stderr} ${plain.body}`);
    assert.equal(identityAtApp(plain.body), undefined);
    const secure = await curl(`https://${S4}:9090/metrics`, mtls());
    assert.equal(secure.status, 200, secure.stderr);
    assert.equal(identityAtApp(secure.body), CLIENT_ID);
  });

  test('9091 (DISABLE): plaintext served; a TLS client gets no handshake', async () => {
    const plain = await curl(`http://${S4}:9091/plain`);
    assert.equal(plain.status, 200, `${plain.stderr} ${plain.body}`);
    assert.equal(identityAtApp(plain.body), undefined);
    const secure = await curl(`https://${S4}:9091/plain`, mtls());
    assert.notEqual(secure.code, 0, 'the TLS handshake must fail on a DISABLE port');
  });

  test('the sidecar port itself, reached directly, keeps the workload mode; refusals are labelled', async () => {
    const direct = await curl(`http://${S4}:15006/direct`);
    assert.equal(direct.status, 400);
    const metrics = await pod.must(['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15000/metrics']);
    const line = metrics.split('\n').find((l) => l.startsWith('etz_tls_handshake_failures_total{direction="inbound",reason="plaintext",mode="STRICT",port="default"}'));
    assert.ok(line, metrics.split('\n').filter((l) => l.includes('handshake_failures')).join('\n'));
    assert.equal(Number(line.split(' ').pop()), 2, 'the 9080 and the 15006 plaintext attempts');
  });
});
