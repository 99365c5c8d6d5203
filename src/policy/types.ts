/**
 * The policy model: what operators write (YAML documents, see docs/policy.md) and what the
 * evaluator sees per request. Documents are plain data, validated by ./schema.ts and ./load.ts;
 * ./compile.ts turns a set of them into the per-destination index evaluated on the hot path.
 */

export const API_VERSION = 'etz.io/v1';

export type AuthzAction = 'ALLOW' | 'DENY' | 'AUDIT';
export type NetAction = 'ALLOW' | 'DENY';

export interface Metadata {
  name: string;
  namespace?: string;
}

/** Which destination workloads a policy applies to. Every field given must match; none = mesh-wide. */
export interface Selector {
  service?: string;
  version?: string;
  namespace?: string;
  /** A zone the destination is in (zones arrive with the request, from the zone-rules filter). */
  zone?: string;
}

/** Fields are ANDed; the values of one field are ORed; `not…` lists exclude. */
export interface SourceMatch {
  principals?: string[];
  notPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  zones?: string[];
  notZones?: string[];
  /** End-user principals (from a verified token or the configured header). */
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
}

export interface OperationMatch {
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
  ports?: number[];
  notPorts?: number[];
  hosts?: string[];
  notHosts?: string[];
}

/**
 * A condition on one request attribute. `header: NAME` is short for
 * `key: request.headers[NAME]`. Keys: request.headers[NAME], source.ip, source.namespace,
 * source.principal, source.zone, request.auth.principal, destination.port, destination.zone.
 */
export interface Condition {
  key?: string;
  header?: string;
  values?: string[];
  notValues?: string[];
}

export interface AuthzRule {
  from?: SourceMatch[];
  to?: OperationMatch[];
  when?: Condition[];
}

export interface AuthorizationPolicy {
  apiVersion: typeof API_VERSION;
  kind: 'AuthorizationPolicy';
  metadata: Metadata;
  spec: {
    selector?: Selector;
    action?: AuthzAction;
    /** Absent or empty: an ALLOW policy allows nothing, a DENY or AUDIT policy matches nothing. */
    rules?: AuthzRule[];
  };
}

export interface PortRange {
  port: number;
  /** Inclusive end of a port range. */
  endPort?: number;
  protocol?: 'TCP';
}

export interface NetPeer {
  principals?: string[];
  namespaces?: string[];
  /** Services by name: sources for ingress (their identity's service account), destinations for egress. */
  services?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  zones?: string[];
  /** Egress only: host names (globs) outside or inside the mesh. */
  hosts?: string[];
}

export interface NetRule {
  action?: NetAction;
  /** Ingress: sources; absent = any source. */
  from?: NetPeer[];
  /** Egress: destinations; absent = any destination. */
  to?: NetPeer[];
  /** Absent = every port. */
  ports?: PortRange[];
  protocol?: 'TCP';
}

export interface NetworkPolicy {
  apiVersion: typeof API_VERSION;
  kind: 'NetworkPolicy';
  metadata: Metadata;
  spec: {
    target?: Selector;
    /** Present (even empty) = this policy governs ingress of the target; `[]` denies all. */
    ingress?: NetRule[];
    egress?: NetRule[];
  };
}

/** Mesh-wide defaults; at most one per policy set. */
export interface PolicyDefaults {
  apiVersion: typeof API_VERSION;
  kind: 'PolicyDefaults';
  metadata: Metadata;
  spec: {
    /** When no ALLOW policy selects the workload. Default ALLOW (Istio's semantics). */
    authorization?: NetAction;
    /** When no network policy governs the target's ingress / egress. Default ALLOW. */
    ingress?: NetAction;
    egress?: NetAction;
    /** Egress to a host outside the mesh registry that no rule allows. Default DENY. */
    externalEgress?: NetAction;
  };
}

export type PolicyDocument = AuthorizationPolicy | NetworkPolicy | PolicyDefaults;

export interface ResolvedDefaults {
  authorization: NetAction;
  ingress: NetAction;
  egress: NetAction;
  externalEgress: NetAction;
}

export const DEFAULTS: Readonly<ResolvedDefaults> = Object.freeze({
  authorization: 'ALLOW',
  ingress: 'ALLOW',
  egress: 'ALLOW',
  externalEgress: 'DENY',
});

export type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

/**
 * Everything the evaluator may look at for one request. Absent fields are unknown: a positive
 * match on them fails, a `not…` match on them succeeds (the semantics Istio uses for plaintext).
 */
export interface PolicyRequest {
  /** Source SPIFFE ID, verified by mTLS. */
  sourcePrincipal?: string;
  /** Source namespace; derived from the SPIFFE ID when absent. */
  sourceNamespace?: string;
  sourceIp?: string;
  sourceZones?: readonly string[];
  /** End-user principal. */
  requestPrincipal?: string;
  destService: string;
  destVersion?: string;
  destNamespace?: string;
  destZones?: readonly string[];
  method?: string;
  /** Path without the query string. */
  path?: string;
  port?: number;
  /** Host without port, lower-case. */
  host?: string;
  /** Lower-case header names, as node:http gives them. */
  headers?: HeaderBag;
}

export interface RuleRef {
  policy: string;
  /** Index of the rule in the policy's `rules`. */
  rule: number;
}

/** One authorization decision; cached decisions are shared and frozen. */
export interface AuthzDecision {
  readonly allowed: boolean;
  /** The policy and rule that decided, or undefined when the default action / "no ALLOW matched" did. */
  readonly by?: RuleRef;
  /** 'deny-rule' | 'allow-rule' | 'no-allow-match' | 'default'. */
  readonly basis: 'deny-rule' | 'allow-rule' | 'no-allow-match' | 'default';
  /** Human explanation, e.g. `denied by policy deny-admin rule 0`. */
  readonly reason: string;
  /** AUDIT policy rules that matched (recorded, not enforcing). */
  readonly audits: readonly RuleRef[];
}
