import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';

const USAGE = `Usage: etz demo [--duration TIME] [--port N]

Start a small sample application and one etz sidecar in front of it, all on loopback, and print
how to call them. Runs until Ctrl-C (or for --duration), then stops everything.

Options:
      --duration TIME  stop by itself after TIME (e.g. 5s, 2m, 500ms)
      --port N         inbound listener port (default: any free port)
  -h, --help           show this help
`;

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new UsageError(`invalid duration '${s}' (use e.g. 500ms, 5s, 2m)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000));
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });
}

export const command: Command = {
  summary: 'Start a sample app behind one sidecar on loopback and show how to call it',
  async run(argv) {
    const parsed = parseCommandArgs(argv, { duration: { type: 'string' }, port: { type: 'string' } }, USAGE);
    if (parsed === null) return 0;
    const durationMs = parsed.values.duration === undefined ? 0 : parseDuration(parsed.values.duration as string);
    const port = parsed.values.port === undefined ? 0 : Number(parsed.values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port '${parsed.values.port as string}'`);

    const { createSampleApp } = await import('../../../examples/sample-app/server.js');
    const { Sidecar } = await import('../../sidecar/sidecar.js');
    const app = createSampleApp('sample-app');
    const appPort = await listen(app);
    const token = randomBytes(18).toString('base64url');
    let sidecar;
    try {
      sidecar = await Sidecar.start(
        {
          service: { name: 'sample-app', version: 'v1', instance: 'sample-app-0' },
          inbound: { host: '127.0.0.1', port, appPort },
          outbound: { port: 0 },
          admin: { port: 0, token },
          registry: { 'sample-app': { endpoints: [{ address: '127.0.0.1', port: appPort, version: 'v1' }] } },
        },
        { logger: createLogger({ name: 'etz-demo', level: 'warn' }) },
      );
    } catch (err) {
      app.close();
      throw err;
    }
    const p = sidecar.ports;
    process.stdout.write(
      [
        `etz demo: sample-app on 127.0.0.1:${appPort}, its sidecar inbound :${p.inbound}, outbound :${p.outbound}, admin :${p.admin}`,
        '',
        'Try:',
        `  curl -i http://127.0.0.1:${p.inbound}/                          # inbound → sample-app`,
        `  curl -i -H 'Host: sample-app' http://127.0.0.1:${p.outbound}/    # outbound, routed by Host`,
        `  curl -i -X POST --data-binary @package.json http://127.0.0.1:${p.inbound}/echo`,
        `  curl -s http://127.0.0.1:${p.admin}/metrics | grep etz_requests_total`,
        `  curl -s -H 'Authorization: Bearer ${token}' http://127.0.0.1:${p.admin}/config_dump`,
        '',
        durationMs > 0 ? `Stopping by itself in ${durationMs} ms.` : 'Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    );
    await new Promise<void>((resolve) => {
      const timer = durationMs > 0 ? setTimeout(resolve, durationMs) : undefined;
      const stop = (): void => {
        clearTimeout(timer);
        resolve();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await sidecar.close({ drainMs: 2000 });
    await new Promise<void>((resolve) => {
      app.close(() => resolve());
      app.closeAllConnections();
    });
    process.stdout.write('etz demo: stopped\n');
    return 0;
  },
};
