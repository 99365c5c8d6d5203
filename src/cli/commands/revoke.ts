import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags, table } from '../../manager/api-client.js';

const USAGE = `Usage: etz revoke INSTANCE --reason TEXT
       etz revoke --list

Evict a sidecar's identity now instead of when its certificate expires: the manager closes its
control stream and refuses its reconnection, renewal and re-enrollment, and every sidecar is
sent the serials of all live certificates issued to the instance and refuses mTLS with them
(both directions; open connections are closed). Audited with the operator and the reason.
Entries drop out of the list when the revoked certificates expire.

Options:
  -r, --reason TEXT      why (required; recorded in the audit log)
  -l, --list             list revoked instances and the certificates still listed

${CLIENT_USAGE}`;

interface Revoked { revoked: string; certificates: Array<{ serial: string; notAfter: string }>; streamsClosed: number; configVersion: number }
interface RevocationItem { instance: string; service: string; revokedAt: string; actor: string; reason: string; certs: Array<{ serial: string; notAfter: string }> }

export const command: Command = {
  summary: "Revoke a sidecar's identity (evict a compromised workload) or list revocations",
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      ...CLIENT_OPTIONS,
      reason: { type: 'string', short: 'r' },
      list: { type: 'boolean', short: 'l' },
    }, USAGE, true);
    if (parsed === null) return 0;
    const v = parsed.values as Record<string, unknown>;
    const args = parsed.positionals;
    if (v.list) {
      if (args.length) throw new UsageError(`--list takes no instance, got '${args[0]}'`);
      const client = await clientFromFlags(v);
      const res = await client.call<{ items: RevocationItem[] }>('GET', '/v1/revocations');
      if (v.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
      else {
        process.stdout.write(table(['INSTANCE', 'SERVICE', 'REVOKED AT', 'BY', 'CERTS', 'LISTED UNTIL', 'REASON'], res.items.map((r) => [
          r.instance, r.service, r.revokedAt, r.actor, r.certs.length, r.certs.map((c) => c.notAfter).sort().at(-1) ?? '-', r.reason,
        ])));
      }
      return 0;
    }
    if (args.length !== 1) throw new UsageError(args.length ? `revoke wants one instance, got ${args.length}` : 'missing INSTANCE (or --list)');
    if (typeof v.reason !== 'string' || v.reason.trim() === '') throw new UsageError('--reason is required: say why the identity is revoked');
    const client = await clientFromFlags(v);
    const res = await client.call<Revoked>('DELETE', `/v1/sidecars/${encodeURIComponent(args[0]!)}`, { reason: v.reason });
    if (v.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    else {
      process.stdout.write(`revoked ${res.revoked}: ${res.certificates.length} certificate(s) listed, ${res.streamsClosed} control stream(s) closed, config version ${res.configVersion}\n`);
      for (const c of res.certificates) process.stdout.write(`  serial ${c.serial} until ${c.notAfter}\n`);
    }
    return 0;
  },
};
