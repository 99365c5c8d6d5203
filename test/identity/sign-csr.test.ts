import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { x509 } from '../../src/identity/keys.js';
import {
  initCa, signCsr, generateKeyAndCsr, issueWorkloadCert, peerIdentityFromCert, verifyWorkloadCert, type CaMaterial,
} from '../../src/identity/index.js';
import { generateKeyPair, signingAlgorithm } from '../../src/identity/keys.js';
import { EtzError, type ErrorCode } from '../../src/core/errors.js';
import { createRegistry } from '../../src/core/metrics.js';

const ID = 'spiffe://etz.local/ns/default/sa/reviews';
let caPromise: Promise<CaMaterial> | undefined;
const getCa = () => (caPromise ??= initCa({ trustDomain: 'etz.local' }));

function isErr(code: ErrorCode, re?: RegExp) {
  return (err: unknown) => err instanceof EtzError && err.code === code && (!re || re.test(err.message));
}

async function csrWith(uris: string[]): Promise<string> {
  const keys = await generateKeyPair('ec-p256');
  const exts = uris.length ? [new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value })))] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=x', keys, signingAlgorithm: signingAlgorithm('ec-p256'), extensions: exts });
  return csr.toString('pem');
}

test('signCsr issues a certificate whose only URI SAN is the SPIFFE ID, with mesh key usages', async () => {
  const ca = await getCa();
  const { csrPem, keyPem } = await generateKeyAndCsr(ID);
  const before = Date.now();
  const issued = await signCsr(ca, csrPem);
  const cert = new X509Certificate(issued.certPem);
  assert.equal(cert.subjectAltName, `URI:${ID}`);
  assert.equal(cert.ca, false);
  assert.deepEqual([...(cert.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  assert.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(keyPem)), 'issued for the CSR key');
  const life = Date.parse(cert.validTo) - before;
  assert.ok(life > 23.9 * 3600_000 && life <= 24 * 3600_000 + 1000, `default lifetime 24 h, got ${life}`);
  const px = new x509.X509Certificate(issued.certPem);
  const ku = px.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
  assert.equal(ku.critical, true);
  assert.equal(issued.serial.length, 32);
  assert.deepEqual(peerIdentityFromCert(cert), { spiffeId: ID, trustDomain: 'etz.local', namespace: 'default', serviceAccount: 'reviews' });
  assert.equal(verifyWorkloadCert(issued.certChainPem, ca.trustBundlePem).spiffeId, ID);
});

test('serials are random and the ttl is honoured', async () => {
  const ca = await getCa();
  const { csrPem } = await generateKeyAndCsr(ID);
  const a = await signCsr(ca, csrPem, { ttlMs: 5000 });
  const b = await signCsr(ca, csrPem, { ttlMs: 5000 });
  assert.notEqual(a.serial, b.serial);
  assert.ok(a.notAfter.getTime() - Date.now() <= 5000);
});

test('RSA workload keys get keyEncipherment too', async () => {
  const ca = await getCa();
  const { csrPem } = await generateKeyAndCsr(ID, 'rsa-3072');
  const issued = await signCsr(ca, csrPem);
  const ku = new x509.X509Certificate(issued.certPem).getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
});

test('a CSR whose signature does not verify is refused and counted', async () => {
  const ca = await getCa();
  const metrics = createRegistry();
  const { csrPem } = await generateKeyAndCsr(ID);
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 5] ^= 0x01;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(signCsr(ca, tampered, { metrics }), isErr('ETZ_ERR_CSR_INVALID', /signature does not verify/));
  // Swap the SAN for another ID while keeping the old signature: also refused.
  const other = (await generateKeyAndCsr('spiffe://etz.local/ns/default/sa/admin')).csrPem;
  const otherDer = Buffer.from(other.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const i = otherDer.indexOf(Buffer.from('admin'));
  otherDer.write('adm1n', i);
  const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${otherDer.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(signCsr(ca, forged, { metrics }), isErr('ETZ_ERR_CSR_INVALID', /signature/));
  const text = await metrics.metrics();
  assert.match(text, /etz_csr_rejected_total\{reason="bad_signature"\} 2/);
});

test('a CSR for a foreign trust domain is refused', async () => {
  const ca = await getCa();
  const metrics = createRegistry();
  const { csrPem } = await generateKeyAndCsr('spiffe://evil.example/ns/default/sa/reviews');
  await assert.rejects(signCsr(ca, csrPem, { metrics }), isErr('ETZ_ERR_TRUST_DOMAIN_MISMATCH', /evil\.example/));
  await assert.rejects(signCsr(ca, csrPem, { trustDomain: 'other.local', metrics }), isErr('ETZ_ERR_TRUST_DOMAIN_MISMATCH'));
  await assert.rejects(signCsr(ca, (await generateKeyAndCsr(ID)).csrPem, { spiffeId: 'spiffe://evil.example/ns/a/sa/b', metrics }), isErr('ETZ_ERR_TRUST_DOMAIN_MISMATCH'));
  assert.match(await metrics.metrics(), /etz_csr_rejected_total\{reason="foreign_trust_domain"\} 3/);
});

test('SAN shape: several URI SANs, none, or a non-workload ID are refused', async () => {
  const ca = await getCa();
  await assert.rejects(signCsr(ca, await csrWith([ID, 'spiffe://etz.local/ns/default/sa/admin'])), isErr('ETZ_ERR_CSR_INVALID', /2 URI SANs/));
  await assert.rejects(signCsr(ca, await csrWith([])), isErr('ETZ_ERR_CSR_INVALID', /no URI SAN/));
  await assert.rejects(signCsr(ca, await csrWith(['https://etz.local/ns/a/sa/b'])), isErr('ETZ_ERR_SPIFFE_ID_INVALID'));
  await assert.rejects(signCsr(ca, 'garbage'), isErr('ETZ_ERR_CSR_INVALID', /not a PEM/));
  await assert.rejects(signCsr(ca, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'), isErr('ETZ_ERR_CSR_INVALID'));
});

test('an identity decided by the caller wins; a conflicting CSR SAN is refused', async () => {
  const ca = await getCa();
  const noSan = await csrWith([]);
  const issued = await signCsr(ca, noSan, { spiffeId: ID });
  assert.equal(new X509Certificate(issued.certPem).subjectAltName, `URI:${ID}`);
  const { csrPem } = await generateKeyAndCsr('spiffe://etz.local/ns/default/sa/admin');
  await assert.rejects(signCsr(ca, csrPem, { spiffeId: ID }), isErr('ETZ_ERR_CSR_INVALID', /enrolled as/));
  assert.equal(new X509Certificate((await signCsr(ca, (await generateKeyAndCsr(ID)).csrPem, { spiffeId: ID })).certPem).subjectAltName, `URI:${ID}`);
});

test('leaf lifetime is capped by the signing certificate', async () => {
  const ca = await initCa({ trustDomain: 'etz.local', ttlMs: 60_000 });
  const leaf = await issueWorkloadCert(ca, ID, { ttlMs: 3600_000 });
  assert.ok(leaf.notAfter.getTime() <= Date.parse(new X509Certificate(ca.rootCertPem).validTo));
  await assert.rejects(issueWorkloadCert(ca, 'spiffe://other/ns/a/sa/b'), isErr('ETZ_ERR_TRUST_DOMAIN_MISMATCH'));
});

test('peerIdentityFromCert refuses certificates with several URI SANs', async () => {
  const ca = await getCa();
  // Issue one directly with two URIs, the way a foreign CA could.
  const keys = await generateKeyPair('ec-p256');
  const caKey = await (await import('../../src/identity/keys.js')).importSigningKey(ca.signingKeyPem);
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'CN=x', issuer: new x509.X509Certificate(ca.signingCertPem).subject, publicKey: keys.publicKey, signingKey: caKey.key,
    signingAlgorithm: signingAlgorithm('ec-p256'), notAfter: new Date(Date.now() + 3600_000),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://etz.local/ns/default/sa/admin' }])],
  });
  assert.throws(() => peerIdentityFromCert(cert.toString('pem')), isErr('ETZ_ERR_SPIFFE_ID_INVALID', /2 URI SANs/));
  assert.throws(() => verifyWorkloadCert(cert.toString('pem'), ca.trustBundlePem), (e: unknown) => e instanceof EtzError && e.details?.reason === 'bad_identity');
});

test('verifyWorkloadCert refuses expired and foreign certificates', async () => {
  const ca = await getCa();
  const foreign = await initCa({ trustDomain: 'etz.local' });
  const leaf = await issueWorkloadCert(foreign, ID);
  assert.throws(() => verifyWorkloadCert(leaf.certChainPem, ca.trustBundlePem), (e: unknown) => e instanceof EtzError && e.details?.reason === 'untrusted');
  const mine = await issueWorkloadCert(ca, ID, { ttlMs: 2000 });
  assert.throws(() => verifyWorkloadCert(mine.certChainPem, ca.trustBundlePem, Date.now() + 10_000), (e: unknown) => e instanceof EtzError && e.details?.reason === 'expired');
});
