import type { Schema } from 'ajv';
import { validateConfig } from '../../config/load.js';
import { ConfigError } from '../../core/errors.js';
import { seriesDetectors } from '../../scoring/index.js';

/**
 * The manager config sections owned by the risk engine and zone manager: `risk`, `zones`,
 * `detectors`, `alerts`. The manager embeds `ENGINE_SECTIONS_SCHEMA` into its own schema, and
 * `etz replay` validates against the same object, so both get the same defaults.
 */

const level = { type: 'string', enum: ['low', 'medium', 'high', 'critical'] } as const;
const target = {
  type: 'object',
  additionalProperties: false,
  required: ['service', 'version'],
  properties: { service: { type: 'string', minLength: 1 }, version: { type: 'string', minLength: 1 } },
} as const;

const zonePolicy = (enterScore: number, exitScore: number, enterWindows: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    default: {},
    properties: {
      enabled: { type: 'boolean', default: true },
      enterScore: { type: 'number', minimum: 0, maximum: 100, default: enterScore },
      exitScore: { type: 'number', minimum: 0, maximum: 100, default: exitScore },
      enterWindows: { type: 'integer', minimum: 1, default: enterWindows },
      coolDownMs: { type: 'integer', minimum: 0, default: 300_000 },
      ttlMs: { type: 'integer', minimum: 1000, default: 3_600_000 },
    },
  }) as const;

export const RISK_SECTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    windowMs: { type: 'integer', minimum: 1000, maximum: 3_600_000, default: 10_000, description: 'Length of a scoring window.' },
    allowedLatenessMs: { type: 'integer', minimum: 0, maximum: 60_000, default: 5000, description: 'How late a record may arrive before its window closes.' },
    warmupWindows: { type: 'integer', minimum: 1, default: 18, description: 'Windows a subject is observed before its baseline is trusted.' },
    baselineAlpha: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.05, description: 'EWMA weight of a new window in a baseline.' },
    maxSubjects: { type: 'integer', minimum: 100, default: 100_000, description: 'Bound on tracked subjects (least recently seen are forgotten).' },
    levels: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        medium: { type: 'number', minimum: 0, maximum: 100, default: 25 },
        high: { type: 'number', minimum: 0, maximum: 100, default: 50 },
        critical: { type: 'number', minimum: 0, maximum: 100, default: 80 },
      },
    },
    spike: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'A feature is anomalous when it is both this many times its baseline and this many deviations above it.',
      properties: {
        minRatio: { type: 'number', minimum: 1, default: 4 },
        minZ: { type: 'number', minimum: 0, default: 4 },
      },
    },
    services: {
      type: 'object',
      default: {},
      description: 'Per-service labels (e.g. sensitive, latency-critical) and principals allowed into isolation.',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          labels: { type: 'array', items: { type: 'string' }, default: [] },
          allow: { type: 'array', items: { type: 'string' }, default: [] },
        },
      },
    },
    rules: {
      type: 'array',
      default: [],
      description: 'Threshold rules on window features.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'feature', 'above', 'points'],
        properties: {
          name: { type: 'string', minLength: 1 },
          subject: { type: 'string', enum: ['service', 'instance', 'edge'], default: 'service' },
          feature: {
            type: 'string',
            enum: ['requestsIn', 'requestsOut', 'errorRate', 'clientErrorRate', 'authFailures', 'latencyP50', 'latencyP95', 'bytesIn', 'bytesOut', 'fanOut', 'newEdges', 'newPaths', 'principals', 'errorLogs'],
          },
          above: { type: 'number' },
          points: { type: 'number', minimum: 0, maximum: 100 },
        },
      },
    },
    feeds: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Vulnerability and threat-intel files, re-read when they change.',
      properties: {
        files: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['file'],
            properties: {
              file: { type: 'string', minLength: 1 },
              service: { type: 'string', minLength: 1, description: 'For a Trivy report: the service it scanned (default: from the image name).' },
              source: { type: 'string' },
            },
          },
        },
        reloadMs: { type: 'integer', minimum: 1000, default: 30_000 },
      },
    },
    principals: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        scraping: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: "The paper's rule: more than maxRequests distinct requests within windowMs.",
          properties: {
            enabled: { type: 'boolean', default: true },
            maxRequests: { type: 'integer', minimum: 1, default: 5 },
            windowMs: { type: 'integer', minimum: 1000, default: 60_000 },
            action: { type: 'string', enum: ['route', 'ratelimit', 'block'], default: 'route' },
            to: { ...target, default: { service: 'reviews', version: 'v1' } },
          },
        },
        authFailures: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Credential stuffing: more than maxFailures 401/403 answers within windowMs.',
          properties: {
            enabled: { type: 'boolean', default: true },
            maxFailures: { type: 'integer', minimum: 1, default: 10 },
            windowMs: { type: 'integer', minimum: 1000, default: 60_000 },
            action: { type: 'string', enum: ['route', 'ratelimit', 'block'], default: 'block' },
          },
        },
        flagTtlMs: { type: 'integer', minimum: 1000, default: 600_000 },
        maxTracked: { type: 'integer', minimum: 100, default: 100_000 },
      },
    },
  },
} as const;

