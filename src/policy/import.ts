import { ConfigError } from '../core/errors.js';
import { parseCidr } from './match.js';
import { validatePolicyDocuments } from './load.js';
import type { AuthorizationPolicy, AuthzRule, Condition, NetPeer, NetRule, NetworkPolicy, OperationMatch, PolicyDocument, PortRange, Selector, SourceMatch } from './types.js';

/**
 * Importers for Istio AuthorizationPolicy (security.istio.io/v1, v1beta1) and Kubernetes
 * NetworkPolicy (networking.k8s.io/v1). What maps is converted; anything else — an unknown field,
 * a label other than app/version, CUSTOM actions, named ports, UDP — is refused with the field
 * named, never dropped: a policy that silently lost a clause would allow more than its author
 * meant.
 */

export interface ImportOptions {
  /** Istio's root namespace: policies there apply mesh-wide (default istio-system). */
  rootNamespace?: string;
}

class Refusal extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(reason);
  }
}

type Obj = Record<string, unknown>;

function obj(v: unknown, field: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Refusal(field, 'must be a mapping');
  return v as Obj;
}
function arr(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) throw new Refusal(field, 'must be a list');
  return v;
}
function strs(v: unknown, field: string): string[] {
  return arr(v, field).map((x, i) => {
    if (typeof x !== 'string' || x === '') throw new Refusal(`${field}/${i}`, 'must be a non-empty string');
    return x;
  });
}
/** Refuse any key not in `known` (so nothing is silently ignored). */
function only(o: Obj, known: readonly string[], field: string, why = 'etz cannot map this field'): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new Refusal(`${field}/${k}`, why);
}

const WORKLOAD_LABELS: Record<string, 'service' | 'version'> = {
  app: 'service',
  'app.kubernetes.io/name': 'service',
  'service.istio.io/canonical-name': 'service',
  version: 'version',
  'app.kubernetes.io/version': 'version',
  'service.istio.io/canonical-revision': 'version',
};

function labelSelector(v: unknown, field: string): Selector {
  const o = obj(v, field);
  only(o, ['matchLabels'], field, 'etz selects workloads by matchLabels only (matchExpressions cannot be mapped)');
  const out: Selector = {};
  if (o.matchLabels === undefined) return out;
  const labels = obj(o.matchLabels, `${field}/matchLabels`);
  for (const [k, val] of Object.entries(labels)) {
    const target = WORKLOAD_LABELS[k];
    if (!target) throw new Refusal(`${field}/matchLabels/${k}`, `label '${k}' has no etz equivalent (etz selects by service (app) and version)`);
    if (typeof val !== 'string') throw new Refusal(`${field}/matchLabels/${k}`, 'must be a string');
    if (out[target] !== undefined && out[target] !== val) throw new Refusal(`${field}/matchLabels/${k}`, `conflicts with another ${target} label`);
    out[target] = val;
  }
  return out;
}

// -- Istio -----------------------------------------------------------------------------------

/** Istio principals are SPIFFE IDs without the scheme: `cluster.local/ns/x/sa/y`. */
function istioPrincipal(p: string): string {
  if (p === '*' || p.startsWith('spiffe://')) return p;
  return `spiffe://${p}`;
}

function istioSource(v: unknown, field: string, ns: string | undefined): SourceMatch {
  const s = obj(v, field);
  only(s, ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'serviceAccounts', 'notServiceAccounts'], field,
    'etz cannot map this field (remoteIpBlocks need the original client address, which etz does not take from X-Forwarded-For)');
  const out: SourceMatch = {};
  const sa = (x: string) => (x.includes('/') ? `spiffe://*/ns/${x.replace('/', '/sa/')}` : `spiffe://*/ns/${ns ?? 'default'}/sa/${x}`);
  if (s.principals !== undefined) out.principals = strs(s.principals, `${field}/principals`).map(istioPrincipal);
  if (s.notPrincipals !== undefined) out.notPrincipals = strs(s.notPrincipals, `${field}/notPrincipals`).map(istioPrincipal);
  if (s.serviceAccounts !== undefined) {
    if (out.principals) throw new Refusal(`${field}/serviceAccounts`, 'cannot be combined with principals in one source');
    out.principals = strs(s.serviceAccounts, `${field}/serviceAccounts`).map(sa);
  }
  if (s.notServiceAccounts !== undefined) {
    if (out.notPrincipals) throw new Refusal(`${field}/notServiceAccounts`, 'cannot be combined with notPrincipals in one source');
    out.notPrincipals = strs(s.notServiceAccounts, `${field}/notServiceAccounts`).map(sa);
  }
  if (s.requestPrincipals !== undefined) out.requestPrincipals = strs(s.requestPrincipals, `${field}/requestPrincipals`);
  if (s.notRequestPrincipals !== undefined) out.notRequestPrincipals = strs(s.notRequestPrincipals, `${field}/notRequestPrincipals`);
  if (s.namespaces !== undefined) out.namespaces = strs(s.namespaces, `${field}/namespaces`);
  if (s.notNamespaces !== undefined) out.notNamespaces = strs(s.notNamespaces, `${field}/notNamespaces`);
  for (const k of ['ipBlocks', 'notIpBlocks'] as const) {
    if (s[k] === undefined) continue;
    out[k] = strs(s[k], `${field}/${k}`);
    out[k]!.forEach((b, i) => {
      if (!parseCidr(b)) throw new Refusal(`${field}/${k}/${i}`, `'${b}' is not a valid IP address or CIDR block`);
    });
  }
  if (Object.keys(out).length === 0) throw new Refusal(field, 'an empty source cannot be mapped');
  return out;
}

