import type { InboundMode } from './options.js';
import type { PortLevelConfig } from './port-modes.js';

/**
 * The sidecar config's `tls` section: mesh mTLS. Present → the inbound listener is guarded
 * (STRICT unless told otherwise) and outbound requests to mesh services originate mTLS. The
 * identity comes from, in order: an identity passed in code (the control client's enrollment),
 * cert/key/CA files (static, `etz ca issue`), or a local CA directory (`caDir`, issued and renewed
 * in process).
 */
export interface MeshTlsConfig {
  /** Inbound mode: STRICT (client certificate required), PERMISSIVE (mTLS or plaintext), DISABLE. */
  mode: InboundMode;
  /**
   * Per workload port overrides of `mode` (Istio's portLevelMtls): `{ "9090": PERMISSIVE }`. The
   * port is the original destination under iptables interception, else the listener port reached.
   */
  portLevel: PortLevelConfig;
  trustDomain: string;
  /** Default: spiffe://<trustDomain>/ns/<service.namespace>/sa/<service.name>. */
  spiffeId?: string;
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  caDir?: string;
  /** Lifetime of certificates issued from caDir. */
  certTtlMs: number;
  renewFraction: number;
  minVersion: 'TLSv1.3' | 'TLSv1.2';
  /** TLS 1.3 suites, colon-separated. */
  cipherSuites: string;
  /** Originate mTLS to registry services (outbound and gateway listeners). */
  originate: boolean;
  /** Registry services reached in plaintext (no sidecar): opt-outs, never a fallback. */
  plaintextServices: string[];
  /** Extra trust domains whose identities are accepted (federation); the own one always is. */
  trustDomains: string[];
  /** How often static cert/key/CA files are checked for replacement (hot reload). */
  watchIntervalMs: number;
}

const file = { type: 'string', minLength: 1 } as const;

export const meshTlsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { enum: ['STRICT', 'PERMISSIVE', 'DISABLE'], default: 'STRICT' },
    // Keys are checked by compilePortModes (a port 1-65535), which names the offending key.
    portLevel: { type: 'object', additionalProperties: { enum: ['STRICT', 'PERMISSIVE', 'DISABLE'] }, default: {} },
    trustDomain: { type: 'string', pattern: '^[a-z0-9._-]+$', maxLength: 255, default: 'etz.local' },
    spiffeId: { type: 'string', pattern: '^spiffe://' },
    certFile: file,
    keyFile: file,
    caFile: file,
    caDir: file,
    certTtlMs: { type: 'integer', minimum: 1000, default: 86_400_000 },
    renewFraction: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1, default: 0.5 },
    minVersion: { enum: ['TLSv1.3', 'TLSv1.2'], default: 'TLSv1.3' },
    cipherSuites: { type: 'string', pattern: '^TLS_[A-Z0-9_]+(:TLS_[A-Z0-9_]+)*$', default: 'TLS_AES_256_GCM_SHA384' },
    originate: { type: 'boolean', default: true },
    plaintextServices: { type: 'array', items: { type: 'string' }, default: [] },
    trustDomains: { type: 'array', items: { type: 'string', pattern: '^[a-z0-9._-]+$' }, default: [] },
    watchIntervalMs: { type: 'integer', minimum: 100, default: 10_000 },
  },
  dependentRequired: { certFile: ['keyFile', 'caFile'], keyFile: ['certFile', 'caFile'], caFile: ['certFile', 'keyFile'] },
} as const;
