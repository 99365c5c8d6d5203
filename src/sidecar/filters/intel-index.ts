import { isIPv4, isIPv6 } from 'node:net';

/**
 * The lookup structures of the threat-intel filter, built once per config version: exact
 * addresses, identities and principals in hash maps; CIDRs as one map per prefix length (IPv4 as
 * 32-bit integers, IPv6 as fixed-width hex strings cut at the prefix), probed longest prefix first. A request with no hit costs a
 * few map lookups; the number of distinct prefix lengths (at most 33 + 129) bounds the probes.
 */

export type Severity = 'low' | 'medium' | 'high' | 'critical';
export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 1, medium: 2, high: 3, critical: 4 };

export interface IndicatorConfig {
  type: 'ip' | 'cidr' | 'identity' | 'principal';
  value: string;
  severity: Severity;
  source?: string;
  expiresAt?: number | string;
}

/** A compiled indicator: expiry in epoch ms (Infinity when none). */
export interface CompiledIndicator {
  readonly type: IndicatorConfig['type'];
  readonly value: string;
  readonly severity: Severity;
  readonly source: string | undefined;
  readonly until: number;
}

/** Several indicators may share a key (two feeds, two expiries): most severe first. */
type Bucket = CompiledIndicator[];

function put<K>(m: Map<K, Bucket>, k: K, ind: CompiledIndicator): void {
  const b = m.get(k);
  if (b === undefined) m.set(k, [ind]);
  else {
    b.push(ind);
    b.sort((x, y) => SEVERITY_RANK[y.severity] - SEVERITY_RANK[x.severity] || y.until - x.until);
  }
}

function live(b: Bucket | undefined, now: number): CompiledIndicator | undefined {
  if (b === undefined) return undefined;
  for (const ind of b) if (ind.until > now) return ind;
  return undefined;
}

export function ipv4ToInt(ip: string): number | null {
  // By hand rather than split('.'): this runs per request and allocates nothing.
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return null;
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
      if (octet > 255) return null;
    } else return null;
  }
  if (dots !== 3 || digits === 0) return null;
  return n * 256 + octet;
}

