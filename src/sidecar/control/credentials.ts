import { request } from 'node:https';
import { open, readFile, rename, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EtzError } from '../../core/errors.js';
import { certExpiry } from '../../identity/index.js';
import { generateKeyPair, privateKeyToPem, signingAlgorithm, x509 } from '../../identity/keys.js';
import { ENROLL_PATH, type EnrollResponse, type NodeInfo } from '../../protocol/messages.js';
import { checkManagerIdentity } from '../../protocol/server-identity.js';

/**
 * The sidecar's identity material in its data dir: key (0600), certificate chain and the trust
 * bundle, written atomically so a crash mid-renewal leaves the previous pair intact.
 */

export interface Credentials {
  keyPem: string;
  /** Leaf followed by intermediates. */
  certPem: string;
  trustBundlePem: string;
  spiffeId: string;
  issuedAt: number;
  expiresAt: number;
}

const FILES = { key: 'key.pem', cert: 'cert-chain.pem', bundle: 'trust-bundle.pem', meta: 'identity.json' };

export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

export async function loadCredentials(dataDir: string): Promise<Credentials | undefined> {
  try {
    const [keyPem, certPem, trustBundlePem, meta] = await Promise.all(
      [FILES.key, FILES.cert, FILES.bundle, FILES.meta].map((f) => readFile(join(dataDir, f), 'utf8')),
    );
    const m = JSON.parse(meta!) as { spiffeId: string; issuedAt: number };
    return { keyPem: keyPem!, certPem: certPem!, trustBundlePem: trustBundlePem!, spiffeId: m.spiffeId, issuedAt: m.issuedAt, expiresAt: certExpiry(certPem!) };
  } catch {
    return undefined;
  }
}

export async function saveCredentials(dataDir: string, c: Credentials): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // Key first, meta last: identity.json present means the set is complete.
  await writeFileAtomic(join(dataDir, FILES.key), c.keyPem, 0o600);
  await writeFileAtomic(join(dataDir, FILES.cert), c.certPem, 0o644);
  await writeFileAtomic(join(dataDir, FILES.bundle), c.trustBundlePem, 0o644);
  await writeFileAtomic(join(dataDir, FILES.meta), JSON.stringify({ spiffeId: c.spiffeId, issuedAt: c.issuedAt }) + '\n', 0o644);
}

export function credentialPaths(dataDir: string): { key: string; cert: string; bundle: string } {
  return { key: join(dataDir, FILES.key), cert: join(dataDir, FILES.cert), bundle: join(dataDir, FILES.bundle) };
}

/**
 * A new key and a CSR without a SAN: the manager decides the identity from the bootstrap token
 * and the enrollment record, so the sidecar does not need to know its namespace.
 */
export async function newKeyAndCsr(): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await generateKeyPair('ec-p256');
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'O=etz', keys, signingAlgorithm: signingAlgorithm('ec-p256') });
  return { keyPem: await privateKeyToPem(keys.privateKey), csrPem: csr.toString('pem') + '\n' };
}

/** POST /v1/enroll with the bootstrap token. */
export async function enroll(opts: { url: string; caPem: string; token: string; node: NodeInfo; timeoutMs?: number }): Promise<Credentials> {
  const { keyPem, csrPem } = await newKeyAndCsr();
  const body = Buffer.from(JSON.stringify({ csr: csrPem, service: opts.node.service, instance: opts.node.instance, ...(opts.node.version ? { version: opts.node.version } : {}) }));
  const res = await new Promise<{ status: number; json: unknown }>((resolve, reject) => {
    const req = request(new URL(ENROLL_PATH, opts.url), {
      method: 'POST',
      ca: opts.caPem,
      checkServerIdentity: checkManagerIdentity(),
      headers: { authorization: `Bearer ${opts.token}`, 'content-type': 'application/json', 'content-length': body.length },
      timeout: opts.timeoutMs ?? 10_000,
    }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          json = undefined;
        }
        resolve({ status: r.statusCode ?? 0, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error('enrollment timed out')));
    req.on('error', (err) => reject(new EtzError('ETZ_ERR_MANAGER_UNREACHABLE', `cannot reach the manager at ${opts.url}: ${err.message}`, { cause: err })));
    req.end(body);
  });
  if (res.status !== 200) {
    const e = res.json as { error?: string; reason?: string } | undefined;
    throw new EtzError('ETZ_ERR_ENROLL_FAILED', `enrollment refused (${res.status} ${e?.error ?? ''}): ${e?.reason ?? 'no reason given'}`, { details: { status: res.status } });
  }
  const r = res.json as EnrollResponse;
  return {
    keyPem,
    certPem: r.cert + r.chain.join(''),
    trustBundlePem: r.trustBundle.join(''),
    spiffeId: r.spiffeId,
    issuedAt: Date.now(),
    expiresAt: r.expiresAt,
  };
}