export const DETECTORS_SECTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    controlChart: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        detector: { type: 'string', default: 'ewma' },
        weight: { type: 'number', minimum: 0, maximum: 100, default: 15 },
      },
    },
    changePoint: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        detector: { type: 'string', default: 'cusum' },
        weight: { type: 'number', minimum: 0, maximum: 100, default: 15 },
      },
    },
    multivariate: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        seed: { type: 'integer', default: 7 },
        weight: { type: 'number', minimum: 0, maximum: 100, default: 20 },
      },
    },
    priors: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        vulnWeight: { type: 'number', minimum: 0, maximum: 100, default: 30 },
        intelWeight: { type: 'number', minimum: 0, maximum: 100, default: 90 },
      },
    },
  },
} as const;

export const ZONES_SECTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    mode: { type: 'string', enum: ['enforce', 'shadow'], default: 'enforce', description: 'shadow: zones are computed and reported, not enforced.' },
    containment: {
      ...zonePolicy(80, 50, 2),
      properties: {
        ...zonePolicy(80, 50, 2).properties,
        outbound: { type: 'string', enum: ['block', 'scrutinise'], default: 'block' },
        allow: { type: 'array', items: { type: 'string' }, default: ['etz-manager', 'dns'], description: 'Services a contained workload may still call.' },
        scrutiniseRatePerMinute: { type: 'integer', minimum: 1, default: 60 },
      },
    },
    isolation: {
      ...zonePolicy(50, 35, 2),
      properties: {
        ...zonePolicy(50, 35, 2).properties,
        labels: { type: 'array', items: { type: 'string' }, default: ['sensitive'] },
        allowPrincipals: { type: 'array', items: { type: 'string' }, default: [], description: 'SPIFFE IDs or service names allowed to call any isolated service.' },
      },
    },
    performance: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        labels: { type: 'array', items: { type: 'string' }, default: ['latency-critical'] },
        measured: { type: 'boolean', default: false, description: 'Also group services measured as latency-critical (fast and busy) that talk mostly to each other.' },
        maxP95Ms: { type: 'number', minimum: 0, default: 20, description: 'Measured latency-critical: inbound p95 at most this.' },
        minRequestsPerWindow: { type: 'number', minimum: 0, default: 10 },
        minShare: { type: 'number', minimum: 0, maximum: 1, default: 0.7, description: 'Share of a service\'s outbound calls that must go to the other member.' },
        coolDownMs: { type: 'integer', minimum: 0, default: 300_000, description: 'How long a measured group may be gone before its zone dissolves.' },
      },
    },
    blastRadius: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxInstanceShare: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
        maxMeshShare: { type: 'number', minimum: 0, maximum: 1, default: 0.3 },
      },
    },
  },
} as const;

export const ALERTS_SECTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    minLevel: { ...level, default: 'high', description: 'Risk level from which a subject raises an alert.' },
    webhook: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', pattern: '^https?://' },
        timeoutMs: { type: 'integer', minimum: 100, default: 5000 },
        headers: { type: 'object', additionalProperties: { type: 'string' }, default: {} },
        maxQueue: { type: 'integer', minimum: 1, default: 1000 },
      },
    },
  },
} as const;

