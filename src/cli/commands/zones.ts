import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags, table } from '../../manager/api-client.js';
import type { Zone, ZoneMember } from '../../manager/zone-backend.js';

const USAGE = `Usage: etz zones ls
       etz zones create --type containment|isolation|performance --member SERVICE[:VERSION[:INSTANCE]]…
                        --reason TEXT [--ttl 30m] [--pin]
       etz zones dissolve ID --reason TEXT
       etz zones pin ID | unpin ID

List the zones in force, or create and dissolve them by hand (audited). A pinned zone is left
alone by automation and TTL expiry until unpinned.

${CLIENT_USAGE}`;

function parseMember(s: string): ZoneMember {
  const [service, version, instance] = s.split(':');
  if (!service) throw new UsageError(`--member wants SERVICE[:VERSION[:INSTANCE]], got '${s}'`);
  return { service, ...(version ? { version } : {}), ...(instance ? { instance } : {}) };
}

export const command: Command = {
  summary: 'List, create, dissolve or pin trust zones',
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      ...CLIENT_OPTIONS,
      type: { type: 'string', short: 't' },
      member: { type: 'string', short: 'm', multiple: true },
      reason: { type: 'string', short: 'r' },
      ttl: { type: 'string' },
      pin: { type: 'boolean' },
    }, USAGE, true);
    if (parsed === null) return 0;
    const [sub, ...rest] = parsed.positionals;
    const v = parsed.values as Record<string, unknown>;
    const out = (x: unknown) => process.stdout.write(`${JSON.stringify(x, null, 2)}\n`);
    switch (sub) {
      case undefined:
      case 'ls':
      case 'list': {
        const client = await clientFromFlags(v);
        const res = await client.call<{ items: Zone[] }>('GET', '/v1/zones');
        if (v.json) out(res);
        else process.stdout.write(table(['ID', 'TYPE', 'MEMBERS', 'PINNED', 'EXPIRES', 'REASON'], res.items.map((z) => [
          z.id, z.type, z.members.map((m) => [m.service, m.version, m.instance].filter(Boolean).join(':')).join(','), z.pinned ? 'yes' : 'no',
          z.expiresAt ? new Date(z.expiresAt).toISOString() : '-', z.reason,
        ])));
        return 0;
      }
      case 'create': {
        if (!v.type) throw new UsageError('create needs --type');
        const members = ((v.member as string[] | undefined) ?? []).map(parseMember);
        if (!members.length) throw new UsageError('create needs at least one --member');
        if (!v.reason) throw new UsageError('create needs --reason');
        const client = await clientFromFlags(v);
        const z = await client.call<Zone>('POST', '/v1/zones', { type: v.type, members, reason: v.reason, ...(v.ttl ? { ttl: v.ttl } : {}), ...(v.pin ? { pinned: true } : {}) });
        if (v.json) out(z);
        else process.stdout.write(`${z.id}\n`);
        return 0;
      }
      case 'dissolve': {
        if (rest.length !== 1) throw new UsageError('dissolve wants one zone ID');
        if (!v.reason) throw new UsageError('dissolve needs --reason');
        const client = await clientFromFlags(v);
        await client.call('POST', `/v1/zones/${encodeURIComponent(rest[0]!)}/dissolve`, { reason: v.reason });
        process.stdout.write(`dissolved ${rest[0]}\n`);
        return 0;
      }
      case 'pin':
      case 'unpin': {
        if (rest.length !== 1) throw new UsageError(`${sub} wants one zone ID`);
        const client = await clientFromFlags(v);
        await client.call('POST', `/v1/zones/${encodeURIComponent(rest[0]!)}/pin`, { pinned: sub === 'pin' });
        process.stdout.write(`${sub}ned ${rest[0]}\n`);
        return 0;
      }
      default:
        throw new UsageError(`unknown zones command '${sub}' (ls, create, dissolve, pin, unpin)`);
    }
  },
};
