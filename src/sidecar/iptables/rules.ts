import { isIP } from 'node:net';
import { UsageError } from '../../core/errors.js';

/**
 * Rule generation for transparent interception, the shape of istio-init: NAT only, four chains,
 * two jumps from the built-in chains. Pure functions: the same options always give the same
 * argv lists, which is what --dry-run prints and what apply runs.
 *
 *   PREROUTING -p tcp → ETZ_INBOUND → (excluded ports RETURN) → ETZ_IN_REDIRECT → REDIRECT :inbound
 *   OUTPUT     -p tcp → ETZ_OUTPUT  → (proxy uid/gid, loopback, excluded CIDRs/ports RETURN)
 *                                    → ETZ_REDIRECT → REDIRECT :outbound
 */

export const CHAINS = ['ETZ_INBOUND', 'ETZ_IN_REDIRECT', 'ETZ_OUTPUT', 'ETZ_REDIRECT'] as const;

export type Family = 'ipv4' | 'ipv6';

export interface InterceptOptions {
  /** Port of the sidecar's inbound listener (REDIRECT target for traffic to the pod). */
  inboundPort: number;
  /** Port of the sidecar's outbound listener (REDIRECT target for the application's calls). */
  outboundPort: number;
  /** Sidecar admin port; never intercepted so probes reach it. */
  adminPort: number;
  /** uid the sidecar runs as; its own connections are never redirected (no loop). */
  proxyUid: number;
  /** gid the sidecar runs as, also exempted; null to match on uid only. */
  proxyGid: number | null;
  /** Inbound destination ports to intercept; '*' = all TCP except the excluded ones. */
  inboundPorts: '*' | number[];
  /** Inbound destination ports left alone (e.g. 22). The sidecar's own ports are always added. */
  excludeInboundPorts: number[];
  /** Outbound destination ports left alone. */
  excludeOutboundPorts: number[];
  /** Outbound destinations left alone (CIDR or address), per family by syntax. */
  excludeOutboundCidrs: string[];
  /** Intercept only these outbound destinations; empty = all (minus exclusions). */
  includeOutboundCidrs: string[];
}

export const DEFAULT_OPTIONS: Readonly<InterceptOptions> = Object.freeze({
  inboundPort: 15006,
  outboundPort: 15001,
  adminPort: 15000,
  proxyUid: 1337,
  proxyGid: 1337,
  inboundPorts: '*',
  excludeInboundPorts: [],
  excludeOutboundPorts: [],
  excludeOutboundCidrs: [],
  includeOutboundCidrs: [],
});

/** One iptables invocation, without the binary name: e.g. ['-w', '-t', 'nat', '-N', 'ETZ_INBOUND']. */
export type Rule = string[];

export interface RulePlan {
  family: Family;
  /** Commands that install the rules (run after cleanup, so a second run changes nothing). */
  setup: Rule[];
  /** Commands that remove them; each may fail harmlessly when the rule/chain is absent. */
  cleanup: Rule[];
}

export function checkPort(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new UsageError(`${what}: '${value}' is not a port (1-65535)`);
  }
  return value;
}

/** Parse "a,b,c" of ports; '*' allowed when `star`. Empty string = []. */
export function parsePortList(text: string, what: string, star = false): number[] | '*' {
  const t = text.trim();
  if (t === '*') {
    if (star) return '*';
    throw new UsageError(`${what}: '*' is not allowed here`);
  }
  if (t === '') return [];
  return [...new Set(t.split(',').map((p) => {
    const s = p.trim();
    if (!/^\d+$/.test(s)) throw new UsageError(`${what}: '${s}' is not a port (1-65535)`);
    return checkPort(Number(s), what);
  }))];
}

/** Validate a CIDR or bare address; returns its family. */
export function cidrFamily(cidr: string, what: string): Family {
  const [addr, bits, extra] = cidr.split('/');
  const kind = addr === undefined ? 0 : isIP(addr);
  const max = kind === 4 ? 32 : 128;
  const ok = kind !== 0 && extra === undefined &&
    (bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max));
  if (!ok) throw new UsageError(`${what}: '${cidr}' is not an IP address or CIDR`);
  return kind === 4 ? 'ipv4' : 'ipv6';
}

export function parseCidrList(text: string, what: string): string[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const c of list) cidrFamily(c, what);
  return [...new Set(list)];
}

