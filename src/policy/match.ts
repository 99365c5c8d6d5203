/**
 * Value matchers compiled once per policy version: string globs, paths, CIDR blocks, ports.
 * Each compiles to a plain function, choosing the cheapest form the patterns allow (a Set lookup
 * for exact values, startsWith/endsWith for the Istio prefix/suffix forms, a RegExp only for
 * globs with an inner `*`).
 */

export type Matcher = ((value: string) => boolean) & { cost?: number };

/** Relative cost of one call, for ordering the parts of a rule cheapest first. */
export function costOf(m: Matcher): number {
  return m.cost ?? 3;
}

function withCost(m: Matcher, cost: number): Matcher {
  m.cost = cost;
  return m;
}

interface Classified {
  any: boolean;
  exact: Set<string>;
  prefixes: string[];
  suffixes: string[];
  regexes: RegExp[];
}

/** Sort patterns by the cheapest test that decides them; `inner` builds the RegExp of the rest. */
function classify(patterns: readonly string[], norm: (p: string) => string, anyOf: ReadonlySet<string>, inner: (p: string) => RegExp): Classified {
  const c: Classified = { any: false, exact: new Set(), prefixes: [], suffixes: [], regexes: [] };
  for (const raw of patterns) {
    const p = norm(raw);
    if (anyOf.has(p)) c.any = true;
    else if (!p.includes('*')) c.exact.add(p);
    else if (p.endsWith('*') && p.indexOf('*') === p.length - 1) c.prefixes.push(p.slice(0, -1));
    else if (p.startsWith('*') && p.lastIndexOf('*') === 0) c.suffixes.push(p.slice(1));
    else c.regexes.push(inner(p));
  }
  return c;
}

const ANY_GLOB = new Set(['*']);
const ANY_PATH = new Set(['*', '**']);

/** Globs where `*` matches any run of characters (principals, namespaces, hosts, header values). */
export function compileGlobs(patterns: readonly string[], caseInsensitive = false): Matcher {
  const c = classify(
    patterns,
    (p) => (caseInsensitive ? p.toLowerCase() : p),
    ANY_GLOB,
    (p) => new RegExp(`^${p.split('*').map(escapeRe).join('.*')}$`, caseInsensitive ? 'i' : ''),
  );
  return c.any ? () => true : finish(c, caseInsensitive);
}

/**
 * Paths: exact; trailing `*` = prefix (any depth, like Istio); leading `*` = suffix; an inner `*`
 * or `{*}` = one path segment; `**` or `{**}` = any number of segments.
 */
export function compilePaths(patterns: readonly string[]): Matcher {
  const c = classify(patterns, (p) => p.replace(/\{\*\*\}/g, '**').replace(/\{\*\}/g, '*'), ANY_PATH, pathGlobRegex);
  return c.any ? () => true : finish(c, false);
}

function pathGlobRegex(p: string): RegExp {
  let src = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') {
      if (p[i + 1] === '*') {
        src += '.*';
        i++;
      } else src += '[^/]*';
    } else src += escapeRe(c);
  }
  return new RegExp(`^${src}$`);
}

// Each shape is built by its own function so that a closure's context holds only what it uses
// (a policy set compiles tens of thousands of matchers; a shared context would keep every Set and
// array alive for each one).
function finish(c: Classified, lower: boolean): Matcher {
  if (c.prefixes.length === 0 && c.suffixes.length === 0 && c.regexes.length === 0) {
    if (c.exact.size === 1) return exactOne([...c.exact][0]!, lower);
    return exactSet(c.exact, lower);
  }
  return mixed(c.exact.size ? c.exact : null, c.prefixes, c.suffixes, c.regexes, lower);
}

function exactOne(only: string, lower: boolean): Matcher {
  if (lower) return withCost((v) => v.toLowerCase() === only, 2);
  const eq: Matcher = withCost((v) => v === only, 1);
  // Lets a clause compare the attribute inline instead of calling the matcher.
  (eq as Matcher & { only?: string }).only = only;
  return eq;
}

function exactSet(set: Set<string>, lower: boolean): Matcher {
  return withCost(lower ? (v) => set.has(v.toLowerCase()) : (v) => set.has(v), 2);
}

function mixed(exact: Set<string> | null, prefixes: string[], suffixes: string[], regexes: RegExp[], lower: boolean): Matcher {
  const cost = 2 + prefixes.length + suffixes.length + 3 * regexes.length;
  return withCost((value) => {
    const v = lower ? value.toLowerCase() : value;
    if (exact !== null && exact.has(v)) return true;
    for (const p of prefixes) if (v.startsWith(p)) return true;
    for (const s of suffixes) if (v.endsWith(s)) return true;
    for (const r of regexes) if (r.test(v)) return true;
    return false;
  }, cost);
}

/**
 * A test on one optional attribute. Positive: present and matching. Negative (`not…` forms):
 * absent, or matching none — so `notPrincipals: ["*"]` matches exactly the plaintext requests.
 */
