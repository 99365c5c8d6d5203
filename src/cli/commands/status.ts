import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_USAGE, clientFromFlags, table } from '../../manager/api-client.js';

const USAGE = `Usage: etz status [--sidecars]

Show the zone manager's state: config version, sidecars by ACK state, zones, the latest
rollout; with --sidecars, every enrolled sidecar with its config version and last contact.

${CLIENT_USAGE}`;

interface Status {
  version: string;
  uptimeSeconds: number;
  configVersion: number;
  sidecars: { enrolled: number; connected: number; acked: number; nacked: number; pending: number };
  zones: number;
  policies: number;
  latestRollout: null | { version: number; reason: string; inForce: boolean; counts: { acked: number; nacked: number; pending: number } };
}

export const command: Command = {
  summary: 'Show the zone manager, its sidecars and rollout state',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { ...CLIENT_OPTIONS, sidecars: { type: 'boolean' } }, USAGE, true);
    if (parsed === null) return 0;
    if (parsed.positionals.length) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    const v = parsed.values as Record<string, unknown>;
    const client = await clientFromFlags(v);
    const s = await client.call<Status>('GET', '/v1/status');
    const sc = v.sidecars ? await client.call<{ items: Array<Record<string, unknown>> }>('GET', '/v1/sidecars') : undefined;
    if (v.json) {
      process.stdout.write(`${JSON.stringify(sc ? { ...s, sidecarList: sc.items } : s, null, 2)}\n`);
      return 0;
    }
    const r = s.latestRollout;
    process.stdout.write([
      `manager      ${client.url}  (etz ${s.version}, up ${s.uptimeSeconds}s)`,
      `config       version ${s.configVersion}`,
      `sidecars     ${s.sidecars.connected}/${s.sidecars.enrolled} connected: ${s.sidecars.acked} acked, ${s.sidecars.nacked} nacked, ${s.sidecars.pending} pending`,
      `zones        ${s.zones}`,
      `policies     ${s.policies}`,
      `last change  ${r ? `v${r.version} ${r.reason}: ${r.inForce ? 'in force' : 'rolling out'} (${r.counts.acked} acked, ${r.counts.nacked} nacked, ${r.counts.pending} pending)` : '-'}`,
      '',
    ].join('\n'));
    if (sc) {
      process.stdout.write('\n' + table(['INSTANCE', 'SERVICE', 'VERSION', 'STATE', 'CONFIG', 'LAST SEEN'], sc.items.map((x) => [x.instance as string, x.service as string, x.version as string, x.state as string, x.configVersion as number, x.lastSeen as string])));
    }
    return 0;
  },
};
