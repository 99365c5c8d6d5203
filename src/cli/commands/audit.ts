import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags, table } from '../../manager/api-client.js';
import type { AuditEntry } from '../../manager/audit.js';

const USAGE = `Usage: etz audit [--limit N] [--before SEQ] [--action PREFIX]

Print the manager's audit log, newest first: who did what, when, and whether it was allowed
(refused API calls and control-stream connections included). Page back with --before.

${CLIENT_USAGE}`;

export const command: Command = {
  summary: 'Show the zone manager audit log',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { ...CLIENT_OPTIONS, limit: { type: 'string', short: 'n' }, before: { type: 'string' }, action: { type: 'string' } }, USAGE, true);
    if (parsed === null) return 0;
    if (parsed.positionals.length) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    const v = parsed.values as Record<string, unknown>;
    const q = new URLSearchParams();
    for (const k of ['limit', 'before', 'action']) {
      if (v[k] === undefined) continue;
      if (k !== 'action' && !/^\d+$/.test(String(v[k]))) throw new UsageError(`--${k} wants a number, got '${v[k]}'`);
      q.set(k, String(v[k]));
    }
    const client = await clientFromFlags(v);
    const res = await client.call<{ entries: AuditEntry[]; next?: number }>('GET', `/v1/audit?${q}`);
    if (v.json) {
      process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(table(['SEQ', 'TIME', 'ACTOR', 'ACTION', 'OUTCOME', 'TARGET', 'REASON'], res.entries.map((e) => [e.seq, e.ts, e.actor, e.action, e.outcome, e.target, e.reason])));
    if (res.next) process.stderr.write(`more: etz audit --before ${res.next}\n`);
    return 0;
  },
};
