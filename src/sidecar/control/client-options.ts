import type { Logger } from '../../core/logger.js';
import type { Registry } from '../../core/metrics.js';
import type { NodeInfo } from '../../protocol/messages.js';

// Kept apart from the client so the modules it is built from can take its options without
// importing the client itself.

export interface ApplyTarget {
  applyResources(resources: Record<string, unknown>, version: number): Promise<void>;
}

export interface ControlClientOptions {
  /** Manager base URL, e.g. https://127.0.0.1:15012. */
  url: string;
  /** PEM of the CA that issued the manager's certificate (the mesh trust bundle). */
  caPem: string;
  dataDir: string;
  node: NodeInfo;
  /** Where versions are applied; may be given later with attach(). */
  target?: ApplyTarget;
  bootstrapToken?: string;
  logger?: Logger;
  metrics?: Registry;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  heartbeatMs?: number;
  /** No frame from the manager for this long: the stream is considered dead. */
  idleTimeoutMs?: number;
  /** Renew when this fraction of the certificate lifetime has passed (default 2/3). */
  renewAt?: number;
  maxPayloadBytes?: number;
  telemetry?: { capacity?: number; maxBatch?: number; flushMs?: number };
  /** Keep the fail-static snapshot on disk (default true). */
  persistSnapshot?: boolean;
}

export interface ControlClientEvents {
  applied: [version: number];
  nacked: [version: number, error: string];
  connected: [];
  disconnected: [code: number, reason: string];
  enrolled: [spiffeId: string];
  renewed: [expiresAt: number];
  error: [err: Error];
  /** The manager revoked this sidecar's identity; the client stops reconnecting. */
  revoked: [reason: string];
}

/** Full jitter: after a manager restart, a thousand sidecars must not reconnect in lockstep. */
export function backoffDelay(attempt: number, o: Pick<ControlClientOptions, 'backoffBaseMs' | 'backoffMaxMs'>): number {
  const cap = Math.min(o.backoffMaxMs ?? 30_000, (o.backoffBaseMs ?? 250) * 2 ** Math.min(attempt, 20));
  return Math.round(Math.random() * cap);
}
