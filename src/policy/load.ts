import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../core/errors.js';
import { validateConfig } from '../config/load.js';
import { KIND_SCHEMAS } from './schema.js';
import { parseCidr } from './match.js';
import type { AuthorizationPolicy, Condition, NetworkPolicy, NetPeer, PolicyDocument } from './types.js';

/**
 * Loading policies: parse (YAML streams, JSON, lists) → validate each document against its
 * kind's schema → check what a schema cannot. Every failure is a ConfigError naming the file, the
 * field path inside it (prefixed with the document index when the file holds several) and the
 * reason.
 */

/** Condition keys the evaluator understands, besides request.headers[NAME]. */
export const CONDITION_KEYS = new Set([
  'source.ip',
  'source.namespace',
  'source.principal',
  'source.zone',
  'request.auth.principal',
  'destination.port',
  'destination.zone',
]);
const HEADER_KEY = /^request\.headers\[([A-Za-z0-9!#$%&'*+.^_`|~-]+)\]$/;

/** The header name a condition tests, or undefined when it tests another attribute. */
export function conditionHeader(c: Condition): string | undefined {
  if (c.header) return c.header.toLowerCase();
  const m = c.key ? HEADER_KEY.exec(c.key) : null;
  return m ? m[1]!.toLowerCase() : undefined;
}

/** Parse a file's text into raw documents (not yet validated). */
export function parsePolicyText(file: string, text: string): unknown[] {
  let docs: unknown[];
  try {
    if (/\.json$/i.test(file)) docs = [JSON.parse(text)];
    else {
      docs = [];
      for (const d of parseAllDocuments(text, { prettyErrors: true })) {
        if (d.errors.length) throw d.errors[0];
        const v = d.toJS();
        if (v !== null && v !== undefined) docs.push(v);
      }
    }
  } catch (err) {
    throw new ConfigError(file, '/', `cannot parse: ${(err as Error).message.split('\n')[0]}`, 'ETZ_ERR_CONFIG_READ');
  }
  return flattenDocuments(docs);
}

/** Lists and `kind: List` / `{ items: [...] }` wrappers become their items. */
export function flattenDocuments(docs: unknown[]): unknown[] {
  const out: unknown[] = [];
  for (const d of docs) {
    if (Array.isArray(d)) out.push(...flattenDocuments(d));
    else if (d && typeof d === 'object' && Array.isArray((d as { items?: unknown }).items) && !('spec' in d)) {
      out.push(...flattenDocuments((d as { items: unknown[] }).items));
    } else out.push(d);
  }
  return out;
}

/** Validate raw documents; fills defaults (action ALLOW) in place and returns them typed. */
export function validatePolicyDocuments(file: string, docs: readonly unknown[], opts: { indexed?: boolean } = {}): PolicyDocument[] {
  // A list (a resource) always names the index; a file with one document does not.
  const many = opts.indexed === true || docs.length > 1;
  const out: PolicyDocument[] = [];
  const seen = new Map<string, number>();
  let defaultsAt = -1;
  docs.forEach((doc, i) => {
    const at = (field: string) => (many ? `/${i}${field}` : field || '/');
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(file, at(''), 'must be a policy document (a mapping)');
    const kind = (doc as { kind?: unknown }).kind;
    if (typeof kind !== 'string' || !(kind in KIND_SCHEMAS)) {
      throw new ConfigError(file, at('/kind'), `must be one of ${Object.keys(KIND_SCHEMAS).map((k) => JSON.stringify(k)).join(', ')}`);
    }
    try {
      validateConfig(file, KIND_SCHEMAS[kind as keyof typeof KIND_SCHEMAS], doc);
      checkSemantics(doc as PolicyDocument);
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(file, at(err.field === '/' ? '' : err.field), err.reason);
      throw err;
    }
    const d = doc as PolicyDocument;
    if (d.kind === 'PolicyDefaults') {
      if (defaultsAt >= 0) throw new ConfigError(file, at('/kind'), `only one PolicyDefaults is allowed (another is document ${defaultsAt})`);
      defaultsAt = i;
    }
    const id = `${d.kind}/${d.metadata.namespace ?? ''}/${d.metadata.name}`;
    const prev = seen.get(id);
    if (prev !== undefined) throw new ConfigError(file, at('/metadata/name'), `duplicate ${d.kind} name '${d.metadata.name}' (also document ${prev})`);
    seen.set(id, i);
    out.push(d);
  });
  return out;
}

/** Checks the schemas cannot express; throws ConfigError with the field path inside the document. */
function checkSemantics(doc: PolicyDocument): void {
  if (doc.kind === 'AuthorizationPolicy') checkAuthz(doc);
  else if (doc.kind === 'NetworkPolicy') checkNetwork(doc);
}

function checkBlocks(blocks: string[] | undefined, field: string): void {
  blocks?.forEach((b, k) => {
    if (!parseCidr(b)) throw new ConfigError('', `${field}/${k}`, `'${b}' is not a valid IP address or CIDR block`);
  });
}

/** Principals are SPIFFE IDs; Istio's scheme-less form would silently never match, so refuse it. */
function checkPrincipals(list: string[] | undefined, field: string): void {
  list?.forEach((pr, k) => {
    if (pr !== '*' && !pr.startsWith('spiffe://') && !pr.startsWith('*')) {
      throw new ConfigError('', `${field}/${k}`, `'${pr}' is not a SPIFFE ID (write spiffe://${pr}; \`etz policy import\` converts Istio policies)`);
    }
  });
}

function checkAuthz(p: AuthorizationPolicy): void {
  p.spec.rules?.forEach((rule, r) => {
    const base = `/spec/rules/${r}`;
    rule.from?.forEach((s, k) => {
      checkBlocks(s.ipBlocks, `${base}/from/${k}/ipBlocks`);
      checkBlocks(s.notIpBlocks, `${base}/from/${k}/notIpBlocks`);
      checkPrincipals(s.principals, `${base}/from/${k}/principals`);
      checkPrincipals(s.notPrincipals, `${base}/from/${k}/notPrincipals`);
      if (Object.keys(s).length === 0) throw new ConfigError('', `${base}/from/${k}`, 'must name at least one field (omit `from` to match any source)');
    });
    rule.to?.forEach((o, k) => {
      if (Object.keys(o).length === 0) throw new ConfigError('', `${base}/to/${k}`, 'must name at least one field (omit `to` to match any operation)');
      for (const f of ['methods', 'notMethods'] as const) {
        o[f]?.forEach((m, j) => {
          if (!/^[A-Za-z]+$|^\*$/.test(m)) throw new ConfigError('', `${base}/to/${k}/${f}/${j}`, `'${m}' is not an HTTP method`);
        });
      }
    });
    rule.when?.forEach((c, k) => checkCondition(c, `${base}/when/${k}`));
  });
}

function checkCondition(c: Condition, field: string): void {
  if ((c.key === undefined) === (c.header === undefined)) throw new ConfigError('', field, 'must have exactly one of `key` or `header`');
  if (!c.values && !c.notValues) throw new ConfigError('', field, 'must have `values` or `notValues`');
  if (c.key !== undefined && !HEADER_KEY.test(c.key) && !CONDITION_KEYS.has(c.key)) {
    throw new ConfigError('', `${field}/key`, `unknown key '${c.key}' (known: request.headers[NAME], ${[...CONDITION_KEYS].join(', ')})`);
  }
  if (c.key === 'source.ip') {
    checkBlocks(c.values, `${field}/values`);
    checkBlocks(c.notValues, `${field}/notValues`);
  }
  if (c.key === 'destination.port') {
    for (const list of ['values', 'notValues'] as const) {
      c[list]?.forEach((v, j) => {
        if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new ConfigError('', `${field}/${list}/${j}`, `'${v}' is not a port`);
      });
    }
  }
}

function checkNetwork(p: NetworkPolicy): void {
  for (const dir of ['ingress', 'egress'] as const) {
    p.spec[dir]?.forEach((rule, r) => {
      const base = `/spec/${dir}/${r}`;
      const other = dir === 'ingress' ? 'to' : 'from';
      if ((rule as Record<string, unknown>)[other] !== undefined) {
        throw new ConfigError('', `${base}/${other}`, `${dir} rules name peers with \`${dir === 'ingress' ? 'from' : 'to'}\``);
      }
      const peers: NetPeer[] | undefined = dir === 'ingress' ? rule.from : rule.to;
      peers?.forEach((peer, k) => {
        const f = `${base}/${dir === 'ingress' ? 'from' : 'to'}/${k}`;
        if (Object.keys(peer).length === 0) throw new ConfigError('', f, 'must name at least one field (omit it to match any peer)');
        checkBlocks(peer.ipBlocks, `${f}/ipBlocks`);
        checkBlocks(peer.notIpBlocks, `${f}/notIpBlocks`);
        checkPrincipals(peer.principals, `${f}/principals`);
        if (dir === 'ingress' && peer.hosts) throw new ConfigError('', `${f}/hosts`, 'is only meaningful in egress rules');
        if (dir === 'egress' && peer.principals) throw new ConfigError('', `${f}/principals`, 'egress peers are named by services, hosts, ipBlocks or zones');
        if (dir === 'egress' && peer.namespaces) throw new ConfigError('', `${f}/namespaces`, 'egress peers are named by services, hosts, ipBlocks or zones');
        if (peer.notIpBlocks && !peer.ipBlocks) throw new ConfigError('', `${f}/notIpBlocks`, 'needs `ipBlocks` (the exceptions are carved out of them)');
      });
      rule.ports?.forEach((pr, k) => {
        if (pr.endPort !== undefined && pr.endPort < pr.port) throw new ConfigError('', `${base}/ports/${k}/endPort`, 'must be >= port');
      });
    });
  }
}

/** Read, parse and validate policy files; all documents of all files, in order. */
export async function loadPolicyFiles(files: readonly string[]): Promise<PolicyDocument[]> {
  const out: PolicyDocument[] = [];
  const names = new Map<string, string>();
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, '/', `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'ETZ_ERR_CONFIG_READ');
    }
    const docs = validatePolicyDocuments(file, parsePolicyText(file, text));
    for (const d of docs) {
      const id = `${d.kind}/${d.metadata.namespace ?? ''}/${d.metadata.name}`;
      const other = names.get(id);
      if (other !== undefined) throw new ConfigError(file, '/metadata/name', `duplicate ${d.kind} name '${d.metadata.name}' (also in ${other})`);
      names.set(id, file);
      out.push(d);
    }
  }
  if (out.filter((d) => d.kind === 'PolicyDefaults').length > 1) {
    throw new ConfigError(files.join(', '), '/kind', 'only one PolicyDefaults is allowed across the policy set');
  }
  return out;
}

/** A stable identifier for a document in messages: `reviews-viewer` or `prod/reviews-viewer`. */
export function policyId(d: { metadata: { name: string; namespace?: string } }): string {
  return d.metadata.namespace ? `${d.metadata.namespace}/${d.metadata.name}` : d.metadata.name;
}
