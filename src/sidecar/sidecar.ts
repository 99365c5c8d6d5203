import { SidecarEngine, type SidecarOptions } from './engine.js';
import type { SidecarConfig } from '../config/sidecar-schema.js';

export type { SidecarOptions } from './engine.js';
export type { TelemetrySink, RequestRecord } from './telemetry.js';

/**
 * One sidecar: inbound, outbound and admin listeners beside one service. A thin public face over
 * the private engine, so the engine's shape can change without changing this API.
 */
export class Sidecar {
  readonly #engine: SidecarEngine;

  private constructor(engine: SidecarEngine) {
    this.#engine = engine;
  }

  /**
   * Validate `config` (a SidecarConfig, or a partial one: defaults are filled in; throws
   * ConfigError naming the field), compile the chains for its `resources` as version 0, and
   * listen. Port 0 in the config means an ephemeral port; read the bound ones from `ports`.
   */
  static async start(config: SidecarConfig | Record<string, unknown>, opts: SidecarOptions = {}): Promise<Sidecar> {
    return new Sidecar(await SidecarEngine.start(config, opts));
  }

  get ports(): { inbound: number; outbound: number; gateway: number; admin: number } {
    return this.#engine.ports;
  }

  get configVersion(): number {
    return this.#engine.version;
  }

  get config(): Readonly<SidecarConfig> {
    return this.#engine.config;
  }

  /**
   * Put new dynamic resources in force. Throws (ConfigError naming `/resources/<key>/…`, or the
   * filter's EtzError) and changes nothing when they are invalid; otherwise swaps every chain at
   * once — requests in flight finish on the chain they started with — then closes the live
   * connections an admission filter of the new version refuses.
   */
  applyResources(resources: Record<string, unknown>, version: number): Promise<void> {
    return this.#engine.applyResources(resources, version);
  }

  /** The effective config and chains (secrets are redacted by the admin endpoint, not here). */
  configDump(): Record<string, unknown> {
    return this.#engine.configDump();
  }

  /** Graceful drain: stop accepting, let requests in flight finish within drainMs, then close. */
  close(opts: { drainMs?: number } = {}): Promise<void> {
    return this.#engine.close(opts);
  }
}
