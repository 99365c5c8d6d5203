import { X509Certificate as NodeX509, createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { parseCsrDer, pemToDer, SIG_ALG_HASH, spkiKeyBits, type ParsedCsr } from './der.js';
import { EtzError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { BACKDATE_MS, type CaMaterial } from './ca.js';
import { generateKeyPair, importSigningKey, privateKeyToPem, randomSerial, signingAlgorithm, x509, type CryptoKey, type CryptoKeyPair, type KeyType } from './keys.js';
import { identityMetrics, type IdentityMetrics } from './metrics.js';
import { parseSpiffeId } from './spiffe.js';
import type { Registry } from '../core/metrics.js';

export const DEFAULT_CERT_TTL_MS = 24 * 3_600_000;

/** A workload certificate as issued: the leaf, what to send after it, and what to trust. */
export interface IssuedCert {
  spiffeId: string;
  /** The leaf alone. */
  certPem: string;
  /** Leaf followed by the intermediates: what a TLS endpoint presents. */
  certChainPem: string;
  trustBundlePem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface SignCsrOptions {
  /**
   * The identity decided by the caller (the zone manager, from a bootstrap token). When set, a
   * URI SAN in the CSR, if any, must equal it.
   */
  spiffeId?: string;
  ttlMs?: number;
  /** Must equal the CA's trust domain when given (guards a manager serving the wrong CA). */
  trustDomain?: string;
  /** Counted in etz_csr_rejected_total{reason} and logged once per refusal. */
  metrics?: Registry;
  logger?: Logger;
}

interface Signer {
  key: CryptoKey;
  keyType: KeyType;
  issuer: string;
  akiKeyId: string | undefined;
  notAfter: number;
  chainPem: string;
  /** Extensions every workload certificate carries, built once per CA. */
  fixedExtensionsEc: x509.Extension[];
  fixedExtensionsRsa: x509.Extension[];
}

function fixedExtensions(rsa: boolean, akiKeyId: string | undefined): x509.Extension[] {
  const usages = x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0);
  const exts: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(usages, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
  ];
  if (akiKeyId) exts.push(new x509.AuthorityKeyIdentifierExtension(akiKeyId));
  return exts;
}

// Importing the CA key and parsing its certificate once per CA object keeps issuance to the
// cost of one CSR check plus one signature.
const signers = new WeakMap<CaMaterial, Promise<Signer>>();

function signerFor(ca: CaMaterial): Promise<Signer> {
  let s = signers.get(ca);
  if (!s) {
    s = (async () => {
      const { key, keyType } = await importSigningKey(ca.signingKeyPem);
      const cert = new x509.X509Certificate(ca.signingCertPem);
      const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
      return {
        key, keyType, issuer: cert.subject, akiKeyId: ski?.keyId, notAfter: cert.notAfter.getTime(), chainPem: ca.chainPem,
        fixedExtensionsEc: fixedExtensions(false, ski?.keyId), fixedExtensionsRsa: fixedExtensions(true, ski?.keyId),
      };
    })();
    signers.set(ca, s);
    s.catch(() => signers.delete(ca));
  }
  return s;
}

type CsrReason = 'malformed' | 'bad_signature' | 'weak_key' | 'bad_spiffe_id' | 'several_uri_sans' | 'no_uri_san' | 'foreign_trust_domain' | 'identity_mismatch';

function reject(opts: SignCsrOptions, reason: CsrReason, err: EtzError): never {
  if (opts.metrics) identityMetrics(opts.metrics).csrRejected.inc({ reason });
  opts.logger?.warn({ code: err.code, reason, msg: err.message }, 'CSR refused');
  throw err;
}

function csrError(reason: string): EtzError {
  return new EtzError('ETZ_ERR_CSR_INVALID', `CSR refused: ${reason}`);
}

/**
 * Verifies a PKCS#10 CSR and issues a workload certificate whose only URI SAN is the SPIFFE ID.
 * Refusals throw EtzError: ETZ_ERR_CSR_INVALID (unparsable, bad signature, weak key, SAN shape),
 * ETZ_ERR_SPIFFE_ID_INVALID, ETZ_ERR_TRUST_DOMAIN_MISMATCH.
 */
export async function signCsr(ca: CaMaterial, csrPem: string, opts: SignCsrOptions = {}): Promise<IssuedCert> {
  if (opts.trustDomain !== undefined && opts.trustDomain !== ca.trustDomain) {
    reject(opts, 'foreign_trust_domain', new EtzError('ETZ_ERR_TRUST_DOMAIN_MISMATCH', `this CA serves trust domain '${ca.trustDomain}', not '${opts.trustDomain}'`));
  }
  let csr: ParsedCsr;
  try {
    csr = parseCsrDer(pemToDer(csrPem, 'CERTIFICATE REQUEST'));
  } catch (err) {
    reject(opts, 'malformed', csrError(`not a PEM or DER PKCS#10 request (${(err as Error).message})`));
  }
  const alg = SIG_ALG_HASH[csr.sigAlg];
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(csr.spki), format: 'der', type: 'spki' });
  } catch {
    reject(opts, 'malformed', csrError('its public key cannot be read'));
  }
  // PSS and SHA-1 are refused rather than verified: no etz client produces them.
  let sigOk = false;
  try {
    sigOk = alg !== undefined && alg.key === key.asymmetricKeyType && cryptoVerify(alg.hash, csr.tbs, key, csr.signature);
  } catch {
    sigOk = false;
  }
  if (!sigOk) reject(opts, 'bad_signature', csrError('the signature does not verify with the key it carries'));
  const d = key.asymmetricKeyDetails ?? {};
  const keyOk = (key.asymmetricKeyType === 'ec' && (d.namedCurve === 'prime256v1' || d.namedCurve === 'secp384r1'))
    || (key.asymmetricKeyType === 'rsa' && (d.modulusLength ?? 0) >= 2048);
  if (!keyOk) reject(opts, 'weak_key', csrError(`key ${key.asymmetricKeyType} ${d.namedCurve ?? d.modulusLength ?? ''} is not allowed (ECDSA P-256/P-384 or RSA >= 2048)`));

  const uris = csr.uris;
  if (uris.length > 1) reject(opts, 'several_uri_sans', csrError(`it asks for ${uris.length} URI SANs; exactly one SPIFFE ID is allowed`));

  let spiffeId: string;
  if (opts.spiffeId !== undefined) {
    spiffeId = checkedId(ca, opts.spiffeId, opts);
    if (uris.length === 1 && uris[0] !== spiffeId) {
      reject(opts, 'identity_mismatch', new EtzError('ETZ_ERR_CSR_INVALID', `CSR refused: it asks for '${uris[0]}' but this workload is enrolled as '${spiffeId}'`));
    }
  } else {
    if (uris.length === 0) reject(opts, 'no_uri_san', csrError('it carries no URI SAN with a SPIFFE ID'));
    spiffeId = checkedId(ca, uris[0]!, opts);
  }
  return issue(ca, csr.spki, spiffeId, opts.ttlMs, key.asymmetricKeyType === 'rsa');
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey BIT STRING contents. */
function keyIdOf(spki: Uint8Array): string {
  return createHash('sha1').update(spkiKeyBits(spki)).digest('hex');
}

