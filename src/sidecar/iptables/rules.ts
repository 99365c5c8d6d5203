import { isIP } from 'node:net';
import { UsageError } from '../../core/errors.js';

/**
 * Rule generation for transparent interception, the shape of istio-init: NAT only, four chains,
 * two jumps from the built-in chains. Pure functions: the same options (and the same rules found
 * in place) always give the same iptables-restore input, which is what --dry-run prints and what
 * apply feeds to `iptables-restore --noflush` as ONE transaction: replacing earlier etz rules
 * never leaves a moment without interception (a bypass) or with half of it.
 *
 *   PREROUTING -p tcp → ETZ_INBOUND → (excluded ports RETURN) → ETZ_IN_REDIRECT → REDIRECT :inbound
 *   OUTPUT     -p tcp → ETZ_OUTPUT  → (proxy uid/gid over lo to a pod address → ETZ_INBOUND)
 *                                    → (anything else over lo, proxy uid/gid, loopback,
 *                                       excluded CIDRs/ports RETURN)
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

/** One rule as an iptables-restore line, split: e.g. ['-A', 'ETZ_OUTPUT', '-d', '::1/128', '-j', 'RETURN']. */
export type Rule = string[];

export interface RulePlan {
  family: Family;
  /** User chains to create (or, when present, flush). */
  chains: readonly string[];
  /** Rules to append, in order, after the chains are declared. */
  rules: Rule[];
}

