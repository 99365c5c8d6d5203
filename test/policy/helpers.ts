import { validatePolicyDocuments } from '../../src/policy/load.js';
import type { AuthorizationPolicy, NetworkPolicy, PolicyDefaults, PolicyDocument, PolicyRequest } from '../../src/policy/types.js';

/** Shorthands for building validated policy documents in tests. */
export function authz(name: string, spec: AuthorizationPolicy['spec']): AuthorizationPolicy {
  return { apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name }, spec };
}

export function netpol(name: string, spec: NetworkPolicy['spec']): NetworkPolicy {
  return { apiVersion: 'etz.io/v1', kind: 'NetworkPolicy', metadata: { name }, spec };
}

export function defaults(spec: PolicyDefaults['spec']): PolicyDefaults {
  return { apiVersion: 'etz.io/v1', kind: 'PolicyDefaults', metadata: { name: 'defaults' }, spec };
}

/** Validate like a file load would (fills defaults, throws ConfigError). */
export function set(...docs: PolicyDocument[]): PolicyDocument[] {
  return validatePolicyDocuments('test.yaml', JSON.parse(JSON.stringify(docs)) as unknown[]);
}

export const PRODUCTPAGE = 'spiffe://etz.local/ns/default/sa/productpage';
export const ATTACKER = 'spiffe://etz.local/ns/rogue/sa/miner';

export function req(over: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    sourcePrincipal: PRODUCTPAGE,
    sourceIp: '10.1.2.3',
    destService: 'reviews',
    destVersion: 'v1',
    method: 'GET',
    path: '/reviews/1',
    port: 9080,
    host: 'reviews',
    headers: {},
    ...over,
  };
}
