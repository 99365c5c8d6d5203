import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { loadSidecarConfig } from '../../config/sidecar-schema.js';

const USAGE = `Usage: etz sidecar [--config FILE] [--check]

Run the etz sidecar beside one service: an inbound listener in front of the application, an
outbound listener for the application's calls to other services, and an admin listener
(/healthz, /ready, /metrics, /config_dump) on loopback.

Options:
  -c, --config FILE   YAML or JSON config (see config/sidecar.yaml); ETZ_SIDECAR_* environment
                      variables override fields (ETZ_SIDECAR_INBOUND__APP_PORT=9080)
      --check         validate the config, print the effective config and exit
  -h, --help          show this help

SIGTERM or SIGINT drains: no new connections, requests in flight finish within drain.timeoutMs,
then the process exits 0. An invalid config exits 2 naming the file, the field and the reason.
`;

export const command: Command = {
  summary: 'Run the sidecar proxy beside one service',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { config: { type: 'string', short: 'c' }, check: { type: 'boolean' } }, USAGE, true);
    if (parsed === null) return 0;
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    const file = parsed.values.config as string | undefined;
    const config = await loadSidecarConfig(file);
    if (parsed.values.check) {
      // A file that would be refused at start (mTLS without an identity source) fails the check too.
      const { identitySourceError } = await import('../../sidecar/tls/sidecar-tls.js');
      const noIdentity = identitySourceError(config, file ?? '(environment)', config.manager !== undefined);
      if (noIdentity) throw noIdentity;
      const shown = structuredClone(config);
      if (shown.admin.token) shown.admin.token = '[redacted]';
      process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      return 0;
    }
    const { Sidecar } = await import('../../sidecar/sidecar.js');
    // With a `manager` section the sidecar enrolls, takes its identity and config from the manager.
    const managed = config.manager ? await (await import('../../sidecar/control/bootstrap.js')).startManagedSidecar({ ...config, manager: config.manager }) : undefined;
    const sidecar = managed?.sidecar ?? await Sidecar.start(config, { source: file ?? '(environment)' });
    const p = sidecar.ports;
    process.stderr.write(`etz sidecar ${config.service.name}: inbound :${p.inbound} outbound :${p.outbound} admin :${p.admin}${config.gateway.enabled ? ` gateway :${p.gateway}` : ''}\n`);
    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`etz sidecar: ${signal}, draining\n`);
        (managed ?? sidecar).close().then(
          () => resolve(0),
          (err: unknown) => {
            process.stderr.write(`etz sidecar: drain failed: ${(err as Error).message}\n`);
            resolve(1);
          },
        );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  },
};
