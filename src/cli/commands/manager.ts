import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';

const USAGE = `Usage: etz manager [--config FILE] [--data-dir DIR] [--record FILE] [--check]
       etz manager token create|ls|revoke …   (see etz manager token --help)

Run the zone manager: the mesh CA, sidecar enrollment, config distribution over authenticated
WebSocket pub/sub, telemetry intake, the operator API (HTTPS) and the audit log. Runs with
built-in defaults; state lives in the data directory (default ./etz-manager-data).

On first start it creates the CA and an admin token (<data-dir>/admin-token, mode 0600) and
prints the token once to stderr. CLI commands (etz status, zones, audit, token) find the manager
through --data-dir, or --server/--token-file/--ca.

Options:
  -c, --config FILE     YAML or JSON config; ETZ_MANAGER_* variables override fields
                        (ETZ_MANAGER_LISTEN__PORT=15012)
  -d, --data-dir DIR    state directory (overrides dataDir)
      --listen ADDR     host:port to listen on (overrides listen; port 0 = any free port)
      --record FILE     append received telemetry to FILE (JSON lines, readable by etz replay)
      --check           validate the config, print the effective config and exit
  -h, --help            show this help

SIGTERM or SIGINT stops it cleanly; every acknowledged change is already on disk.
`;

export const command: Command = {
  summary: 'Run the zone manager (control plane): CA, enrollment, config push, telemetry, API',
  async run(argv) {
    if (argv[0] === 'token') return (await import('./token.js')).command.run(argv.slice(1));
    const parsed = parseCommandArgs(argv, {
      config: { type: 'string', short: 'c' },
      'data-dir': { type: 'string', short: 'd' },
      listen: { type: 'string' },
      record: { type: 'string' },
      check: { type: 'boolean' },
    }, USAGE, true);
    if (parsed === null) return 0;
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    const { loadManagerConfig } = await import('../../manager/config.js');
    const config = await loadManagerConfig(parsed.values.config as string | undefined);
    if (parsed.values['data-dir']) config.dataDir = parsed.values['data-dir'] as string;
    if (parsed.values.listen) {
      const m = /^(.*):(\d+)$/.exec(parsed.values.listen as string);
      if (!m) throw new UsageError(`--listen wants HOST:PORT, got '${parsed.values.listen}'`);
      config.listen = { host: m[1]!.replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(m[2]) };
    }
    if (parsed.values.check) {
      process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
      return 0;
    }
    const { createLogger } = await import('../../core/logger.js');
    const { startManagerProcess } = await import('../../manager/process.js');
    const logger = createLogger({ name: 'etz-manager', thread: true });
    const manager = await startManagerProcess({
      config,
      logger,
      ...(parsed.values.record ? { recordFile: parsed.values.record as string } : {}),
      onAdminTokenCreated: (token, file) => {
        // Shown once, on the terminal that created it; the logger never sees it.
        process.stderr.write(`etz manager: created admin token (also in ${file}, mode 0600):\n  ${token}\n`);
      },
    });
    process.stderr.write(`etz manager: listening on ${manager.url} (data ${manager.dataDir}, CA bundle ${manager.caFile})\n`);
    const dashboard = await import('node:fs/promises').then((fs) => fs.readFile(`${manager.dataDir}/dashboard.json`, 'utf8')).then((t) => (JSON.parse(t) as { url: string }).url, () => undefined);
    if (dashboard) process.stderr.write(`etz manager: dashboard on ${dashboard} (sign in with the admin token)\n`);
    return new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`etz manager: ${signal}, stopping\n`);
        manager.close().then(
          () => resolve(0),
          (err: unknown) => {
            process.stderr.write(`etz manager: stop failed: ${(err as Error).message}\n`);
            resolve(1);
          },
        );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  },
};
