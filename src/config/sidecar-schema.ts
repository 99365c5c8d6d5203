import type { Schema } from 'ajv';
import { loadConfig } from './load.js';
import { meshTlsSchema, type MeshTlsConfig } from '../sidecar/tls/config.js';
import { managerSectionSchema, type SidecarManagerConfig } from '../sidecar/control/config.js';

/**
 * The sidecar's config file. Static sections (service, listeners, timeouts, limits, registry,
 * logging, telemetry) are read once at start; `resources` holds the dynamic part that the zone
 * manager later replaces as a whole through Sidecar.applyResources. Every field has a default
 * except the service name, so the smallest valid file is `service: { name: reviews }` plus the
 * application port.
 */

export interface EndpointConfig {
  address: string;
  port: number;
  version?: string;
  instance?: string;
  labels?: Record<string, string>;
}

export interface ServiceEntryConfig {
  endpoints: EndpointConfig[];
  /** Expected SPIFFE ID of the service's sidecars (checked by mTLS origination). */
  spiffeId?: string;
  /** The port the application uses to call this service (`reviews:9080`). */
  port?: number;
}

export interface SidecarConfig {
  service: { name: string; version: string; instance: string; namespace: string };
  /**
   * `extraPorts`: more inbound listener ports on the same host, each leading to the same
   * application (appHost:appPort) through the same chain; they exist so a port can have its own
   * mTLS mode (tls.portLevel) without iptables, e.g. a plaintext metrics scrape port.
   */
  inbound: { enabled: boolean; host: string; port: number; appHost: string; appPort: number; extraPorts: number[] };
  outbound: { enabled: boolean; host: string; port: number };
  /** The ingress gateway listener (`etz gateway`): external HTTP(S) in, routed into the mesh. */
  gateway: { enabled: boolean; host: string; port: number; tls?: { certFile: string; keyFile: string } };
  admin: { enabled: boolean; host: string; port: number; token?: string };
  timeouts: {
    /** TCP (and TLS) connect to an upstream endpoint. */
    connectMs: number;
    /** From the request sent upstream to the response headers. */
    firstByteMs: number;
    /** Longest silence inside a response body, and idle keep-alive downstream connections. */
    idleMs: number;
    /** The whole exchange, request start to response end; 0 turns it off. */
    requestMs: number;
    /** The client must send the complete request head within this. */
    headersMs: number;
  };
  limits: {
    maxHeaderBytes: number;
    maxHeaders: number;
    /** 0 means no limit: bodies stream, so size costs no memory. */
    maxBodyBytes: number;
    maxConnections: number;
  };
  upstream: { connectionsPerEndpoint: number; keepAliveMs: number };
  registry: Record<string, ServiceEntryConfig>;
  logging: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'; accessLog: boolean };
  telemetry: { enabled: boolean };
  drain: { timeoutMs: number };
  resources: Record<string, unknown>;
  /** Mesh mTLS (src/sidecar/tls/config.ts); absent: plaintext unless an identity is passed in code. */
  tls?: MeshTlsConfig;
  /** Zone manager connection (src/sidecar/control/config.ts); absent: the sidecar runs on its file config alone. */
  manager?: SidecarManagerConfig;
}

const port = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const ms = { type: 'integer', minimum: 0 } as const;
const host = { type: 'string', minLength: 1 } as const;
/** Every optional section is closed to unknown keys and defaults to {} so its own defaults apply when it is left out. */
const section = { type: 'object', additionalProperties: false, default: {} } as const;

function listener(enabled: boolean, hostDefault: string, portDefault: number) {
  return { enabled: { type: 'boolean', default: enabled }, host: { ...host, default: hostDefault }, port: { ...port, default: portDefault } } as const;
}

export const endpointSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['address', 'port'],
  properties: {
    address: host,
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    version: { type: 'string' },
    instance: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const;

export const sidecarSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['service'],
  properties: {
    service: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$', maxLength: 63 },
        version: { type: 'string', default: 'unknown' },
        instance: { type: 'string', default: '' },
        namespace: { type: 'string', default: 'default' },
      },
    },
    inbound: {
      ...section,
      properties: {
        ...listener(true, '0.0.0.0', 15006),
        appHost: { ...host, default: '127.0.0.1' },
        appPort: { type: 'integer', minimum: 1, maximum: 65535, default: 8080 },
        extraPorts: { type: 'array', items: { type: 'integer', minimum: 1, maximum: 65535 }, uniqueItems: true, maxItems: 64, default: [] },
      },
    },
    outbound: {
      ...section,
      properties: {
        ...listener(true, '127.0.0.1', 15001),
      },
    },
    gateway: {
      ...section,
      properties: {
        ...listener(false, '0.0.0.0', 8080),
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['certFile', 'keyFile'],
          properties: { certFile: { type: 'string', minLength: 1 }, keyFile: { type: 'string', minLength: 1 } },
        },
      },
    },
    admin: {
      ...section,
      properties: {
        ...listener(true, '127.0.0.1', 15000),
        token: { type: 'string', minLength: 16 },
      },
    },
    timeouts: {
      ...section,
      properties: {
        connectMs: { ...ms, minimum: 1, default: 5000 },
        firstByteMs: { ...ms, minimum: 1, default: 15000 },
        idleMs: { ...ms, minimum: 1, default: 60000 },
        requestMs: { ...ms, default: 0 },
        headersMs: { ...ms, minimum: 1, default: 10000 },
      },
    },
    limits: {
      ...section,
      properties: {
        maxHeaderBytes: { type: 'integer', minimum: 1024, maximum: 1048576, default: 16384 },
        maxHeaders: { type: 'integer', minimum: 8, maximum: 2000, default: 100 },
        maxBodyBytes: { ...ms, default: 0 },
        maxConnections: { type: 'integer', minimum: 1, default: 10000 },
      },
    },
    upstream: {
      ...section,
      properties: {
        connectionsPerEndpoint: { type: 'integer', minimum: 1, maximum: 4096, default: 256 },
        keepAliveMs: { ...ms, minimum: 1, default: 4000 },
      },
    },
    registry: {
      type: 'object',
      default: {},
      propertyNames: { pattern: '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['endpoints'],
        properties: {
          endpoints: { type: 'array', items: endpointSchema },
          spiffeId: { type: 'string', pattern: '^spiffe://' },
          port: { type: 'integer', minimum: 1, maximum: 65535 },
        },
      },
    },
    logging: {
      ...section,
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
        accessLog: { type: 'boolean', default: false },
      },
    },
    telemetry: {
      ...section,
      properties: { enabled: { type: 'boolean', default: true } },
    },
    drain: {
      ...section,
      properties: { timeoutMs: { ...ms, default: 10000 } },
    },
    // Validated per key by the filter registry (src/sidecar/filters/index.ts), not here: each filter
    // owns the schema of its resource.
    resources: { type: 'object', default: {} },
    tls: meshTlsSchema,
    manager: managerSectionSchema,
  },
};

export const SIDECAR_ENV_PREFIX = 'ETZ_SIDECAR_';

/** Load, apply ETZ_SIDECAR_* overrides, validate; throws ConfigError naming file, field and reason. */
export function loadSidecarConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<SidecarConfig> {
  return loadConfig<SidecarConfig>(file, sidecarSchema, { envPrefix: SIDECAR_ENV_PREFIX, env });
}