function istioPorts(v: unknown, field: string): number[] {
  return arr(v, field).map((x, i) => {
    const p = typeof x === 'number' ? String(x) : typeof x === 'string' ? x : '';
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new Refusal(`${field}/${i}`, `'${p}' is not a port number`);
    return Number(p);
  });
}

function istioOperation(v: unknown, field: string): OperationMatch {
  const o = obj(v, field);
  only(o, ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'], field);
  const out: OperationMatch = {};
  for (const k of ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const) if (o[k] !== undefined) out[k] = strs(o[k], `${field}/${k}`);
  if (o.ports !== undefined) out.ports = istioPorts(o.ports, `${field}/ports`);
  if (o.notPorts !== undefined) out.notPorts = istioPorts(o.notPorts, `${field}/notPorts`);
  if (Object.keys(out).length === 0) throw new Refusal(field, 'an empty operation cannot be mapped');
  return out;
}

const ISTIO_KEYS = new Set(['source.ip', 'source.namespace', 'source.principal', 'request.auth.principal', 'destination.port']);

function istioCondition(v: unknown, field: string): Condition {
  const c = obj(v, field);
  only(c, ['key', 'values', 'notValues'], field);
  if (typeof c.key !== 'string') throw new Refusal(`${field}/key`, 'is required');
  const key = c.key;
  if (!/^request\.headers\[[^\]]+\]$/.test(key) && !ISTIO_KEYS.has(key)) {
    throw new Refusal(`${field}/key`, `condition key '${key}' has no etz equivalent (supported: request.headers[NAME], ${[...ISTIO_KEYS].join(', ')})`);
  }
  const out: Condition = { key };
  const conv = (xs: string[]) => (key === 'source.principal' ? xs.map(istioPrincipal) : xs);
  if (c.values !== undefined) out.values = conv(strs(c.values, `${field}/values`));
  if (c.notValues !== undefined) out.notValues = conv(strs(c.notValues, `${field}/notValues`));
  if (!out.values && !out.notValues) throw new Refusal(field, 'must have values or notValues');
  return out;
}

function importIstio(doc: Obj, opts: ImportOptions): AuthorizationPolicy {
  only(doc, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '');
  const md = obj(doc.metadata, '/metadata');
  if (typeof md.name !== 'string') throw new Refusal('/metadata/name', 'is required');
  const ns = typeof md.namespace === 'string' ? md.namespace : undefined;
  const spec = obj(doc.spec ?? {}, '/spec');
  const action = spec.action ?? 'ALLOW';
  // The action first: CUSTOM is the root cause when it comes with its provider.
  if (action === 'CUSTOM') throw new Refusal('/spec/action', 'CUSTOM (external authorizer) has no etz equivalent');
  only(spec, ['selector', 'action', 'rules'], '/spec', 'etz cannot map this field (targetRef(s) and provider are not supported)');
  if (action !== 'ALLOW' && action !== 'DENY' && action !== 'AUDIT') throw new Refusal('/spec/action', 'must be ALLOW, DENY or AUDIT');
  const selector: Selector = spec.selector !== undefined ? labelSelector(spec.selector, '/spec/selector') : {};
  // Istio: a policy in the root namespace is mesh-wide; elsewhere it covers its namespace.
  if (ns !== undefined && ns !== (opts.rootNamespace ?? 'istio-system')) selector.namespace = ns;
  const rules: AuthzRule[] | undefined =
    spec.rules === undefined
      ? undefined
      : arr(spec.rules, '/spec/rules').map((r, i) => {
          const f = `/spec/rules/${i}`;
          const rule = obj(r, f);
          only(rule, ['from', 'to', 'when'], f);
          const out: AuthzRule = {};
          if (rule.from !== undefined) {
            out.from = arr(rule.from, `${f}/from`).map((x, k) => {
              const src = obj(x, `${f}/from/${k}`);
              only(src, ['source'], `${f}/from/${k}`);
              return istioSource(src.source, `${f}/from/${k}/source`, ns);
            });
          }
          if (rule.to !== undefined) {
            out.to = arr(rule.to, `${f}/to`).map((x, k) => {
              const op = obj(x, `${f}/to/${k}`);
              only(op, ['operation'], `${f}/to/${k}`);
              return istioOperation(op.operation, `${f}/to/${k}/operation`);
            });
          }
          if (rule.when !== undefined) out.when = arr(rule.when, `${f}/when`).map((x, k) => istioCondition(x, `${f}/when/${k}`));
          return out;
        });
  return {
    apiVersion: 'etz.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: md.name, ...(ns !== undefined ? { namespace: ns } : {}) },
    spec: { ...(Object.keys(selector).length ? { selector } : {}), action, ...(rules !== undefined ? { rules } : {}) },
  };
}