/** An IPv6 address as 32 lower-case hex digits (one fixed-width key per address), or null. */
export function ipv6ToHex(ip: string): string | null {
  const pct = ip.indexOf('%');
  if (pct >= 0) ip = ip.slice(0, pct);
  const lastColon = ip.lastIndexOf(':');
  if (ip.includes('.', lastColon)) {
    // An embedded IPv4 tail (::ffff:1.2.3.4) is two 16-bit groups.
    const v4 = ipv4ToInt(ip.slice(lastColon + 1));
    if (v4 === null) return null;
    ip = `${ip.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = ip.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] === '' ? [] : halves[0]!.split(':');
  const rest = halves.length === 2 && halves[1] !== '' ? halves[1]!.split(':') : [];
  const given = head.length + rest.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return null;
  let out = '';
  for (const g of head) {
    if (!HEX_GROUP.test(g)) return null;
    out += g.padStart(4, '0');
  }
  out += '0000'.repeat(8 - given);
  for (const g of rest) {
    if (!HEX_GROUP.test(g)) return null;
    out += g.padStart(4, '0');
  }
  return out.toLowerCase();
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** The key of `hex` (32 digits) under a prefix of `bits`: whole digits, then the masked partial one. */
function prefixKey(hex: string, bits: number): string {
  const whole = bits >> 2;
  const part = bits & 3;
  if (part === 0) return hex.slice(0, whole);
  const d = parseInt(hex[whole]!, 16) & ((0xf << (4 - part)) & 0xf);
  return hex.slice(0, whole) + d.toString(16);
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d, as dual-stack sockets report) as plain IPv4. */
export function unmapIp(ip: string): string {
  return ip.length > 7 && ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

export class IntelIndex {
  private readonly exact = new Map<string, Bucket>();
  private readonly identities = new Map<string, Bucket>();
  private readonly principals = new Map<string, Bucket>();
  private readonly v4 = new Map<number, Map<number, Bucket>>();
  private readonly v6 = new Map<number, Map<string, Bucket>>();
  private v4Lens: number[] = [];
  private v6Lens: number[] = [];
  size = 0;

  /** Add one indicator; returns a reason string when its value is not valid for its type. */
  add(ind: CompiledIndicator): string | undefined {
    switch (ind.type) {
      case 'identity':
        put(this.identities, ind.value, ind);
        break;
      case 'principal':
        put(this.principals, ind.value, ind);
        break;
      case 'ip': {
        const ip = unmapIp(ind.value);
        if (isIPv4(ip)) put(this.exact, ip, ind);
        else if (isIPv6(ip)) put(this.exact, canonical6(ip), ind);
        else return `'${ind.value}' is not an IPv4 or IPv6 address`;
        break;
      }
      case 'cidr': {
        const slash = ind.value.indexOf('/');
        const addr = slash < 0 ? ind.value : ind.value.slice(0, slash);
        const lenText = slash < 0 ? '' : ind.value.slice(slash + 1);
        const bits = Number(lenText);
        if (isIPv4(addr)) {
          if (slash < 0 || !/^\d{1,2}$/.test(lenText) || bits > 32) return `'${ind.value}' is not a CIDR (prefix length 0–32 for IPv4)`;
          const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
          let m = this.v4.get(bits);
          if (m === undefined) this.v4.set(bits, (m = new Map()));
          put(m, (ipv4ToInt(addr)! & mask) >>> 0, ind);
        } else if (isIPv6(addr)) {
          if (slash < 0 || !/^\d{1,3}$/.test(lenText) || bits > 128) return `'${ind.value}' is not a CIDR (prefix length 0–128 for IPv6)`;
          let m = this.v6.get(bits);
          if (m === undefined) this.v6.set(bits, (m = new Map()));
          put(m, prefixKey(ipv6ToHex(addr)!, bits), ind);
        } else return `'${ind.value}' is not a CIDR`;
        break;
      }
    }
    this.size++;
    return undefined;
  }

  /** Call once all indicators are in: fixes the probe order (longest prefix first). */
  seal(): this {
    this.v4Lens = [...this.v4.keys()].sort((a, b) => b - a);
    this.v6Lens = [...this.v6.keys()].sort((a, b) => b - a);
    return this;
  }

  get hasIpIndicators(): boolean {
    return this.exact.size > 0 || this.v4Lens.length > 0 || this.v6Lens.length > 0;
  }

  get hasIdentityIndicators(): boolean {
    return this.identities.size > 0;
  }

  get hasPrincipalIndicators(): boolean {
    return this.principals.size > 0;
  }

  matchIdentity(id: string, now: number): CompiledIndicator | undefined {
    return live(this.identities.get(id), now);
  }

  matchPrincipal(p: string, now: number): CompiledIndicator | undefined {
    return live(this.principals.get(p), now);
  }

  matchIp(raw: string, now: number): CompiledIndicator | undefined {
    const ip = unmapIp(raw);
    const hit = live(this.exact.get(ip), now);
    if (hit !== undefined) return hit;
    if (ip.includes(':')) {
      if (this.v6Lens.length === 0 && this.exact.size === 0) return undefined;
      const hex = ipv6ToHex(ip);
      if (hex === null) return undefined;
      if (this.exact.size > 0) {
        // Exact IPv6 keys are the fixed-width form: one address has many text forms.
        const e = live(this.exact.get(hex), now);
        if (e !== undefined) return e;
      }
      for (const bits of this.v6Lens) {
        const ind = live(this.v6.get(bits)!.get(prefixKey(hex, bits)), now);
        if (ind !== undefined) return ind;
      }
      return undefined;
    }
    if (this.v4Lens.length === 0) return undefined;
    const n = ipv4ToInt(ip);
    if (n === null) return undefined;
    for (const bits of this.v4Lens) {
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      const ind = live(this.v4.get(bits)!.get((n & mask) >>> 0), now);
      if (ind !== undefined) return ind;
    }
    return undefined;
  }
}

function canonical6(ip: string): string {
  return ipv6ToHex(ip) ?? ip;
}