/** etz's rules found in a table, from iptables-save output. */
export interface ExistingRules {
  /** ETZ_* chains that exist. */
  chains: string[];
  /** Rules in other chains that jump to an ETZ_* chain, as their `-A …` save lines. */
  jumps: string[];
  /** The rules inside the ETZ_* chains, as save lines (enough to put them back). */
  rules: string[];
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

/** The rules for one address family. */
export function buildRules(opts: InterceptOptions, family: Family): RulePlan {
  const loopback = family === 'ipv4' ? '127.0.0.0/8' : '::1/128';
  const ownPorts = [opts.adminPort, opts.outboundPort, opts.inboundPort];
  const excludedIn = [...new Set([...ownPorts, ...opts.excludeInboundPorts])];
  const sameFamily = (c: string) => cidrFamily(c, 'cidr') === family;
  const rules: Rule[] = [];
  const add = (...r: string[]) => rules.push(['-A', ...r]);

  add('ETZ_IN_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(opts.inboundPort));
  add('ETZ_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(opts.outboundPort));

  // Inbound: everything addressed to the pod reaches the sidecar, except its own ports (admin
  // probes, and a peer sidecar never dials them) and what the operator excluded.
  if (opts.inboundPorts === '*') {
    for (const p of excludedIn) add('ETZ_INBOUND', '-p', 'tcp', '--dport', String(p), '-j', 'RETURN');
    add('ETZ_INBOUND', '-p', 'tcp', '-j', 'ETZ_IN_REDIRECT');
  } else {
    for (const p of opts.inboundPorts) {
      if (!excludedIn.includes(p)) add('ETZ_INBOUND', '-p', 'tcp', '--dport', String(p), '-j', 'ETZ_IN_REDIRECT');
    }
  }

  // Outbound. A connection to one of the pod's own (non-loopback) addresses leaves through `lo`
  // and never crosses PREROUTING, so without these rules the proxy calling its own pod would
  // reach the application's port directly, past its own inbound chain. The proxy's such calls go
  // through ETZ_INBOUND as a peer's would (its own and excluded ports stay direct; a RETURN
  // there comes back here and meets the `-o lo` RETURN). Everything else over lo is the
  // application talking to itself: left alone, as Istio does, rather than sent to the outbound
  // listener. The owner matches are alternatives (the proxy may be matched by its gid only), so
  // each gets its own jump and the catch-all RETURN comes after both.
  const owners = [['--uid-owner', String(opts.proxyUid)]];
  if (opts.proxyGid !== null) owners.push(['--gid-owner', String(opts.proxyGid)]);
  for (const o of owners) add('ETZ_OUTPUT', '!', '-d', loopback, '-o', 'lo', '-m', 'owner', ...o, '-j', 'ETZ_INBOUND');
  add('ETZ_OUTPUT', '-o', 'lo', '-j', 'RETURN');
  // Then the proxy's own connections elsewhere, so nothing it sends can loop back into it.
  for (const o of owners) add('ETZ_OUTPUT', '-m', 'owner', ...o, '-j', 'RETURN');
  add('ETZ_OUTPUT', '-d', loopback, '-j', 'RETURN');
  for (const c of opts.excludeOutboundCidrs.filter(sameFamily)) add('ETZ_OUTPUT', '-d', c, '-j', 'RETURN');
  for (const p of opts.excludeOutboundPorts) add('ETZ_OUTPUT', '-p', 'tcp', '--dport', String(p), '-j', 'RETURN');
  if (opts.includeOutboundCidrs.length === 0) {
    add('ETZ_OUTPUT', '-j', 'ETZ_REDIRECT');
  } else {
    // An include list for the other family only means "intercept nothing" for this one.
    for (const c of opts.includeOutboundCidrs.filter(sameFamily)) add('ETZ_OUTPUT', '-d', c, '-j', 'ETZ_REDIRECT');
  }

  // The jumps last: within the one transaction it makes no difference, but a reader of the
  // script sees the chains complete before traffic is sent into them.
  add('PREROUTING', '-p', 'tcp', '-j', 'ETZ_INBOUND');
  add('OUTPUT', '-p', 'tcp', '-j', 'ETZ_OUTPUT');
  return { family, chains: CHAINS, rules };
}

export const NO_RULES: Readonly<ExistingRules> = Object.freeze({ chains: [], jumps: [], rules: [] });

/** Find etz's chains and the jumps into them in `iptables-save -t nat` output. */
export function parseSave(text: string): ExistingRules {
  const chains: string[] = [];
  const jumps: string[] = [];
  const rules: string[] = [];
  let inNat = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inNat = line === '*nat';
    if (!inNat) continue;
    const chain = /^:(ETZ_[A-Z_]+)\s/.exec(line);
    if (chain) chains.push(chain[1]!);
    if (/^-A ETZ_[A-Z_]+ /.test(line)) rules.push(line);
    else if (/^-A \S+ .*-j ETZ_[A-Z_]+$/.test(line)) jumps.push(line);
  }
  return { chains, jumps, rules };
}

/** Lines that remove what `existing` lists: jumps first, then flush, then delete the chains. */
function removal(existing: ExistingRules): string[] {
  return [
    ...existing.jumps.map((j) => `-D${j.slice(2)}`),
    ...existing.chains.map((c) => `-F ${c}`),
    ...existing.chains.map((c) => `-X ${c}`),
  ];
}

/**
 * iptables-restore input that replaces whatever etz rules exist (`existing`) with the chains and
 * lines given, atomically. Declaring a chain that exists flushes it under --noflush; stale jumps
 * are deleted; chains no longer used are removed.
 */
function replaceScript(chains: readonly string[], lines: string[], existing: ExistingRules): string {
  const stale: ExistingRules = { chains: existing.chains.filter((c) => !chains.includes(c)), jumps: existing.jumps, rules: [] };
  return ['*nat', ...chains.map((c) => `:${c} - [0:0]`), ...removal(stale), ...lines, 'COMMIT', ''].join('\n');
}

/** iptables-restore input that installs `plan` in place of the etz rules in `existing`. */
export function installScript(plan: RulePlan, existing: ExistingRules = NO_RULES): string {
  return replaceScript(plan.chains, plan.rules.map((r) => r.join(' ')), existing);
}

/** iptables-restore input that puts `target` (an earlier state) back in place of `current`. */
export function revertScript(target: ExistingRules, current: ExistingRules): string | null {
  if (target.chains.length === 0 && target.jumps.length === 0) return cleanupScript(current);
  return replaceScript(target.chains, [...target.rules, ...target.jumps], current);
}

/** iptables-restore input that removes etz's rules, or null when there is nothing to remove. */
export function cleanupScript(existing: ExistingRules): string | null {
  if (existing.chains.length === 0 && existing.jumps.length === 0) return null;
  return ['*nat', ...removal(existing), 'COMMIT', ''].join('\n');
}
