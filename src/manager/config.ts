import type { Schema } from 'ajv';
import { loadConfig } from '../config/load.js';
import { ALERTS_SECTION_SCHEMA, DETECTORS_SECTION_SCHEMA, RISK_SECTION_SCHEMA, ZONES_SECTION_SCHEMA, resolveEngineConfig, type EngineConfig } from './risk/config.js';

/**
 * The manager's config. Every field has a default, so `etz manager` runs with no file at all.
 * Overrides: ETZ_MANAGER_<FIELD>__<SUB>=value (e.g. ETZ_MANAGER_LISTEN__PORT=15012).
 * The engine sections (`risk`, `zones`, `detectors`, `alerts`) use the engine's own schemas, so
 * `etz manager` and `etz replay` read the same config file the same way.
 */
export interface ManagerConfig {
  dataDir: string;
  trustDomain: string;
  listen: { host: string; port: number };
  /** Directory of an existing CA (CA_FILES layout); default: <dataDir>/ca, created on first start. */
  caDir?: string;
  certTtl: string;
  api: { adminIdentities: string[]; maxBodyBytes: number };
  pubsub: {
    debounceMs: number;
    heartbeatMs: number;
    /** A stream with no frame from the sidecar for this long is closed. */
    idleTimeoutMs: number;
    ackTimeoutMs: number;
    maxPayloadBytes: number;
    maxBufferedBytes: number;
  };
  tokens: { defaultTtl: string };
  store: { compactBytes: number; auditRetain: number };
  telemetry: { maxRecordsPerMessage: number };
  /** The live web dashboard (plain HTTP on loopback by default, admin token required). */
  dashboard: { enabled: boolean; host: string; port: number; refreshMs: number };
  /** Tick of the risk engine's clock. */
  advanceMs: number;
  risk: Record<string, unknown>;
  zones: Record<string, unknown>;
  detectors: Record<string, unknown>;
  alerts: Record<string, unknown>;
}

const ms = (def: number, min = 0) => ({ type: 'integer', minimum: min, default: def });

export const managerConfigSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dataDir: { type: 'string', minLength: 1, default: 'etz-manager-data' },
    trustDomain: { type: 'string', pattern: '^[a-z0-9][a-z0-9.-]*$', default: 'etz.local' },
    listen: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 15012 },
      },
    },
    caDir: { type: 'string', minLength: 1 },
    certTtl: { type: 'string', pattern: '^\\d+(ms|s|m|h|d)$', default: '24h' },
    api: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        adminIdentities: { type: 'array', items: { type: 'string', pattern: '^spiffe://' }, default: [] },
        maxBodyBytes: { type: 'integer', minimum: 1024, default: 1048576 },
      },
    },
    pubsub: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        debounceMs: { type: 'integer', minimum: 0, maximum: 10000, default: 10 },
        heartbeatMs: ms(10000, 50),
        idleTimeoutMs: ms(35000, 100),
        ackTimeoutMs: ms(30000, 100),
        maxPayloadBytes: { type: 'integer', minimum: 1024, default: 4194304 },
        maxBufferedBytes: { type: 'integer', minimum: 1024, default: 4194304 },
      },
    },
    tokens: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { defaultTtl: { type: 'string', pattern: '^\\d+(ms|s|m|h|d)$', default: '1h' } },
    },
    store: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        compactBytes: { type: 'integer', minimum: 4096, default: 8388608 },
        auditRetain: { type: 'integer', minimum: 100, default: 100000 },
      },
    },
    telemetry: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { maxRecordsPerMessage: { type: 'integer', minimum: 1, maximum: 10000, default: 5000 } },
    },
    dashboard: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 15080 },
        refreshMs: { type: 'integer', minimum: 100, maximum: 60000, default: 1000 },
      },
    },
    advanceMs: ms(1000, 10),
    risk: { ...RISK_SECTION_SCHEMA, default: {} },
    zones: { ...ZONES_SECTION_SCHEMA, default: {} },
    detectors: { ...DETECTORS_SECTION_SCHEMA, default: {} },
    alerts: { ...ALERTS_SECTION_SCHEMA, default: {} },
  },
};

export async function loadManagerConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<ManagerConfig> {
  const cfg = await loadConfig<ManagerConfig>(file, managerConfigSchema, { env, envPrefix: 'ETZ_MANAGER_' });
  // Cross-field checks of the engine sections (level order, exit ≤ enter, detector names).
  engineConfigOf(cfg, file ?? '(environment)');
  return cfg;
}

export function engineConfigOf(cfg: ManagerConfig, file = '(config)'): EngineConfig {
  return resolveEngineConfig({ risk: cfg.risk, zones: cfg.zones, detectors: cfg.detectors, alerts: cfg.alerts }, file);
}
