/**
 * The sidecar config's `manager` section: when present, the sidecar enrolls with the zone manager
 * (bootstrap token once, then its certificate), follows its config pushes and sends telemetry.
 */
export interface SidecarManagerConfig {
  /** https://host:port of the manager. */
  url: string;
  /** CA bundle the manager's certificate chains to (the manager's <dataDir>/ca/trust-bundle.pem). */
  caFile: string;
  /** Bootstrap token (prefer bootstrapTokenFile or ETZ_BOOTSTRAP_TOKEN: a token in a config file leaks). */
  bootstrapToken?: string;
  bootstrapTokenFile?: string;
  /** Certificate, key and the last good config snapshot (fail static). */
  dataDir: string;
  telemetry: { flushMs: number; maxBatch: number; bufferSize: number };
}

export const managerSectionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['url', 'caFile'],
  properties: {
    url: { type: 'string', pattern: '^https://' },
    caFile: { type: 'string', minLength: 1 },
    bootstrapToken: { type: 'string', pattern: '^etzb_' },
    bootstrapTokenFile: { type: 'string', minLength: 1 },
    dataDir: { type: 'string', minLength: 1, default: 'etz-sidecar-data' },
    telemetry: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        flushMs: { type: 'integer', minimum: 10, default: 1000 },
        maxBatch: { type: 'integer', minimum: 1, maximum: 10000, default: 500 },
        bufferSize: { type: 'integer', minimum: 1, default: 10000 },
      },
    },
  },
} as const;
