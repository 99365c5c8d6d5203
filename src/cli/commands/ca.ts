import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { EtzError, UsageError } from '../../core/errors.js';
import {
  initCa, saveCa, loadCa, issueWorkloadCert, signCsr, parseSpiffeId, parseDuration, KEY_TYPES, type KeyType,
} from '../../identity/index.js';

const USAGE = `Usage: etz ca <init|issue|sign> [options]

  etz ca init --trust-domain DOMAIN [--out DIR] [--key-type ec-p256|rsa-3072] [--intermediate]
              [--ttl 10y] [--force]
      Create the mesh root CA (and an intermediate that signs workload certificates).
      Keys are written with mode 0600; an existing CA is never overwritten without --force.

  etz ca issue --spiffe spiffe://DOMAIN/ns/NS/sa/SA [--ttl 24h] [--ca DIR] [--out DIR]
              [--key-type ec-p256|rsa-3072] [--force]
      Issue a workload key and certificate for static setups: writes cert.pem (leaf and
      intermediates), key.pem (0600) and ca.pem (trust bundle). Default --out: DIR/workloads/NS/SA.

  etz ca sign --csr FILE [--spiffe ID] [--ttl 24h] [--ca DIR] [--out FILE]
      Sign a PKCS#10 CSR whose only URI SAN is a SPIFFE ID in the CA's trust domain
      (or issue for --spiffe, which the CSR's own SAN must then match). Output: PEM chain.

Options:
  --ca DIR, --out DIR   CA directory (default: certs)
  -h, --help            show this help`;

const OPTIONS = {
  'trust-domain': { type: 'string' },
  out: { type: 'string', short: 'o' },
  ca: { type: 'string' },
  'key-type': { type: 'string' },
  intermediate: { type: 'boolean' },
  force: { type: 'boolean' },
  spiffe: { type: 'string' },
  ttl: { type: 'string' },
  csr: { type: 'string' },
} as const;

function keyTypeOf(v: string | undefined): KeyType | undefined {
  if (v === undefined) return undefined;
  if (!(KEY_TYPES as readonly string[]).includes(v)) throw new UsageError(`--key-type must be one of ${KEY_TYPES.join(', ')}, not '${v}'`);
  return v as KeyType;
}

function ttlOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseDuration(v, '--ttl');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function writeFiles(dir: string, files: Array<[string, string, number]>, force: boolean | undefined): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!force) {
    for (const [name] of files) {
      const p = join(dir, name);
      const there = await access(p).then(() => true, () => false);
      if (there) throw new EtzError('ETZ_ERR_CA_EXISTS', `${p} already exists; pass --force to overwrite it`);
    }
  }
  for (const [name, body, mode] of files) {
    await writeFile(join(dir, name), body, { mode });
    await chmod(join(dir, name), mode);
  }
}

function spiffeArg(v: string) {
  try {
    return parseSpiffeId(v);
  } catch (err) {
    throw new UsageError(`--spiffe: ${(err as Error).message}`);
  }
}

export const command: Command = {
  summary: 'Create the mesh CA and issue or sign workload certificates',
  async run(argv) {
    const parsed = parseCommandArgs(argv, OPTIONS, USAGE, true);
    if (!parsed) return 0;
    const v = parsed.values;
    const [sub, ...extra] = parsed.positionals;
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    switch (sub) {
      case 'init': {
        if (!v['trust-domain']) throw new UsageError('ca init needs --trust-domain');
        const dir = v.out ?? v.ca ?? 'certs';
        const ttlMs = ttlOf(v.ttl);
        const keyType = keyTypeOf(v['key-type']);
        const ca = await initCa({ trustDomain: v['trust-domain'], intermediate: !!v.intermediate, ...(keyType ? { keyType } : {}), ...(ttlMs ? { ttlMs } : {}) });
        const written = await saveCa(dir, ca, { force: !!v.force });
        process.stdout.write(`created ${ca.keyType} CA for trust domain ${ca.trustDomain}${v.intermediate ? ' (root + intermediate)' : ''} in ${dir}\n${written.map((f) => `  ${f}\n`).join('')}`);
        return 0;
      }
      case 'issue': {
        if (!v.spiffe) throw new UsageError('ca issue needs --spiffe spiffe://DOMAIN/ns/NS/sa/SA');
        const id = spiffeArg(v.spiffe);
        const ttlMs = ttlOf(v.ttl);
        const keyType = keyTypeOf(v['key-type']);
        const caDir = v.ca ?? 'certs';
        const ca = await loadCa(caDir);
        const issued = await issueWorkloadCert(ca, id.spiffeId, { ...(ttlMs ? { ttlMs } : {}), ...(keyType ? { keyType } : {}) });
        const out = v.out ?? join(caDir, 'workloads', id.namespace, id.serviceAccount);
        await writeFiles(out, [['cert.pem', issued.certChainPem, 0o644], ['key.pem', issued.keyPem, 0o600], ['ca.pem', issued.trustBundlePem, 0o644]], v.force);
        process.stdout.write(`issued ${id.spiffeId} (serial ${issued.serial}, valid until ${issued.notAfter.toISOString()}) in ${out}\n`);
        return 0;
      }
      case 'sign': {
        if (!v.csr) throw new UsageError('ca sign needs --csr FILE');
        const ttlMs = ttlOf(v.ttl);
        const ca = await loadCa(v.ca ?? 'certs');
        const csrPem = await readFile(v.csr, 'utf8').catch((err: Error) => {
          throw new UsageError(`cannot read --csr ${v.csr}: ${err.message}`);
        });
        const issued = await signCsr(ca, csrPem, { ...(v.spiffe ? { spiffeId: v.spiffe } : {}), ...(ttlMs ? { ttlMs } : {}) });
        if (v.out && v.out !== '-') await writeFile(v.out, issued.certChainPem, { mode: 0o644 });
        else process.stdout.write(issued.certChainPem);
        return 0;
      }
      case undefined:
        throw new UsageError('missing subcommand: init, issue or sign');
      default:
        throw new UsageError(`unknown subcommand 'ca ${sub}'`);
    }
  },
};
