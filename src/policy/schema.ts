/**
 * JSON schemas of the policy documents. Structure is checked here (ajv, unknown fields refused);
 * what a schema cannot say — valid CIDRs, known condition keys, at most one PolicyDefaults —
 * ./load.ts checks after, with the same file/field/reason errors.
 */

const name = { type: 'string', pattern: '^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$' };
const strings = { type: 'array', minItems: 1, items: { type: 'string', minLength: 1, maxLength: 1024 } };
const port = { type: 'integer', minimum: 1, maximum: 65535 };
const ports = { type: 'array', minItems: 1, items: port };

const metadata = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name, namespace: name, labels: { type: 'object', additionalProperties: { type: 'string' } } },
};

const selector = {
  type: 'object',
  additionalProperties: false,
  properties: { service: name, version: name, namespace: name, zone: name },
};

const source = {
  type: 'object',
  additionalProperties: false,
  properties: {
    principals: strings,
    notPrincipals: strings,
    namespaces: strings,
    notNamespaces: strings,
    ipBlocks: strings,
    notIpBlocks: strings,
    zones: strings,
    notZones: strings,
    requestPrincipals: strings,
    notRequestPrincipals: strings,
  },
};

const operation = {
  type: 'object',
  additionalProperties: false,
  properties: {
    methods: strings,
    notMethods: strings,
    paths: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[/*{]', maxLength: 2048 } },
    notPaths: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[/*{]', maxLength: 2048 } },
    ports,
    notPorts: ports,
    hosts: strings,
    notHosts: strings,
  },
};

const condition = {
  type: 'object',
  additionalProperties: false,
  properties: {
    key: { type: 'string', minLength: 1 },
    header: { type: 'string', pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" },
    values: { type: 'array', minItems: 1, items: { type: 'string' } },
    notValues: { type: 'array', minItems: 1, items: { type: 'string' } },
  },
};

const authzRule = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: { type: 'array', minItems: 1, items: source },
    to: { type: 'array', minItems: 1, items: operation },
    when: { type: 'array', minItems: 1, items: condition },
  },
};

export const authorizationPolicySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'etz.io/v1' },
    kind: { const: 'AuthorizationPolicy' },
    metadata,
    spec: {
      type: 'object',
      additionalProperties: false,
      properties: {
        selector,
        action: { enum: ['ALLOW', 'DENY', 'AUDIT'], default: 'ALLOW' },
        rules: { type: 'array', items: authzRule },
      },
    },
  },
} as const;

const peer = {
  type: 'object',
  additionalProperties: false,
  properties: {
    principals: strings,
    namespaces: strings,
    services: strings,
    ipBlocks: strings,
    notIpBlocks: strings,
    zones: strings,
    hosts: strings,
  },
};

const portRange = {
  type: 'object',
  additionalProperties: false,
  required: ['port'],
  properties: { port, endPort: port, protocol: { const: 'TCP' } },
};

const netRule = (peerField: 'from' | 'to') => ({
  type: 'object',
  additionalProperties: false,
  properties: {
    action: { enum: ['ALLOW', 'DENY'], default: 'ALLOW' },
    [peerField]: { type: 'array', minItems: 1, items: peer },
    ports: { type: 'array', minItems: 1, items: portRange },
    protocol: { const: 'TCP' },
  },
});

export const networkPolicySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'etz.io/v1' },
    kind: { const: 'NetworkPolicy' },
    metadata,
    spec: {
      type: 'object',
      additionalProperties: false,
      properties: {
        target: selector,
        ingress: { type: 'array', items: netRule('from') },
        egress: { type: 'array', items: netRule('to') },
      },
    },
  },
} as const;

const netAction = { enum: ['ALLOW', 'DENY'] };

export const policyDefaultsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'etz.io/v1' },
    kind: { const: 'PolicyDefaults' },
    metadata,
    spec: {
      type: 'object',
      additionalProperties: false,
      properties: { authorization: netAction, ingress: netAction, egress: netAction, externalEgress: netAction },
    },
  },
} as const;

export const KIND_SCHEMAS = {
  AuthorizationPolicy: authorizationPolicySchema,
  NetworkPolicy: networkPolicySchema,
  PolicyDefaults: policyDefaultsSchema,
} as const;

/** Any one etz policy document, dispatched on `kind` (for embedding in other schemas). */
export const policyDocumentSchema = {
  type: 'object',
  required: ['kind'],
  properties: { kind: { enum: Object.keys(KIND_SCHEMAS) } },
  allOf: Object.entries(KIND_SCHEMAS).map(([kind, schema]) => ({
    if: { properties: { kind: { const: kind } }, required: ['kind'] },
    then: schema,
  })),
};

/**
 * The sidecar resources `policies` and `networkPolicies`: a list of policy documents. Each filter
 * takes the kinds it enforces (PolicyDefaults may appear in either).
 */
export const policyResourceSchema = { type: 'array', maxItems: 100000, items: policyDocumentSchema };