/** The four sections as `properties` of a config object (embed into the manager's schema). */
export const ENGINE_SECTIONS = {
  risk: RISK_SECTION_SCHEMA,
  zones: ZONES_SECTION_SCHEMA,
  detectors: DETECTORS_SECTION_SCHEMA,
  alerts: ALERTS_SECTION_SCHEMA,
} as const;

/** A config file holding only the engine sections (what `etz replay --config` accepts besides the rest of a manager config). */
export const ENGINE_CONFIG_SCHEMA: Schema = {
  type: 'object',
  additionalProperties: true,
  properties: ENGINE_SECTIONS,
};

export interface ZonePolicyConfig {
  enabled: boolean;
  enterScore: number;
  exitScore: number;
  enterWindows: number;
  coolDownMs: number;
  ttlMs: number;
}

export interface RuleConfig {
  name: string;
  subject: 'service' | 'instance' | 'edge';
  feature: string;
  above: number;
  points: number;
}

export interface EngineConfig {
  risk: {
    windowMs: number;
    allowedLatenessMs: number;
    warmupWindows: number;
    baselineAlpha: number;
    maxSubjects: number;
    levels: { medium: number; high: number; critical: number };
    spike: { minRatio: number; minZ: number };
    services: Record<string, { labels: string[]; allow: string[] }>;
    rules: RuleConfig[];
    feeds: { files: Array<{ file: string; service?: string; source?: string }>; reloadMs: number };
    principals: {
      scraping: { enabled: boolean; maxRequests: number; windowMs: number; action: 'route' | 'ratelimit' | 'block'; to: { service: string; version: string } };
      authFailures: { enabled: boolean; maxFailures: number; windowMs: number; action: 'route' | 'ratelimit' | 'block' };
      flagTtlMs: number;
      maxTracked: number;
    };
  };
  detectors: {
    controlChart: { enabled: boolean; detector: string; weight: number };
    changePoint: { enabled: boolean; detector: string; weight: number };
    multivariate: { enabled: boolean; seed: number; weight: number };
    priors: { vulnWeight: number; intelWeight: number };
  };
  zones: {
    mode: 'enforce' | 'shadow';
    containment: ZonePolicyConfig & { outbound: 'block' | 'scrutinise'; allow: string[]; scrutiniseRatePerMinute: number };
    isolation: ZonePolicyConfig & { labels: string[]; allowPrincipals: string[] };
    performance: { enabled: boolean; labels: string[]; measured: boolean; maxP95Ms: number; minRequestsPerWindow: number; minShare: number; coolDownMs: number };
    blastRadius: { maxInstanceShare: number; maxMeshShare: number };
  };
  alerts: {
    minLevel: 'low' | 'medium' | 'high' | 'critical';
    webhook?: { url: string; timeoutMs: number; headers: Record<string, string>; maxQueue: number };
  };
}

/**
 * Validate (and fill defaults of) the engine sections of a config object; `file` names the source
 * in errors. Passing `{}` gives the built-in defaults.
 */
export function resolveEngineConfig(data: Record<string, unknown> = {}, file = '(defaults)'): EngineConfig {
  const copy = structuredClone(data);
  const v = validateConfig<Record<string, unknown>>(file, ENGINE_CONFIG_SCHEMA, copy);
  const cfg = { risk: v.risk, zones: v.zones, detectors: v.detectors, alerts: v.alerts } as EngineConfig;
  // Detector names are checked here, not when the first subject is scored.
  for (const k of ['controlChart', 'changePoint'] as const) {
    const name = cfg.detectors[k].detector;
    if (!Object.hasOwn(seriesDetectors, name)) throw new ConfigError(file, `/detectors/${k}/detector`, `must be one of ${Object.keys(seriesDetectors).join(', ')}`);
  }
  const l = cfg.risk.levels;
  if (!(l.medium <= l.high && l.high <= l.critical)) throw new ConfigError(file, '/risk/levels', 'must satisfy medium <= high <= critical');
  for (const t of ['containment', 'isolation'] as const) {
    const z = cfg.zones[t];
    if (z.exitScore > z.enterScore) throw new ConfigError(file, `/zones/${t}/exitScore`, `must not exceed enterScore (${z.enterScore})`);
  }
  return cfg;
}

export function defaultEngineConfig(): EngineConfig {
  return resolveEngineConfig({});
}
