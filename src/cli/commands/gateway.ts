import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';

const USAGE = `Usage: etz gateway [--config FILE] [--check]

Run the ingress gateway: the etz proxy at the edge of the mesh, without a local application.
External HTTP (or HTTPS with gateway.tls.certFile/keyFile) comes in on gateway.port (default
8080); the end-user principal is taken from a verified JWT (resources.principal.jwt) or the
x-etz-principal header; routes, rate limits and policies apply; requests go on to the services
of the registry. The per-principal detector counts each user request once, here.

Options:
  -c, --config FILE   YAML or JSON config, the sidecar's format (service, registry, gateway,
                      timeouts, limits, resources); ETZ_GATEWAY_* environment variables
                      override fields (ETZ_GATEWAY_GATEWAY__PORT=8443)
      --check         validate the config, print the effective config and exit
  -h, --help          show this help

SIGTERM or SIGINT drains, then exits 0. An invalid config exits 2 naming the file, the field and
the reason.
`;

export const command: Command = {
  summary: 'Run the ingress gateway at the edge of the mesh (external HTTP/HTTPS into the mesh)',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { config: { type: 'string', short: 'c' }, check: { type: 'boolean' } }, USAGE, true);
    if (parsed === null) return 0;
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    const { loadGatewayConfig, startGateway } = await import('../../sidecar/gateway/gateway.js');
    const config = await loadGatewayConfig(parsed.values.config as string | undefined);
    if (parsed.values.check) {
      // Into the mesh the gateway speaks mTLS by default: no identity source fails the check as at
      // start (the gateway does not enroll, so only tls files or caDir count).
      const { identitySourceError } = await import('../../sidecar/tls/sidecar-tls.js');
      const noIdentity = identitySourceError(config, (parsed.values.config as string | undefined) ?? '(environment)', false);
      if (noIdentity) throw noIdentity;
      // Tokens, JWT secrets and keys never reach the terminal.
      const { redact } = await import('../../sidecar/listeners/admin.js');
      process.stdout.write(`${JSON.stringify(redact(config), null, 2)}\n`);
      return 0;
    }
    const gateway = await startGateway(config, { source: (parsed.values.config as string | undefined) ?? '(environment)' });
    const p = gateway.ports;
    process.stderr.write(`etz gateway ${config.service.name}: ${config.gateway.tls ? 'https' : 'http'} :${p.gateway} admin :${p.admin}\n`);
    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`etz gateway: ${signal}, draining\n`);
        gateway.close().then(
          () => resolve(0),
          (err: unknown) => {
            process.stderr.write(`etz gateway: drain failed: ${(err as Error).message}\n`);
            resolve(1);
          },
        );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  },
};
