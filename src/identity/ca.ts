import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile, access, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { EtzError } from '../core/errors.js';
import { assertTrustDomain } from './spiffe.js';
import {
  generateKeyPair, importSigningKey, privateKeyToPem, randomSerial, signingAlgorithm, splitPemCerts, x509,
  type KeyType,
} from './keys.js';

/**
 * The mesh certificate authority as PEM material. A root signs either the workload certificates
 * directly or an intermediate that does; the trust bundle is what peers trust and may hold more
 * than one root while a root rolls over (old and new side by side).
 */
export interface CaMaterial {
  trustDomain: string;
  keyType: KeyType;
  rootCertPem: string;
  /** Absent when the root key is kept offline and only the intermediate signs. */
  rootKeyPem?: string;
  /** The certificate that signs workload certificates (the intermediate, or the root). */
  signingCertPem: string;
  signingKeyPem: string;
  /** Certificates sent after the leaf: the intermediate when there is one, never the root. */
  chainPem: string;
  /** Every root peers trust (PEM bundle); the current root comes first. */
  trustBundlePem: string;
}

export interface InitCaOptions {
  trustDomain: string;
  keyType?: KeyType;
  intermediate?: boolean;
  /** Root lifetime; default 10 years. The intermediate lives at most a year and never past the root. */
  ttlMs?: number;
  /** Alias for ttlMs, accepted for symmetry with signCsr. */
  ttl?: number;
}

const YEAR = 365 * 86_400_000;
// Backdating absorbs clock skew between the CA and the peers that check the certificate.
export const BACKDATE_MS = 60_000;