// -- Kubernetes ------------------------------------------------------------------------------

function k8sPorts(v: unknown, field: string): PortRange[] {
  return arr(v, field).map((x, i) => {
    const f = `${field}/${i}`;
    const p = obj(x, f);
    only(p, ['port', 'endPort', 'protocol'], f);
    if (p.protocol !== undefined && p.protocol !== 'TCP') throw new Refusal(`${f}/protocol`, `${String(p.protocol)} is not proxied by etz (TCP only)`);
    if (p.port === undefined) throw new Refusal(`${f}/port`, 'a rule for all ports of a protocol: omit `ports` instead');
    if (typeof p.port !== 'number') throw new Refusal(`${f}/port`, `named port '${String(p.port)}' cannot be resolved by etz; use the number`);
    const out: PortRange = { port: p.port };
    if (p.endPort !== undefined) {
      if (typeof p.endPort !== 'number') throw new Refusal(`${f}/endPort`, 'must be a number');
      out.endPort = p.endPort;
    }
    return out;
  });
}

function k8sIpBlock(v: unknown, field: string, peer: NetPeer): void {
  const b = obj(v, field);
  only(b, ['cidr', 'except'], field);
  if (typeof b.cidr !== 'string' || !parseCidr(b.cidr)) throw new Refusal(`${field}/cidr`, 'must be a valid CIDR block');
  peer.ipBlocks = [b.cidr];
  if (b.except !== undefined) {
    peer.notIpBlocks = strs(b.except, `${field}/except`);
    peer.notIpBlocks.forEach((c, i) => {
      if (!parseCidr(c)) throw new Refusal(`${field}/except/${i}`, 'must be a valid CIDR block');
    });
  }
}

function namespaceOf(v: unknown, field: string): string | undefined {
  const o = obj(v, field);
  only(o, ['matchLabels'], field, 'namespaces are selected by matchLabels only (matchExpressions cannot be mapped)');
  if (o.matchLabels === undefined) return undefined;
  const labels = obj(o.matchLabels, `${field}/matchLabels`);
  const keys = Object.keys(labels);
  if (keys.length === 0) return undefined;
  if (keys.length !== 1 || keys[0] !== 'kubernetes.io/metadata.name' || typeof labels[keys[0]] !== 'string') {
    throw new Refusal(`${field}/matchLabels/${keys.find((k) => k !== 'kubernetes.io/metadata.name') ?? keys[0]}`, 'etz knows namespaces by name only (kubernetes.io/metadata.name)');
  }
  return labels[keys[0]] as string;
}

function k8sPeer(v: unknown, field: string, dir: 'ingress' | 'egress', ns: string): NetPeer {
  const p = obj(v, field);
  only(p, ['ipBlock', 'namespaceSelector', 'podSelector'], field);
  const peer: NetPeer = {};
  if (p.ipBlock !== undefined) {
    if (p.namespaceSelector !== undefined || p.podSelector !== undefined) throw new Refusal(field, 'ipBlock cannot be combined with selectors');
    k8sIpBlock(p.ipBlock, `${field}/ipBlock`, peer);
    return peer;
  }
  const pod = p.podSelector !== undefined ? labelSelector(p.podSelector, `${field}/podSelector`) : undefined;
  if (pod?.version !== undefined) throw new Refusal(`${field}/podSelector/matchLabels`, 'peers are matched by service, not version');
  if (dir === 'egress') {
    if (p.namespaceSelector !== undefined) throw new Refusal(`${field}/namespaceSelector`, 'etz egress rules name services, hosts or CIDR blocks, not namespaces');
    if (pod?.service === undefined) throw new Refusal(`${field}/podSelector`, 'etz egress rules name services: give matchLabels app');
    peer.services = [pod.service];
    return peer;
  }
  // Ingress: pods are known by their identity; a service's SPIFFE ID ends in /sa/<service>.
  let peerNs: string | undefined = ns;
  if (p.namespaceSelector !== undefined) peerNs = namespaceOf(p.namespaceSelector, `${field}/namespaceSelector`);
  if (pod?.service !== undefined) peer.services = [pod.service];
  if (peerNs !== undefined) peer.namespaces = [peerNs];
  else if (!peer.services) peer.principals = ['*']; // every pod of every namespace: any mesh identity
  return peer;
}