export function attrTest<R>(get: (r: R) => string | undefined, m: Matcher, negate: boolean): (r: R) => boolean {
  return negate
    ? (r) => {
        const v = get(r);
        return v === undefined || !m(v);
      }
    : (r) => {
        const v = get(r);
        return v !== undefined && m(v);
      };
}

function escapeRe(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

// -- IP addresses and CIDR blocks ------------------------------------------------------------

export type ParsedIp = { v: 4; n: number } | { v: 6; n: bigint };

export function parseIp(s: string): ParsedIp | null {
  if (s.startsWith('::ffff:') && s.includes('.')) s = s.slice(7);
  if (s.includes('.') && !s.includes(':')) return parseIpv4(s);
  return parseIpv6(s);
}

// Hand-rolled: this runs per request on uncached decisions, where split/RegExp garbage shows up.
function parseIpv4(s: string): ParsedIp | null {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return null;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return null;
    } else return null;
  }
  if (dots !== 3 || digits === 0) return null;
  return { v: 4, n: n * 256 + part };
}

function parseIpv6(s: string): ParsedIp | null {
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  if (!/^[0-9a-fA-F:]+$/.test(s) || s.length < 2) return null;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? head.length !== 8 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return { v: 6, n };
}

export interface Cidr {
  v: 4 | 6;
  bits: number;
  /** Network address (host bits cleared). */
  base: number | bigint;
  text: string;
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a single address. Returns null when invalid. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const max = ip.v === 4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const b = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b)) return null;
    bits = Number(b);
    if (bits > max) return null;
  }
  if (ip.v === 4) {
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    return { v: 4, bits, base: (ip.n & mask) >>> 0, text };
  }
  const mask = bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(128 - bits);
  return { v: 6, bits, base: ip.n & mask, text };
}

export function cidrContainsIp(c: Cidr, ip: ParsedIp): boolean {
  if (c.v !== ip.v) return false;
  if (c.v === 4) {
    const mask = c.bits === 0 ? 0 : (0xffffffff << (32 - c.bits)) >>> 0;
    return ((ip.n as number) & mask) >>> 0 === c.base;
  }
  const mask = c.bits === 0 ? 0n : ((1n << BigInt(c.bits)) - 1n) << BigInt(128 - c.bits);
  return ((ip.n as bigint) & mask) === c.base;
}

/** Whether block `outer` contains every address of block `inner`. */
export function cidrCovers(outer: Cidr, inner: Cidr): boolean {
  if (outer.v !== inner.v || outer.bits > inner.bits) return false;
  return cidrContainsIp(outer, inner.v === 4 ? { v: 4, n: inner.base as number } : { v: 6, n: inner.base as bigint });
}

// One address is looked up against many blocks per request; parse it once.
let lastIpText = '';
let lastIp: ParsedIp | null = null;
function cachedParseIp(s: string): ParsedIp | null {
  if (s !== lastIpText) {
    lastIpText = s;
    lastIp = parseIp(s);
  }
  return lastIp;
}

export function compileCidrs(blocks: readonly string[]): Matcher {
  const cidrs = blocks.map((b) => {
    const c = parseCidr(b);
    if (!c) throw new Error(`invalid IP block ${b}`);
    return c;
  });
  return withCost((value) => {
    const ip = cachedParseIp(value);
    if (!ip) return false;
    for (const c of cidrs) if (cidrContainsIp(c, ip)) return true;
    return false;
  }, 3 + cidrs.length);
}

// -- glob coverage (used by the linter) ------------------------------------------------------

/** Whether every string matched by glob `b` is matched by glob `a` (conservative: may say false). */
export function globCovers(a: string, b: string, mode: 'glob' | 'ci' | 'path' = 'glob'): boolean {
  if (mode === 'path') {
    a = a.replace(/\{\*\*\}/g, '**').replace(/\{\*\}/g, '*');
    b = b.replace(/\{\*\*\}/g, '**').replace(/\{\*\}/g, '*');
    if (a === '**') return true;
  }
  if (mode === 'ci') {
    a = a.toLowerCase();
    b = b.toLowerCase();
  }
  if (a === '*' || a === b) return true;
  if (!a.includes('*')) return false;
  if (!b.includes('*')) return mode === 'path' ? compilePaths([a])(b) : compileGlobs([a], mode === 'ci')(b);
  const aStar = a.indexOf('*');
  if (a.endsWith('*') && aStar === a.length - 1) {
    // a = prefix*: b must be prefix-constrained by a longer-or-equal prefix.
    const bStar = b.indexOf('*');
    return b.slice(0, bStar).startsWith(a.slice(0, -1));
  }
  if (a.startsWith('*') && a.lastIndexOf('*') === 0) {
    const bLast = b.lastIndexOf('*');
    return b.slice(bLast + 1).endsWith(a.slice(1));
  }
  return false;
}