function checkedId(ca: CaMaterial, id: string, opts: SignCsrOptions): string {
  let parsed;
  try {
    parsed = parseSpiffeId(id);
  } catch (err) {
    reject(opts, 'bad_spiffe_id', err as EtzError);
  }
  if (parsed.trustDomain !== ca.trustDomain) {
    reject(opts, 'foreign_trust_domain', new EtzError('ETZ_ERR_TRUST_DOMAIN_MISMATCH', `'${id}' is in trust domain '${parsed.trustDomain}'; this CA issues only for '${ca.trustDomain}'`));
  }
  return parsed.spiffeId;
}

async function issue(ca: CaMaterial, publicKey: Uint8Array | CryptoKey, spiffeId: string, ttlMs = DEFAULT_CERT_TTL_MS, rsa = false): Promise<IssuedCert> {
  if (!(ttlMs > 0)) throw new EtzError('ETZ_ERR_USAGE', `invalid certificate lifetime ${ttlMs} ms`);
  const signer = await signerFor(ca);
  const now = Date.now();
  // A leaf never outlives the certificate that signs it.
  const notAfter = new Date(Math.min(now + ttlMs, signer.notAfter));
  const notBefore = new Date(Math.min(now - Math.min(BACKDATE_MS, ttlMs), notAfter.getTime() - 1000));
  const serial = randomSerial();
  const spki = publicKey instanceof Uint8Array ? publicKey : new Uint8Array(await x509PublicKeyRaw(publicKey));
  const extensions: x509.Extension[] = [
    ...(rsa ? signer.fixedExtensionsRsa : signer.fixedExtensionsEc),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], false),
    new x509.SubjectKeyIdentifierExtension(keyIdOf(spki)),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `O=etz, OU=${ca.trustDomain}`,
    issuer: signer.issuer,
    notBefore,
    notAfter,
    publicKey: spki,
    signingKey: signer.key,
    signingAlgorithm: signingAlgorithm(signer.keyType),
    extensions,
  });
  const certPem = cert.toString('pem') + '\n';
  return {
    spiffeId, certPem, certChainPem: certPem + signer.chainPem, trustBundlePem: ca.trustBundlePem,
    serial, notBefore, notAfter,
  };
}

async function x509PublicKeyRaw(k: CryptoKey): Promise<ArrayBuffer> {
  return (await x509.PublicKey.create(k)).rawData;
}


/** A fresh key pair and a CSR asking for `spiffeId` (the sidecar keeps the key in-process). */
export async function generateKeyAndCsr(spiffeId: string, keyType: KeyType = 'ec-p256'): Promise<{ keyPem: string; csrPem: string; keys: CryptoKeyPair }> {
  parseSpiffeId(spiffeId);
  const keys = await generateKeyPair(keyType);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'O=etz',
    keys,
    signingAlgorithm: signingAlgorithm(keyType),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
  });
  return { keyPem: await privateKeyToPem(keys.privateKey), csrPem: csr.toString('pem') + '\n', keys };
}

/** Key and certificate in one step, for static setups where the CA is local (etz ca issue). */
export async function issueWorkloadCert(
  ca: CaMaterial,
  spiffeId: string,
  opts: { ttlMs?: number; keyType?: KeyType } = {},
): Promise<IssuedCert & { keyPem: string }> {
  const id = parseSpiffeId(spiffeId);
  if (id.trustDomain !== ca.trustDomain) {
    throw new EtzError('ETZ_ERR_TRUST_DOMAIN_MISMATCH', `'${spiffeId}' is in trust domain '${id.trustDomain}'; this CA issues only for '${ca.trustDomain}'`);
  }
  const keys = await generateKeyPair(opts.keyType ?? 'ec-p256');
  const issued = await issue(ca, keys.publicKey, id.spiffeId, opts.ttlMs, opts.keyType === 'rsa-3072');
  return { ...issued, keyPem: await privateKeyToPem(keys.privateKey) };
}

/** notAfter of a PEM certificate (first in the bundle), in ms since the epoch. */
export function certExpiry(certPem: string): number {
  return Date.parse(new NodeX509(certPem).validTo);
}
