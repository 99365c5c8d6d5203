import { isIP } from 'node:net';
import { RecordError, parseFinding, parseIndicator, parseTimestamp } from './records.js';
import type { Indicator, IntelSeverity, VulnFinding, VulnRecord, IntelRecord } from './types.js';

/**
 * Feed formats beyond telemetry records: a Trivy JSON report, plain IP/CIDR blocklists and STIX 2.1
 * bundles. Each maps onto the same vuln/intel records the engine ingests, so a feed loaded from a
 * file, pushed through the API or replayed from a trace has one code path after parsing.
 */

/** Trivy `--format json` report (schema v2: Results[].Vulnerabilities[]). */
export function parseTrivyReport(report: unknown, service: string, ts: number): VulnRecord {
  if (report === null || typeof report !== 'object') throw new RecordError('(report)', 'must be a Trivy JSON object');
  const r = report as { ArtifactName?: unknown; Results?: unknown };
  if (!Array.isArray(r.Results)) throw new RecordError('Results', 'is required (a Trivy JSON report)');
  const findings: VulnFinding[] = [];
  r.Results.forEach((res: unknown, i: number) => {
    const vulns = (res as { Vulnerabilities?: unknown } | null)?.Vulnerabilities;
    if (vulns === undefined || vulns === null) return;
    if (!Array.isArray(vulns)) throw new RecordError(`Results[${i}].Vulnerabilities`, 'must be an array');
    vulns.forEach((v: unknown, j: number) => {
      const field = `Results[${i}].Vulnerabilities[${j}]`;
      const o = (v ?? {}) as Record<string, unknown>;
      findings.push(
        parseFinding(
          {
            id: o.VulnerabilityID,
            severity: o.Severity,
            cvss: bestCvss(o.CVSS),
            package: o.PkgName,
            fixedVersion: o.FixedVersion,
          },
          field,
        ),
      );
    });
  });
  const rec: VulnRecord = { kind: 'vuln', ts, service, findings };
  if (typeof r.ArtifactName === 'string') rec.image = r.ArtifactName;
  return rec;
}

function bestCvss(cvss: unknown): number | undefined {
  if (!cvss || typeof cvss !== 'object') return undefined;
  let best: number | undefined;
  for (const v of Object.values(cvss as Record<string, { V3Score?: unknown; V2Score?: unknown }>)) {
    const s = typeof v?.V3Score === 'number' ? v.V3Score : typeof v?.V2Score === 'number' ? v.V2Score : undefined;
    if (s !== undefined && s >= 0 && s <= 10 && (best === undefined || s > best)) best = s;
  }
  return best;
}

/** One IP or CIDR per line, `#` comments; every entry gets the list's severity. */
export function parseBlocklist(text: string, opts: { source?: string; severity?: IntelSeverity; ts: number }): IntelRecord {
  const indicators: Indicator[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const value = line.split(/\s+/)[0]!;
    const type = value.includes('/') ? 'cidr' : 'ip';
    if (type === 'cidr' ? !parseCidr(value) : isIP(value) === 0) throw new RecordError(`line ${i + 1}`, `'${value}' is not an IP address or CIDR`);
    const ind: Indicator = { type, value, severity: opts.severity ?? 'high' };
    if (opts.source) ind.source = opts.source;
    indicators.push(ind);
  });
  return { kind: 'intel', ts: opts.ts, indicators };
}

const STIX_IPV4 = /\[\s*ipv4-addr:value\s*=\s*'([^']+)'\s*\]/g;

/** STIX 2.1 bundle: indicators whose pattern names ipv4-addr values; revoked/expired ones are skipped. */
export function parseStixBundle(bundle: unknown, ts: number): IntelRecord {
  const b = bundle as { type?: unknown; objects?: unknown } | null;
  if (!b || b.type !== 'bundle' || !Array.isArray(b.objects)) throw new RecordError('(bundle)', 'must be a STIX 2.1 bundle with objects');
  const indicators: Indicator[] = [];
  b.objects.forEach((o: unknown, i: number) => {
    const x = (o ?? {}) as Record<string, unknown>;
    if (x.type !== 'indicator' || x.revoked === true) return;
    if (x.pattern_type !== undefined && x.pattern_type !== 'stix') return;
    if (typeof x.pattern !== 'string') throw new RecordError(`objects[${i}].pattern`, 'must be a string');
    const expiresAt = x.valid_until === undefined ? undefined : parseTimestamp(x.valid_until, `objects[${i}].valid_until`);
    if (expiresAt !== undefined && expiresAt <= ts) return;
    const severity = stixSeverity(x);
    for (const m of x.pattern.matchAll(STIX_IPV4)) {
      const value = m[1]!;
      const type = value.includes('/') ? 'cidr' : 'ip';
      if (type === 'cidr' ? !parseCidr(value) : isIP(value) !== 4) continue;
      const ind: Indicator = { type, value, severity, source: typeof x.name === 'string' ? x.name : String(x.id ?? 'stix') };
      if (expiresAt !== undefined) ind.expiresAt = expiresAt;
      indicators.push(ind);
    }
  });
  return { kind: 'intel', ts, indicators };
}

function stixSeverity(x: Record<string, unknown>): IntelSeverity {
  // STIX has no severity field; confidence (0–100) is the closest, else labels.
  const labels = Array.isArray(x.labels) ? x.labels.map(String) : [];
  if (labels.includes('critical')) return 'critical';
  if (typeof x.confidence === 'number') return x.confidence >= 85 ? 'critical' : x.confidence >= 60 ? 'high' : x.confidence >= 30 ? 'medium' : 'low';
  return 'high';
}