function importK8s(doc: Obj): NetworkPolicy {
  only(doc, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '');
  const md = obj(doc.metadata, '/metadata');
  if (typeof md.name !== 'string') throw new Refusal('/metadata/name', 'is required');
  const ns = typeof md.namespace === 'string' ? md.namespace : 'default';
  const spec = obj(doc.spec, '/spec');
  only(spec, ['podSelector', 'policyTypes', 'ingress', 'egress'], '/spec');
  const target: Selector = { ...labelSelector(spec.podSelector ?? {}, '/spec/podSelector'), namespace: ns };
  const types = spec.policyTypes !== undefined ? strs(spec.policyTypes, '/spec/policyTypes') : ['Ingress', ...(spec.egress !== undefined ? ['Egress'] : [])];
  types.forEach((t, i) => {
    if (t !== 'Ingress' && t !== 'Egress') throw new Refusal(`/spec/policyTypes/${i}`, 'must be Ingress or Egress');
  });
  const rules = (dir: 'ingress' | 'egress'): NetRule[] => {
    const list = spec[dir];
    if (list === undefined || list === null) return [];
    return arr(list, `/spec/${dir}`).map((r, i) => {
      const f = `/spec/${dir}/${i}`;
      const rule = obj(r, f);
      const peerKey = dir === 'ingress' ? 'from' : 'to';
      only(rule, [peerKey, 'ports'], f);
      const out: NetRule = { action: 'ALLOW' };
      if (rule[peerKey] !== undefined) {
        const peers = arr(rule[peerKey], `${f}/${peerKey}`).map((x, k) => k8sPeer(x, `${f}/${peerKey}/${k}`, dir, ns));
        if (peers.length) out[peerKey] = peers;
      }
      if (rule.ports !== undefined) {
        const ports = k8sPorts(rule.ports, `${f}/ports`);
        if (ports.length) out.ports = ports;
      }
      return out;
    });
  };
  const out: NetworkPolicy = { apiVersion: 'etz.io/v1', kind: 'NetworkPolicy', metadata: { name: md.name, namespace: ns }, spec: { target } };
  if (types.includes('Ingress')) out.spec.ingress = rules('ingress');
  else if (spec.ingress !== undefined) throw new Refusal('/spec/ingress', 'given, but policyTypes does not include Ingress');
  if (types.includes('Egress')) out.spec.egress = rules('egress');
  else if (spec.egress !== undefined) throw new Refusal('/spec/egress', 'given, but policyTypes does not include Egress');
  return out;
}

/**
 * Convert raw Istio / Kubernetes documents (etz documents pass through) into validated etz
 * documents. Throws ConfigError (code ETZ_ERR_POLICY_IMPORT) naming the file and field.
 */
export function importPolicies(file: string, docs: readonly unknown[], opts: ImportOptions = {}): PolicyDocument[] {
  const many = docs.length > 1;
  const out = docs.map((d, i) => {
    const at = (field: string) => (many ? `/${i}${field}` : field || '/');
    try {
      const doc = obj(d, '');
      const api = doc.apiVersion;
      if (doc.kind === 'AuthorizationPolicy' && (api === 'security.istio.io/v1' || api === 'security.istio.io/v1beta1')) return importIstio(doc, opts);
      if (doc.kind === 'NetworkPolicy' && api === 'networking.k8s.io/v1') return importK8s(doc);
      if (api === 'etz.io/v1') return doc as unknown as PolicyDocument;
      throw new Refusal('/kind', `${String(api)} ${String(doc.kind)} cannot be imported (supported: security.istio.io/v1 AuthorizationPolicy, networking.k8s.io/v1 NetworkPolicy)`);
    } catch (err) {
      if (err instanceof Refusal) throw new ConfigError(file, at(err.field), err.reason, 'ETZ_ERR_POLICY_IMPORT');
      throw err;
    }
  });
  return validatePolicyDocuments(file, out);
}
