import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCa, saveCa, loadCa, rolloverCa, issueWorkloadCert, verifyWorkloadCert, splitPemCerts, CA_FILES } from '../../src/identity/index.js';
import { EtzError } from '../../src/core/errors.js';

test('initCa: P-256 root by default, a CA certificate for the trust domain', async () => {
  const ca = await initCa({ trustDomain: 'etz.local' });
  const root = new X509Certificate(ca.rootCertPem);
  assert.equal(root.ca, true);
  assert.equal(root.publicKey.asymmetricKeyType, 'ec');
  assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.match(root.subject, /etz\.local/);
  assert.equal(ca.signingCertPem, ca.rootCertPem);
  assert.equal(ca.chainPem, '');
  assert.ok(root.checkIssued(root) && root.verify(root.publicKey));
});

test('initCa: RSA-3072 with an intermediate that chains to the root', async () => {
  const ca = await initCa({ trustDomain: 'etz.local', keyType: 'rsa-3072', intermediate: true });
  const root = new X509Certificate(ca.rootCertPem);
  const inter = new X509Certificate(ca.signingCertPem);
  assert.equal(root.publicKey.asymmetricKeyDetails?.modulusLength, 3072);
  assert.equal(inter.ca, true);
  assert.ok(inter.checkIssued(root) && inter.verify(root.publicKey));
  assert.ok(Date.parse(inter.validTo) <= Date.parse(root.validTo));
  const leaf = await issueWorkloadCert(ca, 'spiffe://etz.local/ns/a/sa/b');
  assert.equal(splitPemCerts(leaf.certChainPem).length, 2);
  assert.equal(verifyWorkloadCert(leaf.certChainPem, ca.trustBundlePem).serviceAccount, 'b');
  const x = new X509Certificate(leaf.certPem);
  assert.equal(x.publicKey.asymmetricKeyType, 'ec');
});

test('saveCa writes keys 0600, refuses to overwrite without force, loadCa reads it back', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-ca-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await initCa({ trustDomain: 'etz.local', intermediate: true });
  await saveCa(dir, ca);
  assert.equal((await stat(join(dir, CA_FILES.signingKey))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, CA_FILES.rootKey))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, CA_FILES.rootCert))).mode & 0o777, 0o644);

  const other = await initCa({ trustDomain: 'etz.local' });
  await assert.rejects(saveCa(dir, other), (err: unknown) => err instanceof EtzError && err.code === 'ETZ_ERR_CA_EXISTS' && /--force/.test(err.message));
  const kept = await loadCa(dir);
  assert.equal(kept.rootCertPem, ca.rootCertPem, 'the refused write changed nothing');
  assert.equal(kept.signingKeyPem, ca.signingKeyPem);
  assert.equal(kept.chainPem, ca.chainPem);
  assert.equal(kept.keyType, 'ec-p256');

  await saveCa(dir, other, { force: true });
  const replaced = await loadCa(dir);
  assert.equal(replaced.rootCertPem, other.rootCertPem);
  // The loaded CA issues certificates that verify against the saved bundle.
  const leaf = await issueWorkloadCert(replaced, 'spiffe://etz.local/ns/x/sa/y');
  assert.equal(verifyWorkloadCert(leaf.certChainPem, replaced.trustBundlePem).namespace, 'x');
});

test('loadCa refuses a missing directory and a key that does not match the certificate', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-ca-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assert.rejects(loadCa(join(dir, 'nope')), (err: unknown) => err instanceof EtzError && err.code === 'ETZ_ERR_CA_INVALID');
  const a = await initCa({ trustDomain: 'etz.local' });
  const b = await initCa({ trustDomain: 'etz.local' });
  await saveCa(dir, a);
  await writeFile(join(dir, CA_FILES.signingKey), b.signingKeyPem);
  await assert.rejects(loadCa(dir), (err: unknown) => err instanceof EtzError && err.code === 'ETZ_ERR_CA_INVALID' && /does not match/.test(err.message));
});

test('rolloverCa trusts old and new roots side by side, then only the new one', async () => {
  const old = await initCa({ trustDomain: 'etz.local' });
  const next = await rolloverCa(old);
  assert.equal(splitPemCerts(next.trustBundlePem).length, 2);
  const fromOld = await issueWorkloadCert(old, 'spiffe://etz.local/ns/a/sa/old');
  const fromNew = await issueWorkloadCert(next, 'spiffe://etz.local/ns/a/sa/new');
  assert.equal(verifyWorkloadCert(fromOld.certChainPem, next.trustBundlePem).serviceAccount, 'old');
  assert.equal(verifyWorkloadCert(fromNew.certChainPem, next.trustBundlePem).serviceAccount, 'new');
  const done = await rolloverCa(next, { dropOld: true });
  assert.equal(splitPemCerts(done.trustBundlePem).length, 1);
  assert.throws(() => verifyWorkloadCert(fromOld.certChainPem, done.trustBundlePem), (err: unknown) => err instanceof EtzError && err.details?.reason === 'untrusted');
});
