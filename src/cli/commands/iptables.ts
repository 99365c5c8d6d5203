import { UsageError, type EtzError } from '../../core/errors.js';
import { parseCommandArgs, type Command } from '../run.js';
import {
  describePlan,
  familiesFor,
  installInterception,
  parseCidrList,
  parsePortList,
  readExisting,
  removeInterception,
  resolveOptions,
  DEFAULT_OPTIONS,
  type Binaries,
  type Family,
  type Ipv6Mode,
} from '../../sidecar/iptables/index.js';

const USAGE = `Usage: etz iptables [options]

Install NAT rules in the current network namespace that hand the pod's TCP traffic to the
sidecar: inbound to the inbound listener, outbound to the outbound listener, except the
sidecar's own traffic (owner match on its uid/gid), loopback, and what is excluded.
Running it twice is harmless: earlier etz rules are replaced. Needs root or CAP_NET_ADMIN.

Options:
  --dry-run                        Print the exact commands and change nothing
  --cleanup                        Remove etz's rules (harmless when none are installed)
  --inbound-port PORT              Sidecar inbound listener (default ${DEFAULT_OPTIONS.inboundPort})
  --outbound-port PORT             Sidecar outbound listener (default ${DEFAULT_OPTIONS.outboundPort})
  --admin-port PORT                Sidecar admin port, never intercepted (default ${DEFAULT_OPTIONS.adminPort})
  --proxy-uid UID                  uid the sidecar runs as; its traffic is not redirected (default ${DEFAULT_OPTIONS.proxyUid})
  --proxy-gid GID|none             gid the sidecar runs as, also exempted (default ${DEFAULT_OPTIONS.proxyGid})
  --inbound-ports LIST|*           Inbound ports to intercept (default *: all)
  --exclude-inbound-ports LIST     Inbound ports left alone, e.g. 22 (sidecar ports always are)
  --exclude-outbound-ports LIST    Outbound destination ports left alone
  --exclude-outbound-cidrs LIST    Outbound destinations left alone, e.g. 169.254.169.254/32
  --include-outbound-cidrs LIST    Intercept only these outbound destinations (default: all)
  --ipv6 auto|on|off               Also program ip6tables (auto: when the namespace has a global
                                   IPv6 address; default auto)
  --iptables PATH                  iptables command (default iptables)
  --ip6tables PATH                 ip6tables command (default ip6tables)

LIST is comma-separated. Exit status: 0 done, 1 iptables refused or failed, 2 usage error.`;

const OPTIONS = {
  'dry-run': { type: 'boolean' },
  cleanup: { type: 'boolean' },
  'inbound-port': { type: 'string' },
  'outbound-port': { type: 'string' },
  'admin-port': { type: 'string' },
  'proxy-uid': { type: 'string' },
  'proxy-gid': { type: 'string' },
  'inbound-ports': { type: 'string' },
  'exclude-inbound-ports': { type: 'string' },
  'exclude-outbound-ports': { type: 'string' },
  'exclude-outbound-cidrs': { type: 'string' },
  'include-outbound-cidrs': { type: 'string' },
  ipv6: { type: 'string' },
  iptables: { type: 'string' },
  ip6tables: { type: 'string' },
} as const;

function int(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`--${what}: '${text}' is not a number`);
  return Number(text);
}

function single(text: string | undefined, what: string, fallback: number): number {
  if (text === undefined) return fallback;
  const list = parsePortList(text, `--${what}`);
  if (list === '*' || list.length !== 1) throw new UsageError(`--${what}: expected one port, got '${text}'`);
  return list[0]!;
}

export const command: Command = {
  summary: 'Install, print or remove the iptables rules that redirect pod traffic to the sidecar',
  async run(argv) {
    const parsed = parseCommandArgs(argv, OPTIONS, USAGE);
    if (!parsed) return 0;
    const v = parsed.values;
    const mode = (v.ipv6 ?? 'auto') as Ipv6Mode;
    if (!['auto', 'on', 'off'].includes(mode)) throw new UsageError(`--ipv6: '${v.ipv6}' must be auto, on or off`);
    const gid = v['proxy-gid'];
    const opts = resolveOptions({
      inboundPort: single(v['inbound-port'], 'inbound-port', DEFAULT_OPTIONS.inboundPort),
      outboundPort: single(v['outbound-port'], 'outbound-port', DEFAULT_OPTIONS.outboundPort),
      adminPort: single(v['admin-port'], 'admin-port', DEFAULT_OPTIONS.adminPort),
      proxyUid: int(v['proxy-uid'], 'proxy-uid', DEFAULT_OPTIONS.proxyUid),
      proxyGid: gid === 'none' ? null : int(gid, 'proxy-gid', DEFAULT_OPTIONS.proxyGid ?? 0),
      inboundPorts: parsePortList(v['inbound-ports'] ?? '*', '--inbound-ports', true),
      excludeInboundPorts: parsePortList(v['exclude-inbound-ports'] ?? '', '--exclude-inbound-ports') as number[],
      excludeOutboundPorts: parsePortList(v['exclude-outbound-ports'] ?? '', '--exclude-outbound-ports') as number[],
      excludeOutboundCidrs: parseCidrList(v['exclude-outbound-cidrs'] ?? '', '--exclude-outbound-cidrs'),
      includeOutboundCidrs: parseCidrList(v['include-outbound-cidrs'] ?? '', '--include-outbound-cidrs'),
    });
    const binaries: Binaries = { ipv4: v.iptables ?? 'iptables', ipv6: v.ip6tables ?? 'ip6tables' };
    const families: Family[] = await familiesFor(mode);

    if (v['dry-run']) {
      process.stdout.write((await describePlan(opts, families, Boolean(v.cleanup), binaries)).join('\n') + '\n');
      return 0;
    }
    if (v.cleanup) {
      // IPv6 rules may be left from a time the pod had an IPv6 address: in auto mode clean both,
      // unless ip6tables cannot even read its nat table (not installed, IPv6 off in the kernel):
      // then there is nothing to clean. A permission problem is still an error.
      let r = await removeInterception(['ipv4'], binaries);
      let ipv6 = mode === 'on';
      if (mode === 'auto') {
        ipv6 = await readExisting(binaries.ipv6).then(
          () => true,
          (err: EtzError) => {
            if (err.code === 'ETZ_ERR_IPTABLES_PERMISSION') throw err;
            return false;
          },
        );
      }
      if (ipv6) {
        const r6 = await removeInterception(['ipv6'], binaries);
        r = { families: ['ipv4', 'ipv6'], count: r.count + r6.count };
      }
      process.stdout.write(`etz: interception rules removed (${r.families.join(', ')}; ${r.count} removed)\n`);
      return 0;
    }
    const r = await installInterception(opts, families, binaries);
    process.stdout.write(
      `etz: interception installed (${r.families.join(', ')}; ${r.count} rules): inbound → :${opts.inboundPort}, ` +
        `outbound → :${opts.outboundPort}, proxy uid ${opts.proxyUid}${opts.proxyGid === null ? '' : ` gid ${opts.proxyGid}`} exempt\n`,
    );
    return 0;
  },
};