/** Load any supported intel/vuln document by sniffing its content. */
export function parseFeedText(text: string, opts: { ts: number; service?: string; source?: string }): VulnRecord | IntelRecord {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new RecordError('(document)', `is not valid JSON (${(err as Error).message})`);
    }
    const d = doc as Record<string, unknown>;
    if (d.type === 'bundle') return parseStixBundle(doc, opts.ts);
    if (Array.isArray(d.Results)) {
      const service = opts.service ?? (typeof d.ArtifactName === 'string' ? imageService(d.ArtifactName) : undefined);
      if (!service) throw new RecordError('service', 'is required for a Trivy report');
      return parseTrivyReport(doc, service, opts.ts);
    }
    if (Array.isArray(d.indicators)) return { kind: 'intel', ts: opts.ts, indicators: d.indicators.map((v, i) => parseIndicator(v, `indicators[${i}]`)) };
    throw new RecordError('(document)', 'is neither a STIX bundle, a Trivy report nor an indicator list');
  }
  return parseBlocklist(text, { ts: opts.ts, ...(opts.source ? { source: opts.source } : {}) });
}

function imageService(image: string): string {
  const last = image.split('/').pop() ?? image;
  return last.split(/[:@]/)[0]!;
}

/** IPv4 CIDR as [network, maskBits] with the network as an unsigned 32-bit int. */
export function parseCidr(cidr: string): { net: number; bits: number } | null {
  const [ip, b] = cidr.split('/');
  if (ip === undefined || b === undefined || !/^\d{1,2}$/.test(b)) return null;
  const bits = Number(b);
  const n = ipv4ToInt(ip);
  if (n === null || bits > 32) return null;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { net: (n & mask) >>> 0, bits };
}

export function ipv4ToInt(ip: string): number | null {
  const p = ip.split('.');
  if (p.length !== 4) return null;
  let n = 0;
  for (const part of p) {
    if (!/^\d{1,3}$/.test(part)) return null;
    const v = Number(part);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n >>> 0;
}

/**
 * Indicators indexed for per-record lookup: exact IPs, identities and principals in maps, CIDRs
 * grouped by prefix length so a lookup is at most 33 map probes (no linear scan of the list).
 */
export class IntelIndex {
  private exact = new Map<string, Indicator>();
  private identities = new Map<string, Indicator>();
  private principals = new Map<string, Indicator>();
  private cidrs = new Map<number, Map<number, Indicator>>();
  private prefixLens: number[] = [];
  // Indicators by the feed that brought them, so reloading a feed replaces what it said before.
  private readonly byFeed = new Map<string, Indicator[]>();
  size = 0;

  /** Drop every indicator a feed added (before loading its new version). */
  removeFeed(feed: string): number {
    const list = this.byFeed.get(feed);
    if (!list) return 0;
    this.byFeed.delete(feed);
    for (const ind of list) {
      const drop = <K>(m: Map<K, Indicator>, k: K) => {
        if (m.get(k) === ind) m.delete(k);
      };
      if (ind.type === 'ip') drop(this.exact, normaliseIp(ind.value));
      else if (ind.type === 'identity') drop(this.identities, ind.value);
      else if (ind.type === 'principal') drop(this.principals, ind.value);
      else {
        const c = parseCidr(ind.value);
        if (!c) drop(this.exact, ind.value);
        else {
          const m = this.cidrs.get(c.bits);
          if (m) drop(m, c.net);
        }
      }
      this.size--;
    }
    return list.length;
  }

  add(ind: Indicator, feed?: string): void {
    if (feed !== undefined) {
      const list = this.byFeed.get(feed);
      if (list) list.push(ind);
      else this.byFeed.set(feed, [ind]);
    }
    this.size++;
    switch (ind.type) {
      case 'ip':
        this.exact.set(normaliseIp(ind.value), ind);
        break;
      case 'identity':
        this.identities.set(ind.value, ind);
        break;
      case 'principal':
        this.principals.set(ind.value, ind);
        break;
      case 'cidr': {
        const c = parseCidr(ind.value);
        if (!c) {
          this.exact.set(ind.value, ind); // IPv6 CIDRs: exact only, documented limitation
          break;
        }
        let m = this.cidrs.get(c.bits);
        if (!m) {
          m = new Map();
          this.cidrs.set(c.bits, m);
          this.prefixLens = [...this.cidrs.keys()].sort((a, b) => b - a);
        }
        m.set(c.net, ind);
      }
    }
  }

  matchIp(ip: string | undefined, now: number): Indicator | undefined {
    if (!ip) return undefined;
    const norm = normaliseIp(ip);
    const hit = this.exact.get(norm);
    if (hit && live(hit, now)) return hit;
    if (this.prefixLens.length === 0) return undefined;
    const n = ipv4ToInt(norm);
    if (n === null) return undefined;
    for (const bits of this.prefixLens) {
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      const ind = this.cidrs.get(bits)!.get((n & mask) >>> 0);
      if (ind && live(ind, now)) return ind;
    }
    return undefined;
  }

  matchIdentity(id: string | undefined, now: number): Indicator | undefined {
    const ind = id === undefined ? undefined : this.identities.get(id);
    return ind && live(ind, now) ? ind : undefined;
  }

  matchPrincipal(p: string | undefined, now: number): Indicator | undefined {
    const ind = p === undefined ? undefined : this.principals.get(p);
    return ind && live(ind, now) ? ind : undefined;
  }

  all(): Indicator[] {
    return [...this.exact.values(), ...this.identities.values(), ...this.principals.values(), ...[...this.cidrs.values()].flatMap((m) => [...m.values()])];
  }
}

function live(ind: Indicator, now: number): boolean {
  return ind.expiresAt === undefined || ind.expiresAt > now;
}

function normaliseIp(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip.toLowerCase();
}
