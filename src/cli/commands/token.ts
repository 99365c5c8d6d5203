import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags, table } from '../../manager/api-client.js';
import type { PublicToken } from '../../manager/auth.js';

const USAGE = `Usage: etz manager token create [--scope service=NAME[,namespace=NS]] [--ttl 1h] [--uses N] [--description TEXT]
       etz manager token ls
       etz manager token revoke ID

Bootstrap tokens let a sidecar enroll once (or --uses times) and receive its SPIFFE
certificate; a scoped token enrolls only the named service. The token is printed once.

${CLIENT_USAGE}`;

export const command: Command = {
  summary: 'Create, list or revoke sidecar bootstrap tokens',
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      ...CLIENT_OPTIONS,
      scope: { type: 'string' },
      ttl: { type: 'string' },
      uses: { type: 'string' },
      description: { type: 'string' },
    }, USAGE, true);
    if (parsed === null) return 0;
    const [sub, ...rest] = parsed.positionals;
    const v = parsed.values as Record<string, unknown>;
    if (sub === 'create') {
      if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
      const scope: Record<string, string> = {};
      if (v.scope) {
        for (const part of String(v.scope).split(',')) {
          const m = /^(service|namespace)=([A-Za-z0-9._-]+)$/.exec(part.trim());
          if (!m) throw new UsageError(`--scope wants service=NAME or namespace=NS, got '${part}'`);
          scope[m[1]!] = m[2]!;
        }
      }
      let uses: number | undefined;
      if (v.uses !== undefined) {
        uses = Number(v.uses);
        if (!Number.isInteger(uses) || uses < 1) throw new UsageError(`--uses wants a positive integer, got '${v.uses}'`);
      }
      const client = await clientFromFlags(v);
      const res = await client.call<{ token: string; record: PublicToken }>('POST', '/v1/tokens', {
        ...(Object.keys(scope).length ? { scope } : {}),
        ...(v.ttl ? { ttl: v.ttl } : {}),
        ...(uses ? { uses } : {}),
        ...(v.description ? { description: v.description } : {}),
      });
      if (v.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
      else {
        process.stdout.write(`${res.token}\n`);
        process.stderr.write(`token ${res.record.id}: ${res.record.usesLeft} use(s), expires ${new Date(res.record.expiresAt).toISOString()}${res.record.scope.service ? `, service ${res.record.scope.service}` : ''}\n`);
      }
      return 0;
    }
    if (sub === 'ls' || sub === 'list') {
      const client = await clientFromFlags(v);
      const res = await client.call<{ items: PublicToken[] }>('GET', '/v1/tokens');
      if (v.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
      else process.stdout.write(table(['ID', 'SCOPE', 'USES LEFT', 'EXPIRES', 'CREATED BY'], res.items.map((t) => [t.id, Object.entries(t.scope).map(([k, x]) => `${k}=${x}`).join(',') || '*', t.usesLeft, new Date(t.expiresAt).toISOString(), t.createdBy])));
      return 0;
    }
    if (sub === 'revoke') {
      if (rest.length !== 1) throw new UsageError('revoke wants one token ID');
      const client = await clientFromFlags(v);
      await client.call('DELETE', `/v1/tokens/${encodeURIComponent(rest[0]!)}`);
      process.stdout.write(`revoked ${rest[0]}\n`);
      return 0;
    }
    throw new UsageError(sub ? `unknown token command '${sub}'` : 'missing token command (create, ls, revoke)');
  },
};
