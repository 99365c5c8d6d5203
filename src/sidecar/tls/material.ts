import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { EtzError } from '../../core/errors.js';
import { peerIdentityFromCert } from '../../identity/verify.js';
import { splitPemCerts } from '../../identity/keys.js';
import type { TlsMaterial } from './options.js';

/** Checks PEM material and derives its identity and validity window. */
export function tlsMaterialFromPem(certChainPem: string, keyPem: string, trustBundlePem: string, source = 'TLS material'): TlsMaterial {
  try {
    const certs = splitPemCerts(certChainPem);
    if (certs.length === 0) throw new Error('no certificate in the chain');
    if (splitPemCerts(trustBundlePem).length === 0) throw new Error('no certificate in the trust bundle');
    const leaf = new X509Certificate(certs[0]!);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the key does not match the certificate');
    const id = peerIdentityFromCert(leaf);
    return { spiffeId: id.spiffeId, certChainPem, keyPem, trustBundlePem, notAfter: Date.parse(leaf.validTo), notBefore: Date.parse(leaf.validFrom) };
  } catch (err) {
    throw new EtzError('ETZ_ERR_TLS_MATERIAL', `${source}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads cert/key/CA files (the static setup written by `etz ca issue`). */
export async function loadTlsMaterialFiles(files: { certFile: string; keyFile: string; caFile: string }): Promise<TlsMaterial> {
  const read = (p: string) => readFile(p, 'utf8').catch((err: Error) => {
    throw new EtzError('ETZ_ERR_TLS_MATERIAL', `cannot read ${p}: ${err.message}`, { cause: err });
  });
  const [cert, key, ca] = await Promise.all([read(files.certFile), read(files.keyFile), read(files.caFile)]);
  return tlsMaterialFromPem(cert, key, ca, files.certFile);
}

/**
 * Re-reads static cert/key/CA files when they change (an operator or cert-manager replacing them)
 * and puts the new material in force without a restart. Polls mtimes off the request path; a
 * half-written or mismatched set is skipped (logged by the caller via onError) and retried.
 */
export function watchTlsMaterialFiles(
  files: { certFile: string; keyFile: string; caFile: string },
  onChange: (m: TlsMaterial) => void,
  opts: { intervalMs?: number; onError?: (err: Error) => void } = {},
): { stop(): void } {
  const paths = [files.certFile, files.keyFile, files.caFile];
  let last = '';
  let busy = false;
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const stamp = (await Promise.all(paths.map((p) => stat(p).then((s) => `${s.mtimeMs}:${s.size}`, () => 'missing')))).join('|');
      if (last === '') last = stamp;
      else if (stamp !== last) {
        const m = await loadTlsMaterialFiles(files);
        last = stamp;
        onChange(m);
      }
    } catch (err) {
      opts.onError?.(err as Error);
    } finally {
      busy = false;
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), opts.intervalMs ?? 10_000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