export async function initCa(opts: InitCaOptions): Promise<CaMaterial> {
  const trustDomain = assertTrustDomain(opts.trustDomain);
  const keyType = opts.keyType ?? 'ec-p256';
  const ttl = opts.ttlMs ?? opts.ttl ?? 10 * YEAR;
  const now = Date.now();
  const rootKeys = await generateKeyPair(keyType);
  const rootName = `CN=etz root CA ${trustDomain}, O=etz`;
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: rootName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + ttl),
    keys: rootKeys,
    signingAlgorithm: signingAlgorithm(keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, opts.intermediate ? 1 : 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const rootCertPem = root.toString('pem') + '\n';
  const rootKeyPem = await privateKeyToPem(rootKeys.privateKey);
  if (!opts.intermediate) {
    return { trustDomain, keyType, rootCertPem, rootKeyPem, signingCertPem: rootCertPem, signingKeyPem: rootKeyPem, chainPem: '', trustBundlePem: rootCertPem };
  }
  const interKeys = await generateKeyPair(keyType);
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=etz intermediate CA ${trustDomain}, O=etz`,
    issuer: root.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(now + YEAR, root.notAfter.getTime())),
    publicKey: interKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: signingAlgorithm(keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(interKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const interPem = inter.toString('pem') + '\n';
  return {
    trustDomain, keyType, rootCertPem, rootKeyPem,
    signingCertPem: interPem, signingKeyPem: await privateKeyToPem(interKeys.privateKey),
    chainPem: interPem, trustBundlePem: rootCertPem,
  };
}

/**
 * A new CA for the same trust domain whose bundle trusts the new root and the old roots side by
 * side, so that certificates from either keep verifying while workloads renew onto the new one.
 * Pass `dropOld: true` (later) to end the rollover.
 */
export async function rolloverCa(old: CaMaterial, opts: Omit<InitCaOptions, 'trustDomain'> & { dropOld?: boolean } = {}): Promise<CaMaterial> {
  const next = await initCa({ trustDomain: old.trustDomain, keyType: opts.keyType ?? old.keyType, intermediate: opts.intermediate ?? old.chainPem !== '', ...(opts.ttlMs ? { ttlMs: opts.ttlMs } : {}) });
  if (opts.dropOld) return next;
  const seen = new Set<string>();
  const roots = [...splitPemCerts(next.rootCertPem), ...splitPemCerts(old.trustBundlePem)].filter((p) => {
    const fp = new X509Certificate(p).fingerprint256;
    if (seen.has(fp)) return false;
    seen.add(fp);
    return true;
  });
  return { ...next, trustBundlePem: roots.join('') };
}

// File names follow the layout other meshes use for plug-in CAs, so operators recognise them.
export const CA_FILES = {
  meta: 'ca.json',
  rootCert: 'root-cert.pem',
  rootKey: 'root-key.pem',
  signingCert: 'ca-cert.pem',
  signingKey: 'ca-key.pem',
  chain: 'cert-chain.pem',
  bundle: 'trust-bundle.pem',
} as const;

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** Writes the CA to `dir` (keys mode 0600); refuses to overwrite an existing CA unless `force`. */
export async function saveCa(dir: string, ca: CaMaterial, opts: { force?: boolean } = {}): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files: Array<[string, string, number]> = [
    [CA_FILES.meta, JSON.stringify({ trustDomain: ca.trustDomain, keyType: ca.keyType, intermediate: ca.chainPem !== '' }, null, 2) + '\n', 0o644],
    [CA_FILES.rootCert, ca.rootCertPem, 0o644],
    [CA_FILES.signingCert, ca.signingCertPem, 0o644],
    [CA_FILES.signingKey, ca.signingKeyPem, 0o600],
    [CA_FILES.chain, ca.chainPem, 0o644],
    [CA_FILES.bundle, ca.trustBundlePem, 0o644],
  ];
  if (ca.rootKeyPem && ca.rootKeyPem !== ca.signingKeyPem) files.push([CA_FILES.rootKey, ca.rootKeyPem, 0o600]);
  if (!opts.force) {
    const clash = [];
    for (const [name] of files) if (await exists(join(dir, name))) clash.push(name);
    if (clash.length) {
      throw new EtzError('ETZ_ERR_CA_EXISTS', `${dir} already holds a CA (${clash.join(', ')}); pass --force to overwrite it`);
    }
  }
  const written: string[] = [];
  for (const [name, body, mode] of files) {
    const p = join(dir, name);
    // 'w' with mode only applies to new files; chmod covers an overwritten one.
    await writeFile(p, body, { mode });
    await chmod(p, mode);
    written.push(p);
  }
  return written;
}

export async function loadCa(dir: string): Promise<CaMaterial> {
  const read = async (name: string, optional = false): Promise<string | undefined> => {
    try {
      return await readFile(join(dir, name), 'utf8');
    } catch (err) {
      if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new EtzError('ETZ_ERR_CA_INVALID', `cannot read ${join(dir, name)}: ${(err as Error).message}`, { cause: err });
    }
  };
  let meta: { trustDomain?: unknown };
  try {
    meta = JSON.parse((await read(CA_FILES.meta))!);
  } catch (err) {
    if (err instanceof EtzError) throw err;
    throw new EtzError('ETZ_ERR_CA_INVALID', `${join(dir, CA_FILES.meta)}: not valid JSON`);
  }
  const trustDomain = assertTrustDomain(String(meta.trustDomain));
  const rootCertPem = (await read(CA_FILES.rootCert))!;
  const signingCertPem = (await read(CA_FILES.signingCert))!;
  const signingKeyPem = (await read(CA_FILES.signingKey))!;
  const rootKeyPem = (await read(CA_FILES.rootKey, true)) ?? (signingCertPem === rootCertPem ? signingKeyPem : undefined);
  const chainPem = (await read(CA_FILES.chain, true)) ?? '';
  const trustBundlePem = (await read(CA_FILES.bundle, true)) ?? rootCertPem;
  let keyType: KeyType;
  try {
    keyType = (await importSigningKey(signingKeyPem)).keyType;
    const cert = new X509Certificate(signingCertPem);
    if (!cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(signingKeyPem))) {
      throw new Error(`${CA_FILES.signingKey} does not match ${CA_FILES.signingCert}`);
    }
  } catch (err) {
    if (err instanceof EtzError) throw err;
    throw new EtzError('ETZ_ERR_CA_INVALID', `${dir}: ${(err as Error).message}`, { cause: err });
  }
  return { trustDomain, keyType, rootCertPem, ...(rootKeyPem ? { rootKeyPem } : {}), signingCertPem, signingKeyPem, chainPem, trustBundlePem };
}