/** Fill defaults and validate; throws UsageError naming the bad option. */
export function resolveOptions(partial: Partial<InterceptOptions> = {}): InterceptOptions {
  const o: InterceptOptions = { ...DEFAULT_OPTIONS, ...partial };
  checkPort(o.inboundPort, 'inbound port');
  checkPort(o.outboundPort, 'outbound port');
  checkPort(o.adminPort, 'admin port');
  for (const [v, what] of [[o.proxyUid, 'proxy uid'], [o.proxyGid, 'proxy gid']] as const) {
    if (v !== null && (!Number.isInteger(v) || v < 0 || v > 0xfffffffe)) {
      throw new UsageError(`${what}: '${v}' is not a numeric id`);
    }
  }
  if (o.inboundPorts !== '*') o.inboundPorts.forEach((p) => checkPort(p, 'inbound ports'));
  o.excludeInboundPorts.forEach((p) => checkPort(p, 'excluded inbound ports'));
  o.excludeOutboundPorts.forEach((p) => checkPort(p, 'excluded outbound ports'));
  o.excludeOutboundCidrs.forEach((c) => cidrFamily(c, 'excluded outbound CIDRs'));
  o.includeOutboundCidrs.forEach((c) => cidrFamily(c, 'included outbound CIDRs'));
  return o;
}

// -w: wait for the xtables lock instead of failing when another tool holds it.
const nat = (...args: string[]): Rule => ['-w', '-t', 'nat', ...args];

/** The rules for one address family. */
export function buildRules(opts: InterceptOptions, family: Family): RulePlan {
  const loopback = family === 'ipv4' ? '127.0.0.0/8' : '::1/128';
  const ownPorts = [opts.adminPort, opts.outboundPort, opts.inboundPort];
  const excludedIn = [...new Set([...ownPorts, ...opts.excludeInboundPorts])];
  const sameFamily = (c: string) => cidrFamily(c, 'cidr') === family;

  const setup: Rule[] = CHAINS.map((c) => nat('-N', c));
  setup.push(nat('-A', 'ETZ_IN_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(opts.inboundPort)));
  setup.push(nat('-A', 'ETZ_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(opts.outboundPort)));

  // Inbound: everything addressed to the pod reaches the sidecar, except its own ports (admin
  // probes, and a peer sidecar never dials them) and what the operator excluded.
  setup.push(nat('-A', 'PREROUTING', '-p', 'tcp', '-j', 'ETZ_INBOUND'));
  if (opts.inboundPorts === '*') {
    for (const p of excludedIn) setup.push(nat('-A', 'ETZ_INBOUND', '-p', 'tcp', '--dport', String(p), '-j', 'RETURN'));
    setup.push(nat('-A', 'ETZ_INBOUND', '-p', 'tcp', '-j', 'ETZ_IN_REDIRECT'));
  } else {
    for (const p of opts.inboundPorts) {
      if (!excludedIn.includes(p)) setup.push(nat('-A', 'ETZ_INBOUND', '-p', 'tcp', '--dport', String(p), '-j', 'ETZ_IN_REDIRECT'));
    }
  }

  // Outbound: the proxy's own connections first, so nothing it sends can loop back into it.
  setup.push(nat('-A', 'OUTPUT', '-p', 'tcp', '-j', 'ETZ_OUTPUT'));
  setup.push(nat('-A', 'ETZ_OUTPUT', '-m', 'owner', '--uid-owner', String(opts.proxyUid), '-j', 'RETURN'));
  if (opts.proxyGid !== null) {
    setup.push(nat('-A', 'ETZ_OUTPUT', '-m', 'owner', '--gid-owner', String(opts.proxyGid), '-j', 'RETURN'));
  }
  setup.push(nat('-A', 'ETZ_OUTPUT', '-d', loopback, '-j', 'RETURN'));
  for (const c of opts.excludeOutboundCidrs.filter(sameFamily)) setup.push(nat('-A', 'ETZ_OUTPUT', '-d', c, '-j', 'RETURN'));
  for (const p of opts.excludeOutboundPorts) setup.push(nat('-A', 'ETZ_OUTPUT', '-p', 'tcp', '--dport', String(p), '-j', 'RETURN'));
  const include = opts.includeOutboundCidrs.filter(sameFamily);
  if (opts.includeOutboundCidrs.length === 0) {
    setup.push(nat('-A', 'ETZ_OUTPUT', '-j', 'ETZ_REDIRECT'));
  } else {
    // An include list for the other family only means "intercept nothing" for this one.
    for (const c of include) setup.push(nat('-A', 'ETZ_OUTPUT', '-d', c, '-j', 'ETZ_REDIRECT'));
  }

  const cleanup: Rule[] = [
    nat('-D', 'PREROUTING', '-p', 'tcp', '-j', 'ETZ_INBOUND'),
    nat('-D', 'OUTPUT', '-p', 'tcp', '-j', 'ETZ_OUTPUT'),
    ...CHAINS.map((c) => nat('-F', c)),
    ...CHAINS.map((c) => nat('-X', c)),
  ];
  return { family, setup, cleanup };
}

/** Shell-quoted form of one command, as --dry-run prints it. */
export function formatRule(binary: string, rule: Rule): string {
  return [binary, ...rule].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
