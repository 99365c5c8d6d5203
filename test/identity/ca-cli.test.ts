import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyAndCsr } from '../../src/identity/index.js';

const MAIN = resolve(fileURLToPath(import.meta.url), '../../../src/cli/main.js');

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(cmd, args, { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}
const etz = (args: string[], cwd: string) => run(process.execPath, [MAIN, ...args], cwd);

test('etz ca init / issue / sign, checked with openssl', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-ca-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));

  const init = await etz(['ca', 'init', '--trust-domain', 'etz.local', '--intermediate', '--out', 'certs'], dir);
  assert.equal(init.code, 0, init.stderr);
  assert.equal((await stat(join(dir, 'certs/ca-key.pem'))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'certs/root-key.pem'))).mode & 0o777, 0o600);
  const rootBefore = await readFile(join(dir, 'certs/root-cert.pem'), 'utf8');

  const again = await etz(['ca', 'init', '--trust-domain', 'etz.local', '--out', 'certs'], dir);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /--force.*ETZ_ERR_CA_EXISTS/);
  assert.equal(await readFile(join(dir, 'certs/root-cert.pem'), 'utf8'), rootBefore, 'refused init left the CA untouched');

  const issue = await etz(['ca', 'issue', '--spiffe', 'spiffe://etz.local/ns/default/sa/reviews', '--ttl', '2h', '--ca', 'certs', '--out', 'wl'], dir);
  assert.equal(issue.code, 0, issue.stderr);
  assert.equal((await stat(join(dir, 'wl/key.pem'))).mode & 0o777, 0o600);

  const verify = await run('openssl', ['verify', '-CAfile', 'certs/root-cert.pem', '-untrusted', 'certs/cert-chain.pem', 'wl/cert.pem'], dir);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stdout, /wl\/cert\.pem: OK/);
  const text = await run('openssl', ['x509', '-in', 'wl/cert.pem', '-noout', '-text'], dir);
  assert.match(text.stdout, /URI:spiffe:\/\/etz\.local\/ns\/default\/sa\/reviews/);
  assert.match(text.stdout, /TLS Web Server Authentication, TLS Web Client Authentication/);
  assert.match(text.stdout, /CA:FALSE/);
  // A certificate from another CA does not verify against this root.
  const other = await etz(['ca', 'init', '--trust-domain', 'etz.local', '--out', 'other'], dir);
  assert.equal(other.code, 0);
  const foreign = await run('openssl', ['verify', '-CAfile', 'other/root-cert.pem', 'wl/cert.pem'], dir);
  assert.notEqual(foreign.code, 0);

  const { csrPem } = await generateKeyAndCsr('spiffe://etz.local/ns/shop/sa/cart');
  await writeFile(join(dir, 'req.csr'), csrPem);
  const sign = await etz(['ca', 'sign', '--csr', 'req.csr', '--ca', 'certs', '--out', 'signed.pem'], dir);
  assert.equal(sign.code, 0, sign.stderr);
  const v2 = await run('openssl', ['verify', '-CAfile', 'certs/root-cert.pem', '-untrusted', 'certs/cert-chain.pem', 'signed.pem'], dir);
  assert.equal(v2.code, 0, v2.stderr);

  const foreignCsr = (await generateKeyAndCsr('spiffe://evil.example/ns/shop/sa/cart')).csrPem;
  await writeFile(join(dir, 'evil.csr'), foreignCsr);
  const refused = await etz(['ca', 'sign', '--csr', 'evil.csr', '--ca', 'certs'], dir);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /ETZ_ERR_TRUST_DOMAIN_MISMATCH/);
});

test('etz ca: usage errors exit 2', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-ca-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const args of [['ca'], ['ca', 'init'], ['ca', 'init', '--trust-domain', 'x', '--key-type', 'dsa'], ['ca', 'issue', '--spiffe', 'spiffe://ETZ/x'], ['ca', 'nope'], ['ca', 'issue', '--spiffe', 'spiffe://etz.local/ns/a/sa/b', '--ttl', 'soon']]) {
    const r = await etz(args, dir);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /etz ca --help/);
  }
});
