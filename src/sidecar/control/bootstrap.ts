import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { EtzError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/logger.js';
import type { Registry } from '../../core/metrics.js';
import type { SidecarConfig } from '../../config/sidecar-schema.js';
import { Sidecar } from '../sidecar.js';
import { tlsMaterialFromPem } from '../tls/material.js';
import { WorkloadIdentity } from '../tls/workload-identity.js';
import { ControlClient } from './client.js';
import { RESOURCE_TYPES } from '../../protocol/messages.js';
import type { SidecarManagerConfig } from './config.js';

/**
 * A sidecar under a zone manager: certificate first (from disk, or enrollment with the bootstrap
 * token), then the data plane with that identity (renewed over the control stream), then the
 * control stream applying each pushed version to the running sidecar.
 */
export async function startManagedSidecar(config: SidecarConfig & { manager: SidecarManagerConfig }, opts: { logger?: Logger; registry?: Registry; env?: NodeJS.ProcessEnv } = {}): Promise<{ sidecar: Sidecar; control: ControlClient; close(): Promise<void> }> {
  const m = config.manager;
  const env = opts.env ?? process.env;
  opts = { ...opts, logger: opts.logger ?? createLogger({ name: 'etz-sidecar-control', level: config.logging.level }) };
  let caPem: string;
  try {
    caPem = await readFile(m.caFile, 'utf8');
  } catch (err) {
    throw new EtzError('ETZ_ERR_CONFIG_READ', `manager.caFile ${m.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let token = m.bootstrapToken ?? env.ETZ_BOOTSTRAP_TOKEN;
  if (!token && m.bootstrapTokenFile) token = (await readFile(m.bootstrapTokenFile, 'utf8')).trim();
  const node = {
    service: config.service.name,
    instance: config.service.instance || hostname(),
    ...(config.service.version && config.service.version !== 'unknown' ? { version: config.service.version } : {}),
  };
  const control = ControlClient.create({
    url: m.url, caPem, dataDir: m.dataDir, node,
    ...(token ? { bootstrapToken: token } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.registry ? { metrics: opts.registry } : {}),
    telemetry: { flushMs: m.telemetry.flushMs, maxBatch: m.telemetry.maxBatch, capacity: m.telemetry.bufferSize },
  });
  const creds = await control.ensureCredentials();
  const identity = new WorkloadIdentity(tlsMaterialFromPem(creds.certPem, creds.keyPem, creds.trustBundlePem, `${m.dataDir} credentials`), {
    renew: (req) => control.requestCertificate(req.csrPem),
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.registry ? { metrics: opts.registry } : {}),
  });
  identity.start();
  let sidecar: Sidecar;
  try {
    sidecar = await Sidecar.start(config, {
      identity,
      ...(config.telemetry.enabled ? { telemetry: control.telemetry } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
      ...(opts.registry ? { registry: opts.registry } : {}),
    });
  } catch (err) {
    identity.stop?.();
    await control.close();
    throw err;
  }
  // Resource keys the manager's protocol does not carry (e.g. riskScoring) stay as the local
  // config set them: a pushed version replaces only what the manager can push.
  const pushable: ReadonlySet<string> = new Set(RESOURCE_TYPES);
  const localOnly = Object.fromEntries(Object.entries(sidecar.config.resources).filter(([k]) => !pushable.has(k)));
  await control.attach({
    // The trust bundle reaches the TLS layer with each certificate the identity renews; the
    // filter chain gets everything else.
    applyResources: (resources, version) => {
      const { trustBundle: _tb, ...rest } = resources;
      return sidecar.applyResources({ ...localOnly, ...rest }, version);
    },
  });
  return {
    sidecar,
    control,
    async close() {
      await control.close();
      await sidecar.close();
      identity.stop?.();
    },
  };
}
